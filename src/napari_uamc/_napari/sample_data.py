"""napari sample data: synthetic left-atrium phantoms, generated on the fly (nothing downloaded).

* **Phantom LA case**: one phantom image and its label, in memory.
* **Phantom study**: a small study folder (MSD layout, a few cases of which some are labeled)
  written once into the user's cache folder (``$XDG_CACHE_HOME/napari-uamc/sample-study``,
  by default ``~/.cache/napari-uamc/sample-study``) and reused afterwards; returns the first
  case's image, whose ``metadata["uamc"]["study"]`` names the study folder so the panel can
  open it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from napari_uamc._cache import CACHE_ENV, cache_folder  # noqa: F401 (CACHE_ENV: re-exported)
from napari_uamc._napari.layers import (
    KEY_STUDY,
    META_KEY,
    LayerDataTuple,
    image_layer_tuple,
    label_layer_tuple,
)
from napari_uamc.data.study.layout import DATASET_FILE, IMAGES_DIR, NIFTI_SUFFIX


@dataclass(frozen=True)
class SampleSettings:
    """Size and content of the sample data (small: a case takes under a second, the study seconds)."""

    shape: tuple[int, int, int] = (96, 96, 48)
    seed: int = 0
    study_cases: int = 6
    study_labeled: int = 2


SAMPLE = SampleSettings()
#: Folder name of the sample study under the plugin's cache folder.
SAMPLE_STUDY_FOLDER = "sample-study"
#: Folder of a study's images and the metadata file that marks a complete study.
IMAGES_FOLDER = IMAGES_DIR
LABEL_LAYER_SUFFIX = " label"


def phantom_case(settings: SampleSettings = SAMPLE) -> list[LayerDataTuple]:
    """Sample "Phantom LA case": image and label layers of one synthetic phantom."""
    from napari_uamc.data.io import volume_from_array
    from napari_uamc.data.phantoms import make_phantom

    case = make_phantom(settings.seed, shape=settings.shape)
    image = volume_from_array(case.image, affine=case.affine, name=case.name)
    label = volume_from_array(case.label, affine=case.affine, name=case.name + LABEL_LAYER_SUFFIX)
    return [
        image_layer_tuple(image, name=case.name, case=case.name),
        label_layer_tuple(label, name=label.name, case=case.name),
    ]


def sample_study_path(settings: SampleSettings = SAMPLE) -> Path:
    """The sample study folder, created on first use (atomically: complete or absent).

    Falls back to a fresh temporary folder when the cache folder cannot be written.
    """
    target = cache_folder() / SAMPLE_STUDY_FOLDER
    if _is_complete_study(target):
        return target
    try:
        return _build_study(target, settings)
    except OSError:
        fallback = Path(tempfile.mkdtemp(prefix="napari-uamc-")) / SAMPLE_STUDY_FOLDER
        return _build_study(fallback, settings)


def _is_complete_study(folder: Path) -> bool:
    images = folder / IMAGES_FOLDER
    return (folder / DATASET_FILE).is_file() and images.is_dir() and any(images.glob(f"*{NIFTI_SUFFIX}"))


def _build_study(target: Path, settings: SampleSettings) -> Path:
    """Write the phantom study next to ``target`` and move it into place in one rename."""
    from napari_uamc.data.phantoms import write_phantom_study

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        written = Path(
            write_phantom_study(
                staging / target.name,
                cases=settings.study_cases,
                seed=settings.seed,
                shape=settings.shape,
                labeled=settings.study_labeled,
            )
        )
        if _is_complete_study(target):  # another process finished first
            return target
        if target.exists():  # an incomplete leftover
            shutil.rmtree(target)
        os.replace(written, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def first_study_image(study: Path) -> Path:
    """The first image of a study (sorted by file name)."""
    images = sorted((study / IMAGES_FOLDER).glob(f"*{NIFTI_SUFFIX}"))
    if not images:
        from napari_uamc.errors import StudyError

        raise StudyError(f"{study}: no images in {IMAGES_FOLDER}/")
    return images[0]


def phantom_study(settings: SampleSettings = SAMPLE) -> list[LayerDataTuple]:
    """Sample "Phantom study": the first image of the cached phantom study, tagged with the study."""
    from napari_uamc.data.io import case_name, read_volume

    study = sample_study_path(settings)
    path = first_study_image(study)
    case = case_name(path)
    metadata = {META_KEY: {KEY_STUDY: str(study)}}
    return [image_layer_tuple(read_volume(path), name=case, case=case, metadata=metadata)]
