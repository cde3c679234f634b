"""DICOM series: written here from a known oblique, anisotropic grid, read back onto it."""

from __future__ import annotations

import locale
from pathlib import Path

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK", reason="the dicom extra (SimpleITK) is part of the test extras")

from napari_uamc.cli import main  # noqa: E402
from napari_uamc.data.dicom import list_series  # noqa: E402
from napari_uamc.data.io import read_volume, volume_from_array  # noqa: E402
from napari_uamc.errors import InputError  # noqa: E402

SHAPE = (12, 10, 6)  # i, j, k (k: slices)
SPACING = (0.7, 0.8, 2.5)
SLOPE, INTERCEPT = 2.0, -100.0  # GDCM writes integer data with an integer slope only


def _oblique_affine() -> np.ndarray:
    """RAS affine: 20 degrees about z then 10 about x, anisotropic spacing, an origin."""
    a, b = np.deg2rad(20), np.deg2rad(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rx @ rz @ np.diag(SPACING)
    affine[:3, 3] = (-40.0, 25.0, 60.0)
    return affine


def write_series(folder: Path, stored: np.ndarray, affine: np.ndarray, uid: str, *, description="LGE",
                 skip: int | None = None, shift: int | None = None) -> None:
    """Write ``stored`` (int16 raw values, [i, j, k]) as one file per slice with full geometry
    tags and the module's RescaleSlope/Intercept (the files hold ``stored``; a reader must give
    ``stored * SLOPE + INTERCEPT``), optionally with one slice left out or moved 1 mm."""
    folder.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    direction = lps[:3, :3] / np.asarray(SPACING)
    real = stored.astype(np.int32) * int(SLOPE) + int(INTERCEPT)  # GDCM stores (real - b) / m
    image = sitk.GetImageFromArray(real.transpose(2, 1, 0).astype(np.int16))
    image.SetSpacing(SPACING)
    image.SetOrigin(tuple(lps[:3, 3]))
    image.SetDirection(tuple(direction.ravel()))
    orientation = "\\".join(f"{v:.9f}" for v in (*direction[:, 0], *direction[:, 1]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    saved = locale.setlocale(locale.LC_ALL)  # GDCM's writer resets LC_CTYPE to "C": put it back after
    try:
        _write_slices(writer, image, folder, uid, description, orientation, direction, stored.shape[2], skip, shift)
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def _write_slices(writer, image, folder, uid, description, orientation, direction, slices, skip, shift) -> None:
    for k in range(slices):
        if k == skip:
            continue
        piece = image[:, :, k]
        position = np.array(image.TransformIndexToPhysicalPoint((0, 0, k)))
        if k == shift:
            position = position + direction[:, 2] * 1.0
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0008|0018": f"{uid}.{k + 1}", "0008|0060": "MR",
            "0008|103e": description, "0020|000d": "1.2.826.0.1.3680043.2.1125.1", "0020|000e": uid,
            "0020|0011": uid.rsplit(".", 1)[-1], "0020|0013": str(k + 1), "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.6f}" for v in position), "0018|0050": str(SPACING[2]),
            "0028|1052": f"{INTERCEPT:g}", "0028|1053": f"{SLOPE:g}", "0028|1054": "US",
        }
        for tag, value in tags.items():
            piece.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid.rsplit('.', 1)[-1]}-slice{k:03d}.dcm"))
        writer.Execute(piece)


@pytest.fixture()
def stored() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 2000, size=SHAPE).astype(np.int16)


def test_series_reads_back_onto_its_physical_grid_with_rescaled_values(tmp_path, stored):
    write_series(tmp_path / "series", stored, _oblique_affine(), "1.2.826.0.1.3680043.2.1125.7")
    before = locale.setlocale(locale.LC_ALL)
    volume = read_volume(tmp_path / "series")
    assert locale.setlocale(locale.LC_ALL) == before  # reading leaves the app's locale alone
    expected = volume_from_array(stored * SLOPE + INTERCEPT, affine=_oblique_affine())
    assert volume.same_grid(expected), (volume.affine, expected.affine)
    assert np.allclose(volume.array, expected.array)
    assert volume.spacing == pytest.approx(SPACING, abs=1e-4)


def test_segment_writes_nifti_on_the_series_grid(tmp_path, stored):
    import nibabel as nib

    from _helpers import save_tiny_model

    write_series(tmp_path / "MRI", stored, _oblique_affine(), "1.2.826.0.1.3680043.2.1125.8")
    model = save_tiny_model(tmp_path / "tiny.pt", spacing=SPACING)
    assert main(["segment", str(tmp_path / "MRI"), "--model", str(model), "--out", str(tmp_path / "out"),
                 "--mc-samples", "1", "--device", "cpu", "--threads", "1"]) == 0
    written = nib.load(str(tmp_path / "out" / "MRI_seg.nii.gz"))
    assert written.shape == SHAPE and np.allclose(written.affine, _oblique_affine(), atol=1e-4)


def test_several_series_are_listed_and_one_can_be_chosen(tmp_path, stored):
    first, second = "1.2.826.0.1.3680043.2.1125.21", "1.2.826.0.1.3680043.2.1125.22"
    write_series(tmp_path / "mixed", stored, _oblique_affine(), first, description="LGE")
    write_series(tmp_path / "mixed", stored[:, :, ::-1].copy(), _oblique_affine(), second, description="cine")
    assert sorted(s.uid for s in list_series(tmp_path / "mixed")) == [first, second]
    with pytest.raises(InputError, match=r"holds 2 image series; choose one \(--series UID\)") as refused:
        read_volume(tmp_path / "mixed")
    assert "'LGE'" in str(refused.value) and "'cine'" in str(refused.value)
    chosen = read_volume(tmp_path / "mixed", series=second)
    expected = volume_from_array(stored[:, :, ::-1] * SLOPE + INTERCEPT, affine=_oblique_affine())
    assert chosen.same_grid(expected) and np.allclose(chosen.array, expected.array)
    with pytest.raises(InputError, match="no series 'nope'"):
        read_volume(tmp_path / "mixed", series="nope")
    model = __import__("_helpers").save_tiny_model(tmp_path / "tiny.pt", spacing=SPACING)
    for uid in (first, second):  # one folder, two series, one --out: two output names
        assert main(["segment", str(tmp_path / "mixed"), "--series", uid, "--model", str(model), "--out",
                     str(tmp_path / "out"), "--mc-samples", "0", "--device", "cpu", "--threads", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*_seg.nii.gz")) == [
        "mixed_series21_seg.nii.gz", "mixed_series22_seg.nii.gz"]


@pytest.mark.parametrize(("damage", "message"), [({"skip": 3}, "missing slice"),
                                                 ({"shift": 3}, "uneven slice spacing|missing slice")])
def test_missing_slices_and_uneven_spacing_are_refused(tmp_path, stored, damage, message):
    write_series(tmp_path / "s", stored, _oblique_affine(), "1.2.826.0.1.3680043.2.1125.30", **damage)
    with pytest.raises(InputError, match=message):
        read_volume(tmp_path / "s")


def test_non_image_dicom_and_single_slices_are_refused(tmp_path, stored):
    pydicom = pytest.importorskip("pydicom", reason="pydicom writes the non-image file")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: no pixels
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.2.1125.40"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    report = FileDataset(str(tmp_path / "sr" / "report"), {}, file_meta=meta, preamble=b"\0" * 128)
    report.SOPClassUID, report.Modality = meta.MediaStorageSOPClassUID, "SR"
    report.SeriesInstanceUID, report.StudyInstanceUID = "1.2.3.4", "1.2.3"
    (tmp_path / "sr").mkdir()
    pydicom.dcmwrite(str(tmp_path / "sr" / "report"), report, enforce_file_format=True)
    with pytest.raises(InputError, match="no DICOM image series"):
        read_volume(tmp_path / "sr")
    with pytest.raises(InputError, match="not a DICOM image"):
        read_volume(tmp_path / "sr" / "report")  # no suffix: recognised by its DICM magic

    write_series(tmp_path / "one", stored[:, :, :1].copy(), _oblique_affine(), "1.2.826.0.1.3680043.2.1125.41")
    with pytest.raises(InputError, match="single 2D DICOM slice"):
        read_volume(next((tmp_path / "one").iterdir()))


def test_napari_reader_opens_a_series_folder_and_a_study_takes_it(tmp_path, stored):
    from napari_uamc._napari.reader import get_reader
    from napari_uamc.data.study import Study

    write_series(tmp_path / "PATIENT1", stored, _oblique_affine(), "1.2.826.0.1.3680043.2.1125.50")
    reader = get_reader(str(tmp_path / "PATIENT1"))
    assert reader is not None and get_reader(str(tmp_path)) is None  # a folder of folders: not a series
    (data, kwargs, kind), = reader(str(tmp_path / "PATIENT1"))
    assert kind == "image" and kwargs["name"] == "PATIENT1" and data.shape == SHAPE[::-1]
    study = Study.create(tmp_path / "study", [tmp_path / "PATIENT1"])
    image = study.read_image("PATIENT1")
    assert image.same_grid(volume_from_array(np.zeros(SHAPE), affine=_oblique_affine()))
