"""Tests of napari_uamc.data.io: geometry-preserving reading and writing, and bad inputs."""

from __future__ import annotations

import h5py
import nibabel as nib
import nrrd
import numpy as np
import pytest

from napari_uamc.data import io
from napari_uamc.data.io import (
    case_name,
    read_h5_case,
    read_label,
    read_volume,
    volume_from_array,
    write_volume,
)
from napari_uamc.errors import GridMismatchError, InputError, UamcError

SHAPE = (5, 6, 7)


def _rotation(axis: int, degrees: float) -> np.ndarray:
    a, b = [n for n in range(3) if n != axis]
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    rot = np.eye(3)
    rot[a, a], rot[a, b], rot[b, a], rot[b, b] = c, -s, s, c
    return rot


def _affine(linear: np.ndarray, origin=(-12.5, 30.25, 7.0)) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = origin
    return affine


OBLIQUE = _affine(_rotation(0, 25) @ _rotation(2, -35) @ np.diag([0.7, 1.3, 2.5]))
# LPS-like: i runs right-to-left, j anterior-to-posterior.
FLIPPED = _affine(np.diag([-0.8, -0.9, 2.0]))
# Data stored as (z, x, y): axis 0 runs along S, axis 1 along R (flipped: L), axis 2 along A.
PERMUTED = _affine(np.array([[0.0, -1.1, 0.0], [0.0, 0.0, 0.9], [3.0, 0.0, 0.0]]))
AFFINES = {"oblique": OBLIQUE, "flipped": FLIPPED, "permuted": PERMUTED}


def _random_image(shape=SHAPE, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _save_nifti(path, data, affine, qform_code=1, sform_code=1, units=("mm", "sec")):
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=sform_code)
    image.header.set_xyzt_units(*units)
    nib.save(image, str(path))
    return path


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", sorted(AFFINES))
def test_read_is_canonical_and_keeps_world_coordinates(tmp_path, kind):
    affine = AFFINES[kind]
    data = _random_image()
    volume = read_volume(_save_nifti(tmp_path / "img.nii.gz", data, affine))

    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    assert volume.array.dtype == np.float32
    assert sorted(volume.spacing) == pytest.approx(sorted(np.linalg.norm(affine[:3, :3], axis=0)))
    # Every source voxel sits at the same world position, with the same value, in the volume.
    world_to_canonical = np.linalg.inv(volume.affine)
    for index in [(0, 0, 0), (4, 5, 6), (1, 3, 2), (4, 0, 6)]:
        world = affine @ (*index, 1.0)
        canonical = np.rint(world_to_canonical @ world)[:3].astype(int)
        assert volume.array[tuple(canonical)] == data[index]


@pytest.mark.parametrize("codes", [(1, 1), (1, 0), (0, 2)])
@pytest.mark.parametrize("kind", sorted(AFFINES))
def test_label_round_trip_lands_on_source_grid(tmp_path, kind, codes):
    affine = AFFINES[kind]
    data = _random_image()
    source = _save_nifti(tmp_path / "img.nii.gz", data, affine, *codes)
    volume = read_volume(source)

    label = (volume.array > 0.5).astype(np.int64)
    out = write_volume(tmp_path / "out" / "img_seg.nii.gz", label, volume)

    written = nib.load(str(out))
    assert written.shape == data.shape
    assert np.allclose(written.affine, nib.load(str(source)).affine, atol=1e-6)
    assert written.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(written.dataobj), data > 0.5)  # same source indices
    header = written.header
    assert (int(header["qform_code"]), int(header["sform_code"])) == codes
    assert header.get_xyzt_units() == ("mm", "sec")
    # and reading the output gives back the canonical label on the image's grid
    assert np.array_equal(read_label(out, volume).array, label)


def test_float_output_and_wide_labels_get_fitting_dtypes(tmp_path):
    volume = read_volume(_save_nifti(tmp_path / "img.nii.gz", _random_image(), OBLIQUE))
    probs = write_volume(tmp_path / "p.nii.gz", volume.array.astype(np.float64), volume)
    assert nib.load(str(probs)).get_data_dtype() == np.float32
    signed = write_volume(tmp_path / "s.nii.gz", np.full(SHAPE, -3), volume)
    assert nib.load(str(signed)).get_data_dtype() == np.int16
    forced = write_volume(tmp_path / "f.nii.gz", np.ones(SHAPE), volume, dtype=np.int16)
    assert nib.load(str(forced)).get_data_dtype() == np.int16


def test_array_volume_writes_its_own_affine(tmp_path):
    data = np.arange(np.prod(SHAPE)).reshape(SHAPE) % 3
    volume = volume_from_array(data, affine=PERMUTED, name="phantom")
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")
    out = write_volume(tmp_path / "a.nii.gz", volume.array, volume)
    written = nib.load(str(out))
    assert np.allclose(written.affine, PERMUTED)
    assert np.array_equal(np.asarray(written.dataobj), data)


def test_volume_from_array_defaults_to_diagonal_spacing():
    volume = volume_from_array(np.zeros(SHAPE), spacing=(0.5, 0.6, 2.0))
    assert volume.spacing == pytest.approx((0.5, 0.6, 2.0))
    assert np.allclose(volume.affine, np.diag([0.5, 0.6, 2.0, 1.0]))
    assert volume_from_array(np.zeros(SHAPE), spacing=0.625).spacing == pytest.approx((0.625,) * 3)
    with pytest.raises(InputError, match="strictly positive"):
        volume_from_array(np.zeros(SHAPE), spacing=(1.0, 0.0, 1.0))


# --------------------------------------------------------------------------- NRRD

# LPS directions (rows = array axes) and origin of a slightly oblique, anisotropic scan.
LPS_DIRECTIONS = (_rotation(2, 20) @ np.diag([0.625, 0.7, 2.5])).T
LPS_ORIGIN = np.array([110.0, -95.5, 42.0])
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _nrrd_header(space="left-posterior-superior"):
    return {"space": space, "space directions": LPS_DIRECTIONS, "space origin": LPS_ORIGIN}


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr"])
def test_nrrd_lps_matches_equivalent_nifti(tmp_path, suffix):
    data = _random_image(seed=1)
    nrrd.write(str(tmp_path / f"scan{suffix}"), data, _nrrd_header())
    ras_affine = LPS_TO_RAS @ _affine(LPS_DIRECTIONS.T, LPS_ORIGIN)
    from_nrrd = read_volume(tmp_path / f"scan{suffix}")
    from_nifti = read_volume(_save_nifti(tmp_path / "scan.nii.gz", data, ras_affine))

    assert np.allclose(from_nrrd.affine, from_nifti.affine, atol=1e-6)
    assert np.array_equal(from_nrrd.array, from_nifti.array)
    assert nib.aff2axcodes(from_nrrd.affine) == ("R", "A", "S")

    out = write_volume(tmp_path / "seg.nii.gz", from_nrrd.array > 0.5, from_nrrd)
    written = nib.load(str(out))
    assert np.allclose(written.affine, ras_affine, atol=1e-6)
    assert np.array_equal(np.asarray(written.dataobj), data > 0.5)


def test_nrrd_space_abbreviation_and_ras(tmp_path):
    data = _random_image()
    nrrd.write(str(tmp_path / "lps.nrrd"), data, _nrrd_header("LPS"))
    nrrd.write(str(tmp_path / "ras.nrrd"), data, _nrrd_header("right-anterior-superior"))
    lps, ras = read_volume(tmp_path / "lps.nrrd"), read_volume(tmp_path / "ras.nrrd")
    assert np.allclose(lps.source.affine, LPS_TO_RAS @ ras.source.affine)


def test_nrrd_without_directions_uses_spacings_or_1mm(tmp_path):
    data = _random_image()
    nrrd.write(str(tmp_path / "s.nrrd"), data, {"spacings": [0.5, 0.6, 2.0]})
    nrrd.write(str(tmp_path / "plain.nrrd"), data)
    assert read_volume(tmp_path / "s.nrrd").spacing == pytest.approx((0.5, 0.6, 2.0))
    assert read_volume(tmp_path / "plain.nrrd").spacing == pytest.approx((1.0, 1.0, 1.0))
    nrrd.write(str(tmp_path / "neg.nrrd"), data, {"spacings": [0.5, -0.6, 2.0]})
    with pytest.raises(InputError, match=r"neg\.nrrd.*strictly positive.*-0\.6"):
        read_volume(tmp_path / "neg.nrrd")


@pytest.mark.parametrize("channels", [1, 3])
def test_nrrd_vector_axis(tmp_path, channels):
    data = np.random.default_rng(2).random((channels, *SHAPE))
    directions = np.vstack([np.full(3, np.nan), LPS_DIRECTIONS])
    header = {"space": "LPS", "space directions": directions, "space origin": LPS_ORIGIN,
              "kinds": ["vector", "domain", "domain", "domain"]}
    nrrd.write(str(tmp_path / "v.nrrd"), data, header)
    if channels == 1:
        assert read_volume(tmp_path / "v.nrrd").shape == SHAPE
    else:
        with pytest.raises(InputError, match=r"v\.nrrd.*has 3 volumes"):
            read_volume(tmp_path / "v.nrrd")


# --------------------------------------------------------------------------- LA .h5


def _save_h5(path, image, label=None):
    with h5py.File(path, "w") as handle:
        handle["image"] = image
        if label is not None:
            handle["label"] = label
    return path


def test_h5_case_with_label_and_spacing(tmp_path):
    image = _random_image()
    label = (image > 0.5).astype(np.uint8)
    path = _save_h5(tmp_path / "la.h5", image, label)
    volume, seg = read_h5_case(path, spacing=0.625)
    assert volume.spacing == pytest.approx((0.625,) * 3)
    assert np.array_equal(volume.array, image)  # identity orientation: no reordering
    assert seg is not None and seg.array.dtype == np.uint8
    assert np.array_equal(seg.array, label)
    assert read_volume(path, spacing=(0.5, 0.6, 0.7)).spacing == pytest.approx((0.5, 0.6, 0.7))


def test_h5_case_without_label_defaults_to_1mm(tmp_path):
    volume, seg = read_h5_case(_save_h5(tmp_path / "la.h5", _random_image()))
    assert seg is None
    assert volume.spacing == pytest.approx((1.0, 1.0, 1.0))
    with pytest.raises(InputError, match=r"la\.h5.*no dataset 'label'.*image"):
        read_label(tmp_path / "la.h5", volume)


def test_research_layout_h5_defaults_to_the_la_2018_spacing(tmp_path):
    (tmp_path / "CASE").mkdir()
    volume, _ = read_h5_case(_save_h5(tmp_path / "CASE" / "mri_norm2.h5", _random_image()))
    assert volume.spacing == pytest.approx((0.625,) * 3)  # the LA 2018 scans' voxel size
    volume, _ = read_h5_case(tmp_path / "CASE" / "mri_norm2.h5", spacing=1.5)
    assert volume.spacing == pytest.approx((1.5,) * 3)


def test_h5_bad_spacing_refused(tmp_path):
    path = _save_h5(tmp_path / "la.h5", _random_image())
    with pytest.raises(InputError, match=r'la\.h5.*strictly positive.*"\(0, 0, 0\)"'):
        read_h5_case(path, spacing=0)
    with pytest.raises(InputError, match=r'la\.h5.*strictly positive.*"\(0.6, -0.6, 2\)"'):
        read_volume(path, spacing=(0.6, -0.6, 2.0))
    with pytest.raises(InputError, match="one number or three"):
        read_h5_case(path, spacing=(1.0, 1.0))


def test_h5_label_shape_mismatch_names_both(tmp_path):
    path = _save_h5(tmp_path / "la.h5", _random_image(), np.zeros((5, 6, 8), np.uint8))
    with pytest.raises(GridMismatchError, match=r"la\.h5 \[label\].*la\.h5 \[image\]"):
        read_h5_case(path)


# --------------------------------------------------------------------------- bad images


def test_4d_with_one_volume_is_3d(tmp_path):
    data = _random_image()[..., None]
    volume = read_volume(_save_nifti(tmp_path / "one.nii.gz", data, FLIPPED))
    assert volume.shape == SHAPE


def test_4d_with_three_volumes_refused(tmp_path):
    path = _save_nifti(tmp_path / "multi.nii.gz", np.zeros((*SHAPE, 3), np.float32), FLIPPED)
    with pytest.raises(InputError, match=r"multi\.nii\.gz: has 3 volumes.*single-channel 3D"):
        read_volume(path)


def test_2d_refused(tmp_path):
    path = _save_nifti(tmp_path / "flat.nii.gz", np.zeros((5, 6), np.float32), np.eye(4))
    with pytest.raises(InputError, match=r"flat\.nii\.gz: is 2D"):
        read_volume(path)
    nrrd.write(str(tmp_path / "flat.nrrd"), np.zeros((5, 6)), {"spacings": [1.0, 1.0]})
    with pytest.raises(InputError, match=r"flat\.nrrd: is 2D"):
        read_volume(tmp_path / "flat.nrrd")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_voxels_refused(tmp_path, bad):
    data = _random_image()
    data[0, 0, 0] = data[1, 2, 3] = bad
    path = _save_nifti(tmp_path / "nan.nii.gz", data, OBLIQUE)
    with pytest.raises(InputError, match=r"nan\.nii\.gz: 2 of 210 voxels are NaN or infinite"):
        read_volume(path)


def test_zero_spacing_refused(tmp_path):
    image = nib.Nifti1Image(_random_image(), None)
    image.header.set_sform(np.diag([0.0, 1.0, 1.0, 1.0]), code=2)  # sform with a zero column
    nib.save(image, str(tmp_path / "zero.nii.gz"))
    message = r'zero\.nii\.gz: spacing must be strictly positive.*"\(0, 1, 1\)"'
    with pytest.raises(InputError, match=message):
        read_volume(tmp_path / "zero.nii.gz")


def test_truncated_file_refused_with_its_name(tmp_path):
    path = _save_nifti(tmp_path / "cut.nii.gz", _random_image((20, 20, 20)), OBLIQUE)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(InputError, match=r"cut\.nii\.gz: cannot be read.*corrupt, truncated"):
        read_volume(path)


@pytest.mark.parametrize("name", ["junk.nii.gz", "junk.nii", "junk.nrrd", "junk.nhdr", "junk.h5"])
def test_garbage_bytes_refused_with_file_name(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not a medical image\x00\x01\x02" * 40)
    with pytest.raises(InputError, match=rf"{name.replace('.', '[.]')}: cannot be read"):
        read_volume(path)


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match=r"absent\.nii\.gz: no such file"):
        read_volume(tmp_path / "absent.nii.gz")
    (tmp_path / "scan.mha").write_bytes(b"x")
    message = r"scan\.mha: unsupported file type.*\.nii\.gz.*\.nrrd.*\.h5"
    with pytest.raises(InputError, match=message):
        read_volume(tmp_path / "scan.mha")


# --------------------------------------------------------------------------- bad labels


@pytest.fixture
def image(tmp_path):
    return read_volume(_save_nifti(tmp_path / "img.nii.gz", _random_image(), OBLIQUE))


def test_label_values_become_compact_integers(tmp_path, image):
    source = image.to_source_order(image.array)
    _save_nifti(tmp_path / "lab.nii.gz", (source > 0.5).astype(np.float64), OBLIQUE)
    label = read_label(tmp_path / "lab.nii.gz", image)
    assert label.array.dtype == np.uint8
    assert np.array_equal(label.array, image.array > 0.5)
    _save_nifti(tmp_path / "wide.nii.gz", np.full(SHAPE, 300, np.int32), OBLIQUE)
    assert read_label(tmp_path / "wide.nii.gz", image).array.dtype == np.uint16


def test_label_with_other_shape_refused(tmp_path, image):
    _save_nifti(tmp_path / "lab.nii.gz", np.zeros((5, 6, 8), np.uint8), OBLIQUE)
    with pytest.raises(GridMismatchError, match=r"lab\.nii\.gz.*img\.nii\.gz"):
        read_label(tmp_path / "lab.nii.gz", image)


def test_label_with_other_affine_refused(tmp_path, image):
    shifted = OBLIQUE.copy()
    shifted[0, 3] += 2.0
    _save_nifti(tmp_path / "lab.nii.gz", np.zeros(SHAPE, np.uint8), shifted)
    message = r"lab\.nii\.gz and .*img\.nii\.gz .*different affines"
    with pytest.raises(GridMismatchError, match=message):
        read_label(tmp_path / "lab.nii.gz", image)


def test_non_integer_label_refused(tmp_path, image):
    values = np.zeros(SHAPE, np.float32)
    values[2, 2, 2] = 0.5
    _save_nifti(tmp_path / "lab.nii.gz", values, OBLIQUE)
    message = r"lab\.nii\.gz: 1 voxels have non-integer label values \(e\.g\. 0\.5\)"
    with pytest.raises(InputError, match=message):
        read_label(tmp_path / "lab.nii.gz", image)


def test_negative_label_refused(tmp_path, image):
    _save_nifti(tmp_path / "lab.nii.gz", np.full(SHAPE, -1, np.int16), OBLIQUE)
    with pytest.raises(InputError, match=r"lab\.nii\.gz: has negative label values"):
        read_label(tmp_path / "lab.nii.gz", image)


# --------------------------------------------------------------------------- writing


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, image, monkeypatch):
    target = write_volume(tmp_path / "seg.nii.gz", np.ones(SHAPE, np.uint8), image)
    before = target.read_bytes()

    def broken_save(img, filename):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    with pytest.raises(UamcError, match=r"seg\.nii\.gz: could not be written \(disk full\)"):
        write_volume(target, np.zeros(SHAPE, np.uint8), image)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.nii.gz", "seg.nii.gz"]


def test_overwrite_replaces_content_and_leaves_no_temp(tmp_path, image):
    target = write_volume(tmp_path / "seg.nii.gz", np.ones(SHAPE, np.uint8), image)
    write_volume(target, np.full(SHAPE, 2, np.uint8), image)
    assert np.all(np.asarray(nib.load(str(target)).dataobj) == 2)
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_write_refuses_wrong_suffix_and_wrong_shape(tmp_path, image):
    with pytest.raises(InputError, match=r"seg\.nrrd: outputs are written as \.nii\.gz"):
        write_volume(tmp_path / "seg.nrrd", np.zeros(SHAPE), image)
    with pytest.raises(GridMismatchError, match=r"seg\.nii\.gz: array of shape \(7, 6, 5\)"):
        write_volume(tmp_path / "seg.nii.gz", np.zeros((7, 6, 5)), image)
    assert not (tmp_path / "seg.nii.gz").exists()


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("path", "strip_seg", "expected"),
    [
        ("imagesTr/la_001.nii.gz", False, "la_001"),
        ("imagesTr/la_001_0000.nii.gz", False, "la_001"),
        ("la_001.nii", False, "la_001"),
        ("LA_001.NRRD", False, "LA_001"),
        ("lgemri_scan.nhdr", False, "lgemri_scan"),
        ("CASE1/lgemri.nhdr", False, "CASE1"),  # a research layout's per-case file: the folder names it
        ("2018_UTAH_MICCAI/abc/mri_norm2.h5", False, "abc"),
        ("pred/la_001_seg.nii.gz", True, "la_001"),
        ("pred/la_001_seg.nii.gz", False, "la_001_seg"),
        ("la.001.nii.gz", False, "la.001"),
    ],
)
def test_case_name(path, strip_seg, expected):
    assert case_name(path, strip_seg=strip_seg) == expected


def test_supported_suffixes_are_public():
    assert io.SUPPORTED_SUFFIXES == (".nii.gz", ".nii", ".nrrd", ".nhdr", ".h5", ".dcm")


# ------------------------------------------------------------------ headers other tools trust
def test_outputs_carry_the_sources_sform_and_qform_each_with_its_code(tmp_path):
    """ITK tools read the qform, nibabel/FSL the sform: both must land on the input."""
    data = np.random.default_rng(3).normal(size=(12, 10, 8)).astype(np.float32)
    sform = np.diag([1.0, 1.0, 2.0, 1.0])
    sform[:3, 3] = (10.0, 20.0, 30.0)
    qform = np.diag([1.0, -1.0, 2.0, 1.0])  # flipped in y ...
    qform[:3, 3] = (10.0, 35.0, 30.0)  # ... and 15 mm away
    image = nib.Nifti1Image(data, None)
    image.set_sform(sform, code=2)
    image.set_qform(qform, code=1)
    nib.save(image, str(tmp_path / "in.nii.gz"))
    with pytest.warns(io.GeometryWarning, match="sform .code 2. and qform .code 1. disagree"):
        volume = read_volume(tmp_path / "in.nii.gz")
    out = write_volume(tmp_path / "out_seg.nii.gz", (volume.array > 0).astype(np.uint8), volume)
    written = nib.load(str(out))
    assert int(written.header["sform_code"]) == 2 and int(written.header["qform_code"]) == 1
    assert np.allclose(written.header.get_sform(), sform, atol=1e-5)
    assert np.allclose(written.header.get_qform(), qform, atol=1e-4)
    assert np.array_equal(np.asarray(written.dataobj), data > 0)  # same voxel order as the input


@pytest.mark.parametrize(("unit", "pixdim"), [("meter", 0.0007), ("micron", 700.0)])
def test_spatial_units_are_honoured_and_kept(tmp_path, unit, pixdim):
    data = np.random.default_rng(4).normal(size=(10, 10, 6)).astype(np.float32)
    image = nib.Nifti1Image(data, np.diag([pixdim, pixdim, 2 * pixdim, 1.0]))
    image.header.set_xyzt_units(unit, "sec")
    nib.save(image, str(tmp_path / "in.nii.gz"))
    volume = read_volume(tmp_path / "in.nii.gz")
    assert volume.spacing == pytest.approx((0.7, 0.7, 1.4))  # millimetres, as ITK converts them
    assert volume.voxel_volume_ml == pytest.approx(0.7 * 0.7 * 1.4 / 1000)
    written = nib.load(str(write_volume(tmp_path / "out.nii.gz", data, volume)))
    assert written.header.get_xyzt_units()[0] == unit  # the file's own units, so it overlays the input
    assert np.allclose(written.affine, image.affine)


def test_a_resampling_that_collapses_the_volume_is_refused(tmp_path):
    from _helpers import save_tiny_model
    from napari_uamc.engine.checkpoint import load_checkpoint
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    model, meta = load_checkpoint(save_tiny_model(tmp_path / "tiny.pt", spacing=(1.0, 1.0, 1.0)))
    metres_read_as_mm = volume_from_array(np.zeros((64, 64, 20), np.float32), spacing=0.0007)
    with pytest.raises(InputError, match=r"spacing \(0.0007, 0.0007, 0.0007\) mm .* shrink \(64, 64, 20\) "
                                         r"voxels to \(1, 1, 1\).*units"):
        segment_volume(model, meta, metres_read_as_mm, InferenceConfig(mc_samples=0, device="cpu"))


def test_nrrd_space_units_are_honoured(tmp_path):
    header = {"space": "right-anterior-superior", "space directions": np.diag([0.0007, 0.0007, 0.0014]),
              "space origin": np.array([0.01, 0.02, 0.03]), "space units": ["m", "m", "m"]}
    nrrd.write(str(tmp_path / "m.nrrd"), np.zeros((6, 5, 4), np.float32), header, index_order="F")
    volume = read_volume(tmp_path / "m.nrrd")
    assert volume.spacing == pytest.approx((0.7, 0.7, 1.4))
    assert volume.affine[:3, 3] == pytest.approx((10.0, 20.0, 30.0))
    nrrd.write(str(tmp_path / "x.nrrd"), np.zeros((6, 5, 4), np.float32),
               {**header, "space units": ["furlong"] * 3}, index_order="F")
    with pytest.raises(InputError, match="unknown space units"):
        read_volume(tmp_path / "x.nrrd")


def test_float_maps_are_rounded_to_a_step_that_compresses():
    values = np.random.default_rng(6).normal(size=(20, 20, 10)).astype(np.float32)
    rounded = io.rounded_map(values)
    assert rounded.dtype == np.float32 and np.abs(rounded - values).max() <= 0.5e-4 + 1e-7
    assert len(np.unique(rounded)) < len(np.unique(values))
