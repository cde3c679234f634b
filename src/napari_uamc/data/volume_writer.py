"""Writing volumes back onto their source grid: ``.nii.gz``, atomically.

:func:`write_volume` takes an array on a :class:`~napari_uamc.data.volume.Volume`'s canonical
(RAS+) grid and writes it in the source file's own voxel order, shape and affine (same NIfTI
codes), so it overlays the source image in any viewer. Reading lives in :mod:`napari_uamc.data.io`,
which re-exports these names. See ``docs/data-and-geometry.md``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc._atomic import atomic_path
from napari_uamc.data.study.layout import NIFTI_SUFFIX
from napari_uamc.data.volume import Volume
from napari_uamc.errors import GridMismatchError, InputError, UamcError

# NIfTI ``qform_code``/``sform_code`` values (NIFTI_XFORM_*).
XFORM_UNKNOWN = 0
XFORM_SCANNER_ANAT = 1
XFORM_ALIGNED_ANAT = 2
#: Millimetres per NIfTI spatial unit (``xyzt_units``); "unknown" is taken as mm, as ITK does.
NIFTI_UNIT_MM = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}


def _output_dtype(array: np.ndarray, dtype: Any) -> np.dtype:
    """float32 for floats; uint8, int16 or int32 (the first that fits) for labels."""
    if dtype is not None:
        return np.dtype(dtype)
    if np.issubdtype(array.dtype, np.floating):
        return np.dtype(np.float32)
    if array.size == 0:
        return np.dtype(np.uint8)
    lowest, highest = int(array.min()), int(array.max())
    for candidate in (np.uint8, np.int16, np.int32):
        info = np.iinfo(candidate)
        if info.min <= lowest and highest <= info.max:
            return np.dtype(candidate)
    return np.dtype(np.int64)


def _nifti_for_source(data: np.ndarray, like: Volume) -> Any:
    """A NIfTI image of source-order ``data`` with the source's affine, codes and units."""
    import nibabel as nib

    source = like.source
    affine = source.affine if source is not None else like.affine
    image = nib.Nifti1Image(data, affine, dtype=data.dtype)
    header = source.header if source is not None else None
    if source is not None and source.format == "nifti" and header is not None:
        # the source's own sform and qform, each with its code and in its units: every reader,
        # whichever of the two it trusts, places the output exactly where it places the source
        units = header.get_xyzt_units()
        in_file_units = affine.copy()
        in_file_units[:3, :] /= NIFTI_UNIT_MM.get(units[0], 1.0)
        qform_code, sform_code = int(header["qform_code"]), int(header["sform_code"])
        image.set_qform(header.get_qform() if qform_code > 0 else in_file_units, code=qform_code)
        image.set_sform(header.get_sform() if sform_code > 0 else in_file_units, code=sform_code)
        image.header.set_xyzt_units(*units)
        return image
    elif source is not None and source.format in ("nrrd", "dicom"):
        qform_code = sform_code = XFORM_SCANNER_ANAT
        units = ("mm", "unknown")
    else:
        qform_code, sform_code = XFORM_UNKNOWN, XFORM_ALIGNED_ANAT
        units = ("mm", "unknown")
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=sform_code)
    image.header.set_xyzt_units(*units)
    return image


def _save_atomically(image: Any, path: Path) -> None:
    """Write to a hidden temp file next to ``path``, fsync, then rename over ``path``."""
    import nibabel as nib

    try:
        with atomic_path(path, suffix=NIFTI_SUFFIX, parents=True) as temp:
            nib.save(image, str(temp))
    except OSError as exc:
        raise UamcError(f"{path}: could not be written ({exc})") from exc


def write_volume(
    path: str | os.PathLike[str], array: np.ndarray, like: Volume, *, dtype: Any = None
) -> Path:
    """Write ``array`` (``like.shape``, canonical order) as ``.nii.gz`` on the source's own grid.

    The file gets the source file's voxel order, shape and affine (and, for a NIfTI source, its qform/sform
    codes and units), so it overlays the original in any viewer. Labels are stored as uint8, int16 or int32
    (the first that fits), floats as float32, unless ``dtype`` is given. The write is atomic: an existing
    file is replaced only by a complete new one.

    Raises:
        InputError: ``path`` does not end in ``.nii.gz``.
        GridMismatchError: ``array``'s shape is not ``like.shape``.
        UamcError: the file could not be written (the base class; its cause is the OSError).
    """
    path = Path(path)
    if not path.name.lower().endswith(NIFTI_SUFFIX):
        raise InputError(f"{path}: outputs are written as {NIFTI_SUFFIX}; change the file name")
    array = np.asarray(array)
    if array.shape != like.shape:
        raise GridMismatchError(
            f"{path}: array of shape {array.shape} is not on the grid {like.shape} of {like.name}"
        )
    stored = array.astype(_output_dtype(array, dtype), copy=False)
    data = np.ascontiguousarray(like.to_source_order(stored))
    _save_atomically(_nifti_for_source(data, like), path)
    return path


def write_volumes(jobs: Sequence[tuple[str | os.PathLike[str], np.ndarray, Volume, Any]]) -> list[Path]:
    """:func:`write_volume` for each ``(path, array, like, dtype)``, side by side in threads.

    Compressing a ``.nii.gz`` releases the GIL, so the files of one prediction (label, SDF,
    uncertainty) take about the time of the largest on a multi-core machine. Each write is atomic;
    the first failure (in ``jobs`` order) is raised after the others have finished.

    Raises:
        InputError, GridMismatchError, UamcError: as :func:`write_volume`.
    """
    from concurrent.futures import ThreadPoolExecutor

    jobs = list(jobs)
    if len(jobs) <= 1:
        return [write_volume(path, array, like, dtype=dtype) for path, array, like, dtype in jobs]
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), os.cpu_count() or 1))) as pool:
        futures = [pool.submit(write_volume, path, array, like, dtype=dtype) for path, array, like, dtype in jobs]
        return [future.result() for future in futures]


#: Float maps written by segment and the study (SDF, uncertainty) are rounded to this step.
MAP_STEP = 1e-4


def rounded_map(array: np.ndarray, step: float = MAP_STEP) -> np.ndarray:
    """``array`` as float32 rounded to multiples of ``step`` (default 1e-4: far below what a
    map of nats or of a unitless SDF shows). Full float32 noise does not compress: a
    640 x 640 x 88 uncertainty map takes 123 MB and 5.5 s to gzip, rounded 30 MB and 2 s."""
    values = np.asarray(array, dtype=np.float32)
    return (np.rint(values * np.float32(1.0 / step)) * np.float32(step)).astype(np.float32, copy=False)
