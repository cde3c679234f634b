"""DICOM MRI series as volumes, read with SimpleITK (GDCM): the optional ``dicom`` extra.

A folder holding one image series, or a single (multi-frame) file, becomes a volume with its
scanner geometry: ImageOrientationPatient gives the axes, PixelSpacing the in-plane spacing,
the slices' ImagePositionPatient their order, the origin and the slice spacing, and the
RescaleSlope/Intercept the values (GDCM applies them). The patient frame is LPS; the affine
returned is RAS, like every other reader's.

Refused with a message that says what to do: a folder with several image series (they are
listed, pick one with ``series=`` / ``--series``), missing slices or uneven slice spacing, a
single 2D slice, and files that are DICOM but hold no image (reports, presentation states).
Install with ``pip install "napari-uamc[dicom]"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc.errors import InputError

__all__ = ["DICOM_SUFFIX", "SeriesInfo", "is_dicom_file", "list_series", "read_dicom"]

DICOM_SUFFIX = ".dcm"
#: The DICOM Part 10 preamble is 128 bytes, then this magic.
_MAGIC_OFFSET, _MAGIC = 128, b"DICM"
#: Relative deviation of a slice step from the median step that counts as uneven or missing.
SLICE_STEP_TOLERANCE = 0.05
_TAG_DESCRIPTION, _TAG_NUMBER = "0008|103e", "0020|0011"
_INSTALL = 'reading DICOM needs SimpleITK: pip install "napari-uamc[dicom]"'


@dataclass(frozen=True)
class SeriesInfo:
    """One image series of a folder: its UID, description, series number and file count."""

    uid: str
    description: str
    number: str
    files: int

    def describe(self) -> str:
        text = f"{self.uid} ({self.files} files"
        if self.number:
            text += f", series {self.number}"
        if self.description:
            text += f", {self.description!r}"
        return text + ")"


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """True for a file with the DICOM Part 10 magic (or a ``.dcm`` name)."""
    path = Path(path)
    if path.name.lower().endswith(DICOM_SUFFIX):
        return True
    try:
        with open(path, "rb") as handle:
            handle.seek(_MAGIC_OFFSET)
            return handle.read(len(_MAGIC)) == _MAGIC
    except OSError:
        return False


def _sitk() -> Any:
    try:
        import SimpleITK
    except ImportError:
        raise InputError(_INSTALL) from None
    return SimpleITK


def _tag(reader: Any, tag: str) -> str:
    return reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""


def _file_reader(sitk: Any, path: str) -> Any:
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.LoadPrivateTagsOff()
    reader.ReadImageInformation()
    return reader


def list_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """The image series of ``folder`` (GDCM's grouping by SeriesInstanceUID and geometry)."""
    sitk = _sitk()
    folder = str(folder)
    found = []
    for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder) or ():
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)
        reader = _file_reader(sitk, files[0])
        found.append(SeriesInfo(uid, _tag(reader, _TAG_DESCRIPTION), _tag(reader, _TAG_NUMBER), len(files)))
    return found


def _check_slices(sitk: Any, files: list[str], where: str) -> None:
    """Refuse missing slices and uneven spacing, from each file's ImagePositionPatient."""
    if len(files) < 2:
        return
    first = _file_reader(sitk, files[0])
    direction = np.asarray(first.GetDirection(), dtype=float).reshape(3, 3)
    normal = direction[:, 2]
    positions = np.array([np.dot(_file_reader(sitk, f).GetOrigin(), normal) for f in files])
    steps = np.diff(np.sort(positions))
    median = float(np.median(steps))
    if median <= 0:
        raise InputError(f"{where}: several slices share one position; is this more than one series?")
    bad = np.flatnonzero(np.abs(steps - median) > SLICE_STEP_TOLERANCE * median)
    if bad.size:
        gaps = ", ".join(f"{steps[i]:.3g} mm after slice {i + 1}" for i in bad[:4])
        missing = int(np.round(steps[bad].max() / median)) - 1 if steps[bad].max() > median else 0
        what = f"about {missing} missing slice(s)" if missing > 0 else "uneven slice spacing"
        raise InputError(
            f"{where}: {what}: slices are {median:.3g} mm apart but {gaps}; a volume needs evenly "
            "spaced slices (copy the complete series, or resample it in the scanner's software)"
        )


def read_dicom(
    path: str | os.PathLike[str], series: str | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float], dict[str, Any]]:
    """``(array [i, j, k] in file order, RAS affine, spacing mm, info)`` of a DICOM series folder
    or a single (multi-frame) DICOM file; see the module docstring for what is refused.

    ``array`` is indexed (column, row, slice) of the series, not yet canonical (RAS+);
    ``affine`` maps those indices to RAS mm; ``spacing`` is the voxel size in mm along them.

    Raises:
        InputError: SimpleITK is not installed; a folder holds no image series, several without
            ``series``, or not the ``series`` asked for; slices are missing, unevenly spaced or
            share one position; GDCM cannot read the image; it is a single 2D slice or has more
            than one component per pixel (colour).
    """
    sitk = _sitk()
    path = Path(path)
    info: dict[str, Any] = {"path": str(path)}
    if path.is_dir():
        available = list_series(path)
        if not available:
            raise InputError(f"{path}: holds no DICOM image series (no file with image data GDCM can read)")
        if series is None and len(available) > 1:
            listing = "\n  ".join(s.describe() for s in available)
            raise InputError(f"{path}: holds {len(available)} image series; choose one (--series UID):\n  {listing}")
        chosen = next((s for s in available if s.uid == series), None) if series else available[0]
        if chosen is None:
            raise InputError(f"{path}: no series {series!r}; it has: {', '.join(s.uid for s in available)}")
        files = list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), chosen.uid))
        _check_slices(sitk, files, str(path))
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        info.update(series=chosen.uid, description=chosen.description, files=len(files))
    else:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
    try:
        image = reader.Execute()
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise InputError(f"{path}: not a DICOM image GDCM can read ({first})") from None
    if image.GetDimension() != 3 or image.GetSize()[2] < 2:
        raise InputError(f"{path}: a single 2D DICOM slice (size {image.GetSize()}); a volume needs a series")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: {image.GetNumberOfComponentsPerPixel()} components per pixel (colour?); "
                         "napari-uamc reads single-channel MRI")
    array = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))  # [k, j, i] -> [i, j, k]
    spacing = tuple(float(s) for s in image.GetSpacing())
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(spacing)
    lps[:3, 3] = image.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS (DICOM) -> RAS
    return array, affine, spacing, info  # type: ignore[return-value]
