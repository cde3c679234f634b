"""The images of a study (``imagesTr/``): finding them, and adding new ones all or none.

New images are first validated and written to a staging folder in ``.uamc/`` (NIfTI copied
byte for byte, a plain ``.nii`` gzip-wrapped, other formats and in-memory volumes written as
``.nii.gz`` on their own grid), then moved into ``imagesTr/`` under the study's lock; an image
that exists is never replaced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from napari_uamc._atomic import fsync_folder
from napari_uamc.data._study_files import InterProcessLock, atomic_copy, os_failure, writing
from napari_uamc.data.io import case_name, read_volume, write_volume
from napari_uamc.data.study.checks import _check_case_name
from napari_uamc.data.study.layout import (
    DATASET_FILE,
    IMAGES_DIR,
    LABELS_DIR,
    NIFTI_SUFFIX,
    STAGING_PREFIX,
    TOOL_DIR,
    StudyLayout,
    nifti_stem,
)
from napari_uamc.data.study.state import StudyWarning
from napari_uamc.data.volume import Volume
from napari_uamc.errors import InputError, StudyError

NOTHING_ADDED = "nothing was added"

ImageSource = str | os.PathLike[str] | Volume


def scan_images(layout: StudyLayout) -> dict[str, Path]:
    """Case -> image file of every NIfTI file in ``imagesTr/`` (others are ignored, with a
    :class:`StudyWarning`); two files of one case are refused."""
    root, images_dir = layout.root, layout.images_dir
    images: dict[str, Path] = {}
    ignored: list[str] = []
    if not images_dir.is_dir():
        raise StudyError(f"study {root} has lost its {IMAGES_DIR}/ folder")
    for path in sorted(images_dir.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if nifti_stem(path) is None:
            ignored.append(path.name)
            continue
        case = case_name(path)
        if case in images:
            raise StudyError(
                f"study {root}: {images[case].name} and {path.name} in {IMAGES_DIR}/ "
                f"are both case {case!r}; keep one"
            )
        images[case] = path
    if ignored:
        warnings.warn(
            f"study {root}: ignoring non-NIfTI files in {IMAGES_DIR}/: " + ", ".join(ignored),
            StudyWarning,
            stacklevel=4,
        )
    return images


def new_image_sources(images: Iterable[ImageSource], existing: Mapping[str, Path]) -> dict[str, ImageSource]:
    """Case name -> source of each of ``images``; a name that ``existing`` (the study's cases)
    or another of ``images`` has is refused."""
    sources: dict[str, ImageSource] = {}
    for item in images:
        case = _source_case_name(item)
        if case in sources or case in existing:
            where = "the study" if case in existing else "the images given"
            raise StudyError(
                f"duplicate case name {case!r} (from {_describe_source(item)}): "
                f"{where} already has it"
            )
        sources[case] = item
    return sources


def add_images(layout: StudyLayout, sources: Mapping[str, ImageSource], lock: InterProcessLock) -> None:
    """Stage ``sources`` (case -> image) and move them into ``imagesTr/``, all or none."""
    images_dir, tool_dir = layout.images_dir, layout.tool_dir
    try:
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=tool_dir))
    except OSError as exc:
        raise os_failure("stage images in", tool_dir, exc, NOTHING_ADDED) from exc
    moved: list[Path] = []

    def undo() -> None:
        for target in moved:
            with contextlib.suppress(OSError):
                target.unlink()

    try:
        with writing("add images to", images_dir, NOTHING_ADDED, undo):
            staged = {case: _stage_image(case, item, staging) for case, item in sources.items()}
            with lock.hold():
                for case, staged_path in staged.items():
                    target = layout.image_file(case)
                    if target.exists():  # never replace an image
                        raise StudyError(f"{target} appeared meanwhile; nothing was added")
                    os.replace(staged_path, target)
                    moved.append(target)
            fsync_folder(images_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _source_case_name(item: Any) -> str:
    if isinstance(item, Volume):
        return _check_case_name(item.name, "volume")
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not (path.is_file() or path.is_dir()):  # a folder: one DICOM series
            raise InputError(f"image file {path} does not exist")
        return _check_case_name(case_name(path), str(path))
    raise InputError(
        f"cannot add {type(item).__name__} {item!r} to a study: give a file path or a named Volume"
    )


def _describe_source(item: Any) -> str:
    return f"volume {item.name!r}" if isinstance(item, Volume) else str(item)


def _stage_image(case: str, item: ImageSource, staging: Path) -> Path:
    """Validate one image and write it as ``staging/<case>.nii.gz``."""
    target = staging / f"{case}{NIFTI_SUFFIX}"
    if isinstance(item, Volume):
        write_volume(target, item.array, like=item)
        return target
    source = Path(item)
    volume = read_volume(source)  # validates: readable, 3D, finite, positive spacing
    if source.name.endswith(NIFTI_SUFFIX):
        atomic_copy(source, target)
    elif source.name.endswith(".nii"):
        atomic_copy(source, target, compress=True)
    else:
        write_volume(target, volume.array, like=volume)
    return target


def _remove_empty_skeleton(root: Path) -> None:
    """Undo a failed :meth:`Study.create` in a folder that was empty: remove what it made."""
    if (root / IMAGES_DIR).is_dir() and any((root / IMAGES_DIR).iterdir()):
        return
    shutil.rmtree(root / TOOL_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):
        (root / DATASET_FILE).unlink(missing_ok=True)
    for folder in (root / LABELS_DIR, root / IMAGES_DIR, root):
        with contextlib.suppress(OSError):
            folder.rmdir()
