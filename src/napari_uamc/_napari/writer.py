"""napari writer: a Labels layer -> ``.nii.gz`` on its image's exact grid and affine.

Labels layers made by the reader or the plugin carry their image's geometry in
``metadata["uamc"]``; the label is mapped back from the display order to the source file's
voxel order and written with the source affine (atomically, by
:func:`napari_uamc.data.io.write_volume`). A layer without that geometry is written with its
``scale`` as spacing, identity orientation, and a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc._napari.layers import volume_from_layer
from napari_uamc.errors import InputError

#: The one file name ending this writer produces (every napari-uamc output is ``.nii.gz``).
NIFTI_SUFFIX = ".nii.gz"


def write_labels(path: str | Path, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: save ``data`` (a Labels layer) as NIfTI; returns the path written.

    ``meta`` is the layer's attributes dict (``name``, ``scale``, ``metadata``, ...) as napari
    passes it.
    """
    from napari_uamc.data.io import write_volume

    target = Path(path)
    if not target.name.lower().endswith(NIFTI_SUFFIX):
        raise InputError(f"{target}: labels are saved as compressed NIfTI; use a {NIFTI_SUFFIX} file name")
    volume = volume_from_layer((data, dict(meta)))
    labels = np.asarray(volume.array)
    written = write_volume(target, labels, like=volume, dtype=label_dtype(labels))
    return [str(written)]


def label_dtype(labels: np.ndarray) -> np.dtype:
    """Smallest integer dtype that holds every label value exactly."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return np.dtype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"a Labels layer must hold integers, got dtype {labels.dtype}")
    if labels.size == 0:
        return np.dtype(np.uint8)
    low, high = int(labels.min()), int(labels.max())
    for candidate in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return np.dtype(candidate)
    raise InputError(f"label values {low}..{high} do not fit a 32-bit integer")
