"""Geometry-preserving reading and writing of 3D volumes.

Reads NIfTI (``.nii``, ``.nii.gz``, nibabel), NRRD (``.nrrd``, ``.nhdr``, pynrrd; the LA 2018
challenge format) and the LA ``.h5`` files of the UA-MT/DTC/UG-MCL research code (datasets
``image`` and ``label``, no geometry). Every volume comes back as a :class:`Volume` in the
closest canonical (RAS+) voxel order; :func:`write_volume` puts an array on that grid back onto
the source file's own grid and affine as ``.nii.gz``, atomically.

Every problem with an input file raises :class:`InputError` (or :class:`GridMismatchError`)
with a message that starts with the file's path. See ``docs/data-and-geometry.md``.
"""

from __future__ import annotations

import math
import os
import struct
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc.data.study.layout import NIFTI_SUFFIXES, SEGMENTATION_SUFFIX
from napari_uamc.data.volume import Volume, canonicalize
from napari_uamc.data.volume_writer import (  # noqa: F401 (the writer's names, kept importable here)
    MAP_STEP,
    NIFTI_UNIT_MM,
    rounded_map,
    write_volume,
    write_volumes,
)
from napari_uamc.errors import InputError

__all__ = [
    "FILE_SUFFIXES",
    "MAP_STEP",
    "SUPPORTED_SUFFIXES",
    "VOLUME_FILE_SUFFIXES",
    "case_name",
    "read_volume",
    "read_label",
    "read_h5_case",
    "write_volume",
    "write_volumes",
    "rounded_map",
    "volume_from_array",
]

# The readable formats, named once: every other module (napari reader, reader preference,
# uamc evaluate, training folders) asks these tuples. A new format is a suffix here, a reader
# function below and its branch in _read_raw (plus the reader patterns in napari.yaml, which a
# test compares with FILE_SUFFIXES).
#: NRRD, attached (``.nrrd``) or detached header (``.nhdr``).
NRRD_SUFFIXES = (".nrrd", ".nhdr")
#: The LA research code's HDF5 file: an ``image`` and a ``label`` dataset in one file.
H5_SUFFIX = ".h5"
#: Formats holding one volume (an image or a label map) per file, longest first.
VOLUME_FILE_SUFFIXES = (*NIFTI_SUFFIXES, *NRRD_SUFFIXES)
#: Every file name ending opened by name (longest first, so ``.nii.gz`` wins over ``.nii``).
FILE_SUFFIXES = (*VOLUME_FILE_SUFFIXES, H5_SUFFIX)
#: Everything :func:`read_volume` reads: the files above and DICOM (also a folder of one series).
SUPPORTED_SUFFIXES = (*FILE_SUFFIXES, ".dcm")
#: What :func:`read_volume` calls a folder (of one DICOM series) or a DICOM file without suffix.
DICOM_FOLDER, DICOM_FILE = "dicom folder", ".dcm"
#: nnU-Net's channel suffix of a single-channel image (``case_0000.nii.gz``).
CHANNEL_SUFFIX = "_0000"
# The suffix of a prediction file (``case_seg.nii.gz``), stripped on request, is the study
# layout's SEGMENTATION_SUFFIX (imported above).
#: File names (without suffix) that research layouts give every case alike, one case per folder:
#: the LA research code's ``<CASE>/mri_norm2.h5`` and the LA 2018 challenge's
#: ``<CASE>/lgemri.nrrd`` + ``<CASE>/laendo.nrrd``. Such a file's case is its folder's name.
PER_CASE_FOLDER_STEMS = frozenset({"mri_norm2", "lgemri", "laendo"})
#: Those of :data:`PER_CASE_FOLDER_STEMS` that hold a label map (the challenge's atrium mask).
PER_CASE_LABEL_STEMS = frozenset({"laendo"})
#: The research code's LA file (``<CASE>/mri_norm2.h5``) holds LA 2018 scans, acquired at this
#: voxel size (mm): it is the default spacing of such a file instead of 1 mm.
LA_H5_FILE = "mri_norm2.h5"
LA_H5_SPACING_MM = 0.625
#: Voxel size (mm) assumed where a file carries none (``.h5``, NRRD without spacing).
DEFAULT_SPACING_MM = 1.0
#: Number of spatial axes of every volume.
SPATIAL_DIMS = 3

_RAS, _LAS, _LPS = (1.0, 1.0, 1.0), (-1.0, 1.0, 1.0), (-1.0, -1.0, 1.0)
#: Sign flips that take a NRRD anatomical ``space`` to RAS (lower-cased names and abbreviations).
NRRD_SPACE_TO_RAS: dict[str, tuple[float, float, float]] = {
    "right-anterior-superior": _RAS, "ras": _RAS,
    "right-anterior-superior-time": _RAS, "rast": _RAS,
    "left-anterior-superior": _LAS, "las": _LAS,
    "left-anterior-superior-time": _LAS, "last": _LAS,
    "left-posterior-superior": _LPS, "lps": _LPS,
    "left-posterior-superior-time": _LPS, "lpst": _LPS,
}
#: NRRD axis kinds that are spatial; any other kind (vector, list, time, ...) is a volume axis.
NRRD_SPATIAL_KINDS = frozenset({"domain", "space"})

SpacingLike = float | Sequence[float]


@dataclass(frozen=True)
class _RawVolume:
    """A file's array in source order (spatial axes first) with its geometry."""

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, ...]
    format: str
    header: Any = None


# --------------------------------------------------------------------------- names


def _matching_suffix(path: Path) -> str | None:
    lower = path.name.lower()
    return next((s for s in SUPPORTED_SUFFIXES if lower.endswith(s)), None)


def case_name(path: str | os.PathLike[str], *, strip_seg: bool = False) -> str:
    """The case a file belongs to: its name without the format suffix and ``_0000``.

    ``case_name("imagesTr/la_001_0000.nii.gz") == "la_001"``; with ``strip_seg=True`` a
    prediction ``la_001_seg.nii.gz`` also maps to ``la_001``. A file that a research layout names
    the same in every case folder (:data:`PER_CASE_FOLDER_STEMS`) takes its folder's name:
    ``case_name("0RZDK210BSMWAA6467LU/mri_norm2.h5") == "0RZDK210BSMWAA6467LU"``, so two such
    files never share a case name (or an output name). Names only: it raises no error.
    """
    path = Path(path)
    name = path.name
    suffix = _matching_suffix(path)
    if suffix is not None:
        name = name[: -len(suffix)]
    if name.lower() in PER_CASE_FOLDER_STEMS:
        folder = Path(os.path.abspath(path)).parent.name
        if folder:
            return folder
    if strip_seg and name.endswith(SEGMENTATION_SUFFIX):
        name = name[: -len(SEGMENTATION_SUFFIX)]
    if name.endswith(CHANNEL_SUFFIX):
        name = name[: -len(CHANNEL_SUFFIX)]
    return name


# --------------------------------------------------------------------------- checks


def _format_spacing(spacing: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(s):g}" for s in spacing) + ")"


def _spacing_tuple(spacing: SpacingLike | None, what: str) -> tuple[float, float, float]:
    """A validated 3-tuple of voxel sizes from ``None`` (1 mm), a scalar or a 3-sequence."""
    if spacing is None:
        return (DEFAULT_SPACING_MM,) * SPATIAL_DIMS  # type: ignore[return-value]
    try:
        values = np.atleast_1d(np.asarray(spacing, dtype=np.float64)).ravel()
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: spacing must be numbers in mm, not {spacing!r}") from exc
    if values.size == 1:
        values = np.repeat(values, SPATIAL_DIMS)
    if values.size != SPATIAL_DIMS:
        raise InputError(f"{what}: spacing must be one number or three, not {spacing!r}")
    _require_positive_spacing(values, what)
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _require_positive_spacing(spacing: Sequence[float], what: str) -> None:
    if not all(math.isfinite(s) and s > 0 for s in map(float, spacing)):
        raise InputError(
            f"{what}: spacing must be strictly positive and finite, "
            f'not "{_format_spacing(spacing)}"'
        )


def _require_3d(array: np.ndarray, what: str) -> np.ndarray:
    """Squeeze trailing volume axes of size 1; refuse 2D and multi-volume arrays."""
    if array.ndim < SPATIAL_DIMS:
        raise InputError(
            f"{what}: is {array.ndim}D (shape {array.shape}); input must be a 3D volume"
        )
    volumes = int(np.prod(array.shape[SPATIAL_DIMS:], dtype=np.int64))
    if volumes != 1:
        raise InputError(
            f"{what}: has {volumes} volumes (shape {array.shape}); "
            "input must be single-channel 3D"
        )
    return array.reshape(array.shape[:SPATIAL_DIMS])


def _require_numeric(array: np.ndarray, what: str) -> None:
    real = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if not (real or array.dtype == np.bool_):
        raise InputError(f"{what}: voxel type {array.dtype} is not supported (need real numbers)")


def _require_finite(array: np.ndarray, what: str) -> None:
    if not np.issubdtype(array.dtype, np.floating):
        return
    bad = int(array.size - np.count_nonzero(np.isfinite(array)))
    if bad:
        raise InputError(
            f"{what}: {bad} of {array.size} voxels are NaN or infinite; "
            "the image must be finite everywhere"
        )


# --------------------------------------------------------------------------- readers




class GeometryWarning(UserWarning):
    """A file's geometry is ambiguous (its sform and qform disagree); outputs keep both."""


def _read_nifti(path: Path) -> _RawVolume:
    import nibabel as nib

    image = nib.load(str(path), mmap=False)
    array = np.asanyarray(image.dataobj)
    header = image.header
    unit = header.get_xyzt_units()[0]
    to_mm = NIFTI_UNIT_MM.get(unit, 1.0)
    affine = np.asarray(image.affine, dtype=np.float64).copy()
    affine[:3, :] *= to_mm  # millimetres from here on; the outputs keep the file's own units
    zooms = tuple(float(z) * to_mm for z in header.get_zooms()[:SPATIAL_DIMS])
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code > 0 and qform_code > 0:
        gap = np.abs(header.get_sform() - header.get_qform())[:3].max() * to_mm
        if gap > 1e-3:
            warnings.warn(
                f"{path}: its sform (code {sform_code}) and qform (code {qform_code}) disagree by up to "
                f"{gap:.3g} mm; napari-uamc places the image by the sform (as nibabel and FSL do), tools "
                "built on ITK (3D Slicer, ITK-SNAP) by the qform. Outputs carry both, unchanged, so each "
                "tool places them exactly over the image.",
                GeometryWarning, stacklevel=4,
            )
    return _RawVolume(array, affine, zooms, "nifti", header)


def _nrrd_spatial_axes(header: dict[str, Any], ndim: int) -> list[int]:
    directions = header.get("space directions")
    if directions is not None:
        rows = np.asarray(directions, dtype=float)
        return [n for n, row in enumerate(rows) if np.all(np.isfinite(row))]
    kinds = header.get("kinds")
    if kinds is not None:
        return [n for n, kind in enumerate(kinds) if str(kind).lower() in NRRD_SPATIAL_KINDS]
    return list(range(min(ndim, SPATIAL_DIMS)))


def _nrrd_ras_signs(space: str | None) -> np.ndarray:
    """x, y, z sign flips from a NRRD ``space`` to RAS (other spaces are taken as RAS)."""
    return np.array(NRRD_SPACE_TO_RAS.get((space or "").lower(), _RAS))


#: Millimetres per NRRD ``space units`` entry (the NRRD default, no entry, is mm).
NRRD_UNIT_MM = {"mm": 1.0, "m": 1000.0, "cm": 10.0, "um": 0.001, "µm": 0.001, "micron": 0.001, "": 1.0}


def _nrrd_unit_mm(units: Any, path: Path) -> np.ndarray:
    """Per-axis millimetres per unit of a NRRD ``space units`` field; unknown units refused."""
    if units is None:
        return np.ones(SPATIAL_DIMS)
    names = [str(u).strip().strip('"').lower() for u in list(units)[:SPATIAL_DIMS]]
    unknown = [u for u in names if u not in NRRD_UNIT_MM]
    if unknown:
        raise InputError(f"{path}: unknown space units {unknown}; expected one of mm, m, cm, um")
    return np.array([NRRD_UNIT_MM[u] for u in names] + [1.0] * (SPATIAL_DIMS - len(names)))


def _read_nrrd(path: Path) -> _RawVolume:
    import nrrd

    array, header = nrrd.read(str(path), index_order="F")
    spatial = _nrrd_spatial_axes(header, array.ndim)
    if len(spatial) != SPATIAL_DIMS:
        count = len(spatial)
        dims = f"is {count}D" if count < SPATIAL_DIMS else f"has {count} spatial axes"
        raise InputError(f"{path}: {dims} (shape {array.shape}); input must be a 3D volume")
    array = np.moveaxis(array, spatial, list(range(SPATIAL_DIMS)))

    directions = header.get("space directions")
    if directions is not None:
        rows = np.asarray(directions, dtype=np.float64)[spatial]
        if rows.shape[1] < SPATIAL_DIMS:
            raise InputError(f"{path}: space dimension {rows.shape[1]} is not 3")
        linear = rows[:, :SPATIAL_DIMS].T  # column n = step of array axis n
        spacing = tuple(float(s) for s in np.linalg.norm(linear, axis=0))
    else:
        declared = header.get("spacings")
        steps = [DEFAULT_SPACING_MM] * SPATIAL_DIMS
        if declared is not None:
            steps = [float(declared[a]) for a in spatial]
            steps = [DEFAULT_SPACING_MM if math.isnan(s) else s for s in steps]
        linear = np.diag(steps)
        spacing = tuple(steps)

    origin = np.zeros(SPATIAL_DIMS)
    if header.get("space origin") is not None:
        origin = np.asarray(header["space origin"], dtype=np.float64)[:SPATIAL_DIMS]
    to_mm = _nrrd_unit_mm(header.get("space units"), path)
    linear, origin = linear * to_mm, origin * to_mm
    spacing = tuple(s * float(f) for s, f in zip(spacing, np.broadcast_to(to_mm, (SPATIAL_DIMS,))))
    signs = _nrrd_ras_signs(header.get("space"))
    affine = np.eye(4)
    affine[:3, :3] = signs[:, None] * linear
    affine[:3, 3] = signs * origin
    return _RawVolume(array, affine, spacing, "nrrd", header)


def _read_h5(path: Path, key: str, spacing: SpacingLike | None) -> _RawVolume:
    import h5py

    if spacing is None and path.name.lower() == LA_H5_FILE:
        spacing = LA_H5_SPACING_MM
    steps = _spacing_tuple(spacing, f"{path}")
    with h5py.File(path, "r") as handle:
        dataset = handle.get(key)
        if not isinstance(dataset, h5py.Dataset):
            found = ", ".join(sorted(handle.keys())) or "nothing"
            raise InputError(f"{path}: has no dataset '{key}' (found: {found})")
        array = dataset[()]
    return _RawVolume(np.asarray(array), np.diag([*steps, 1.0]), steps, "h5")


def _read_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'this file is corrupt, truncated or not what it claims'."""
    from nibabel.filebasedimages import ImageFileError
    from nibabel.spatialimages import HeaderDataError
    from nrrd.errors import NRRDError

    return (OSError, EOFError, zlib.error, struct.error, ValueError, ImageFileError,
            HeaderDataError, NRRDError)


def _checked_path(path: str | os.PathLike[str]) -> tuple[Path, str]:
    path = Path(path)
    if path.is_dir():
        return path, DICOM_FOLDER
    suffix = _matching_suffix(path)
    if suffix is None and path.is_file():
        from napari_uamc.data.dicom import is_dicom_file

        if is_dicom_file(path):
            return path, DICOM_FILE
    if suffix is None:
        raise InputError(
            f"{path}: unsupported file type; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: is not a file")
    return path, suffix


def _read_raw(
    path: str | os.PathLike[str], key: str, spacing: SpacingLike | None, series: str | None = None
) -> tuple[Path, _RawVolume]:
    """Read and validate a file: 3D, real, finite, positive spacing; source voxel order."""
    path, suffix = _checked_path(path)
    try:
        if suffix in (DICOM_FOLDER, DICOM_FILE):
            from napari_uamc.data.dicom import read_dicom

            array, affine, steps, info = read_dicom(path, series)
            raw = _RawVolume(array, affine, steps, "dicom", info)
        elif suffix == H5_SUFFIX:
            raw = _read_h5(path, key, spacing)
        elif suffix in NRRD_SUFFIXES:
            raw = _read_nrrd(path)
        else:
            raw = _read_nifti(path)
    except InputError:
        raise
    except _read_errors() as exc:
        raise InputError(
            f"{path}: cannot be read; the file is corrupt, truncated or not a valid "
            f"{suffix} file ({type(exc).__name__}: {exc})"
        ) from exc
    _require_numeric(raw.array, str(path))
    array = _require_3d(raw.array, str(path))
    _require_positive_spacing(raw.spacing, str(path))
    if not np.all(np.isfinite(raw.affine)):
        raise InputError(f"{path}: the affine has non-finite entries:\n{raw.affine}")
    _require_positive_spacing(np.linalg.norm(raw.affine[:3, :3], axis=0), str(path))
    return path, replace(raw, array=array)


def _volume_name(path: Path, raw: _RawVolume, key: str) -> str:
    return f"{path} [{key}]" if raw.format == "h5" else str(path)


def _make_volume(path: Path, raw: _RawVolume, array: np.ndarray, key: str) -> Volume:
    return canonicalize(
        array,
        raw.affine,
        name=_volume_name(path, raw, key),
        path=path,
        format=raw.format,
        header=raw.header,
    )


def read_volume(
    path: str | os.PathLike[str], *, spacing: SpacingLike | None = None, key: str = "image",
    series: str | None = None,
) -> Volume:
    """Read a 3D image into canonical RAS+ voxel order, remembering the source grid.

    ``path`` is a NIfTI, NRRD, LA ``.h5`` or DICOM file, or a folder of one DICOM series (``series``: the
    SeriesInstanceUID to pick when it holds several; see :mod:`napari_uamc.data.dicom`). ``spacing`` (mm, one
    number or three) and ``key`` apply to ``.h5`` files only, which carry no geometry; the others keep their
    own. Floating-point data becomes float32, integer data keeps its type. ``Volume.name`` is the path (plus
    ``[key]`` for ``.h5``).

    Raises:
        InputError: a missing, unsupported, corrupt or truncated file; not one 3D volume of finite real
            numbers; a bad spacing, affine or NRRD unit; no ``.h5`` dataset ``key``; DICOM: no SimpleITK,
            several series but no (or an unknown) ``series``, missing or uneven slices, a 2D slice, colour.
    """
    path, raw = _read_raw(path, key, spacing, series)
    array = raw.array
    if np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
    _require_finite(array, str(path))
    return _make_volume(path, raw, array, key)


def _label_array(array: np.ndarray, what: str) -> np.ndarray:
    """Integer label values (uint8 when they fit); refuse fractional and negative values."""
    _require_finite(array, what)
    if np.issubdtype(array.dtype, np.floating):
        fractional = array != np.round(array)
        if fractional.any():
            example = float(array[fractional].flat[0])
            raise InputError(
                f"{what}: {int(fractional.sum())} voxels have non-integer label values "
                f"(e.g. {example:g}); a label map holds integer class indices"
            )
    if array.size == 0:
        return array.astype(np.uint8)
    lowest, highest = array.min(), array.max()
    if lowest < 0:
        raise InputError(
            f"{what}: has negative label values (minimum {lowest:g}); labels must be >= 0"
        )
    return array.astype(np.min_scalar_type(int(highest)), copy=False)


def read_label(path: str | os.PathLike[str], like: Volume, *, key: str = "label") -> Volume:
    """Read a label map that must lie on the grid of the image ``like``.

    Values become integer class indices (uint8 when they fit) in ``like``'s canonical order; for
    ``.h5`` the dataset ``key`` is read with ``like``'s spacing.

    Raises:
        InputError: as :func:`read_volume`, or values that are not integers >= 0.
        GridMismatchError: its shape or affine (beyond 1 µm) is not ``like``'s (names both files).
    """
    path, raw = _read_raw(path, key, like.spacing)
    label = _make_volume(path, raw, _label_array(raw.array, str(path)), key)
    like.require_same_grid(label)
    return label


def read_h5_case(
    path: str | os.PathLike[str], *, spacing: SpacingLike | None = None
) -> tuple[Volume, Volume | None]:
    """Image and (if it has a ``label`` dataset) label of an LA ``.h5`` file; ``spacing`` in mm.

    Raises:
        InputError: ``path`` is not ``.h5``, or as :func:`read_volume` and :func:`read_label`.
        GridMismatchError: the ``label`` dataset's shape differs from the ``image``'s.
    """
    path = Path(path)
    if _matching_suffix(path) != H5_SUFFIX:
        raise InputError(f"{path}: not an .h5 file")
    image = read_volume(path, spacing=spacing, key="image")
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            has_label = isinstance(handle.get("label"), h5py.Dataset)
    except OSError as exc:  # pragma: no cover - the file was just read
        raise InputError(f"{path}: cannot be read ({exc})") from exc
    label = read_label(path, image, key="label") if has_label else None
    return image, label


# --------------------------------------------------------------------------- arrays


def volume_from_array(
    array: np.ndarray,
    spacing: SpacingLike = (1.0, 1.0, 1.0),
    affine: np.ndarray | None = None,
    name: str = "volume",
) -> Volume:
    """A :class:`Volume` from an array in its own voxel order.

    ``affine`` maps the array's voxel indices to RAS mm and defaults to ``diag(spacing)``
    (``spacing``: mm, one number or three; ignored when ``affine`` is given). Canonicalized like a file.

    Raises:
        InputError: ``array`` is not one 3D volume of finite real numbers, a bad ``spacing``, or
            an ``affine`` that is not a finite 4x4 matrix with a positive voxel size on each axis.
    """
    array = np.asarray(array)
    _require_numeric(array, name)
    array = _require_3d(array, name)
    if affine is None:
        affine = np.diag([*_spacing_tuple(spacing, name), 1.0])
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{name}: affine must be a finite 4x4 matrix, got {affine!r}")
    _require_positive_spacing(np.linalg.norm(affine[:3, :3], axis=0), name)
    _require_finite(array, name)
    return canonicalize(array, affine, name=name)
