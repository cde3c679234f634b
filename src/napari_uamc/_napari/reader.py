"""napari reader: NIfTI, NRRD, LA ``.h5`` and DICOM (a file, or a folder of one series) as
layers in physical proportions.

Each file gives an Image layer named after the case (axial slices on the slider, ``scale`` =
spacing, geometry in ``metadata["uamc"]``, see :mod:`napari_uamc._napari.layers`). An LA
``.h5`` file with a ``label`` dataset also gives a Labels layer ``<case> label``. A file in a
study's ``labelsTr/`` or ``groundTruth/`` folder, or a prediction ``<case>_seg``, is opened
as a Labels layer. Bad files raise :class:`~napari_uamc.errors.InputError`, whose message
napari shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc._napari.layers import LayerDataTuple, image_layer_tuple, label_layer_tuple
from napari_uamc.data.study.layout import LABEL_DIRS, SEGMENTATION_SUFFIX

PathOrPaths = str | Path | Sequence[str | Path]
ReaderFunction = Callable[[PathOrPaths], list[LayerDataTuple]]

#: Folders of a study whose files are label maps, not images.
LABEL_FOLDERS = frozenset(LABEL_DIRS)
#: File stems (after the case name) that mark a segmentation output.
LABEL_STEM_SUFFIXES = (SEGMENTATION_SUFFIX, "_label")
#: Name suffix of the Labels layer read from an ``.h5`` file.
H5_LABEL_LAYER_SUFFIX = " label"


def get_reader(path: PathOrPaths) -> ReaderFunction | None:
    """napari reader hook: :func:`read_layers` when every path is a supported file, else None."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_is_supported(p) for p in paths):
        return None
    return read_layers


#: A folder is offered as a DICOM series when one of its first files is DICOM.
DICOM_FILES_PROBED = 8


def _is_supported(path: str | Path) -> bool:
    from napari_uamc.data.dicom import is_dicom_file
    from napari_uamc.data.io import SUPPORTED_SUFFIXES

    path = Path(path)
    if path.is_dir():
        files = (child for child in sorted(path.iterdir()) if child.is_file() and not child.name.startswith("."))
        return any(is_dicom_file(child) for _, child in zip(range(DICOM_FILES_PROBED), files))
    name = str(path).lower()
    return any(name.endswith(s) for s in SUPPORTED_SUFFIXES) or is_dicom_file(path)


def read_layers(path: PathOrPaths) -> list[LayerDataTuple]:
    """Read one or several files into napari ``LayerDataTuple``s."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[LayerDataTuple] = []
    for one in paths:
        layers.extend(read_file(Path(one)))
    return layers


def read_file(path: Path, spacing: tuple[float, float, float] | None = None) -> list[LayerDataTuple]:
    """Layers of one file: the image (or a label map), plus the ``.h5`` label if present."""
    from napari_uamc.data.io import H5_SUFFIX, PER_CASE_FOLDER_STEMS, case_name, read_h5_case, read_volume

    case = case_name(path)
    if str(path).lower().endswith(H5_SUFFIX):
        image, label = read_h5_case(path, spacing=spacing)
        layers = [image_layer_tuple(image, name=case, case=case)]
        if label is not None:
            layers.append(label_layer_tuple(label, name=case + H5_LABEL_LAYER_SUFFIX, case=case))
        return layers
    volume = read_volume(path, spacing=spacing)
    if _looks_like_label(path, volume.array):
        generic = _stem(path).lower() in PER_CASE_FOLDER_STEMS  # e.g. <case>/laendo.nrrd
        name = case + H5_LABEL_LAYER_SUFFIX if generic else _stem(path)
        return [label_layer_tuple(volume, name=name, case=case)]
    return [image_layer_tuple(volume, name=case, case=case)]


def _stem(path: Path) -> str:
    """File name without its (possibly double) extension."""
    from napari_uamc.data.io import FILE_SUFFIXES

    name = path.name
    for suffix in FILE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _looks_like_label(path: Path, array: Any) -> bool:
    """True for integer maps stored where labels live (study label folders, ``*_seg`` files)."""
    from napari_uamc.data.io import PER_CASE_LABEL_STEMS

    in_label_folder = path.parent.name in LABEL_FOLDERS
    named_as_label = _stem(path).endswith(LABEL_STEM_SUFFIXES) or _stem(path).lower() in PER_CASE_LABEL_STEMS
    if not (in_label_folder or named_as_label):
        return False
    array = np.asarray(array)
    if np.issubdtype(array.dtype, np.integer) or array.dtype == bool:
        return True
    return bool(np.array_equal(array, np.rint(array)))
