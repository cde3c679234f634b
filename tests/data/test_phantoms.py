"""Synthetic phantoms: determinism, anatomy, appearance domains, geometry on disk, the CLI."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from napari_uamc.cli import main
from napari_uamc.data.io import read_label, read_volume
from napari_uamc.data.phantoms import (
    DOMAINS,
    PhantomCase,
    case_name,
    case_seed,
    make_phantom,
    resolve_domain,
    write_phantom_study,
)
from napari_uamc.errors import InputError, StudyError

SMALL = (48, 48, 24)
TINY = (32, 32, 16)


@pytest.fixture(scope="module")
def case_a() -> PhantomCase:
    return make_phantom(7, SMALL, "A")


@pytest.fixture(scope="module")
def case_b() -> PhantomCase:
    return make_phantom(7, SMALL, "B")


# ------------------------------------------------------------------ determinism


def test_same_seed_gives_identical_arrays(case_a: PhantomCase) -> None:
    again = make_phantom(7, SMALL, "a")
    assert np.array_equal(again.image, case_a.image)
    assert np.array_equal(again.label, case_a.label)
    assert np.array_equal(again.affine, case_a.affine)
    assert again.source_axcodes == case_a.source_axcodes


def test_different_seeds_give_different_anatomy(case_a: PhantomCase) -> None:
    other = make_phantom(8, SMALL, "A")
    assert not np.array_equal(other.label, case_a.label)
    assert not np.allclose(other.affine, case_a.affine)


def test_case_seeds_and_names_are_distinct() -> None:
    seeds = {case_seed(seed, index) for seed in range(3) for index in range(20)}
    assert len(seeds) == 60
    assert case_name("b", 3, 12) == "phantom_B_0003_012"
    assert case_name("A", 0, 0) != case_name("B", 0, 0) != case_name("A", 1, 0)


# ------------------------------------------------------------------ anatomy


def test_arrays_types_and_shapes(case_a: PhantomCase) -> None:
    assert case_a.image.dtype == np.float32 and case_a.label.dtype == np.uint8
    assert case_a.image.shape == case_a.label.shape == SMALL
    assert set(np.unique(case_a.label)) == {0, 1}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_label_is_one_component_of_sensible_size(seed: int) -> None:
    label = make_phantom(seed, SMALL).label.astype(bool)
    assert 0.01 <= label.mean() <= 0.15
    _, components = ndimage.label(label)
    assert components == 1


def test_veins_extend_beyond_the_chamber(case_a: PhantomCase) -> None:
    """The veins are thin tubes: opening with a ball thicker than them leaves the chamber,
    and what it removes is a substantial share of the label."""
    label = case_a.label.astype(bool)
    spacing = np.asarray(case_a.spacing)
    ball_mm = 4.0
    half = np.ceil(ball_mm / spacing).astype(int)
    grid = np.indices(2 * half + 1).T - half
    ball = (np.sum((grid * spacing) ** 2, axis=-1) <= ball_mm**2).T
    chamber = ndimage.binary_opening(label, structure=ball)
    tubes = label & ~chamber
    assert chamber.sum() > 0.5 * label.sum()
    assert tubes.sum() > 0.03 * label.sum()
    _, pieces = ndimage.label(tubes)
    assert pieces >= 3


def test_image_is_positive_and_blood_brighter_than_tissue(case_a: PhantomCase) -> None:
    image, label = case_a.image, case_a.label.astype(bool)
    assert np.all(np.isfinite(image)) and image.min() > 0
    inside = ndimage.binary_erosion(label, iterations=1)
    around = ndimage.binary_dilation(label, iterations=4) & ~ndimage.binary_dilation(label)
    assert np.median(image[inside]) > 1.5 * np.median(image[around])
    assert np.median(image[inside]) > 1.5 * np.median(image[~label])


def test_unlabeled_bright_distractors_exist(case_a: PhantomCase) -> None:
    """Some voxels far from the label are as bright as the blood pool: intensity alone does
    not solve the task."""
    label = case_a.label.astype(bool)
    far = ~ndimage.binary_dilation(label, iterations=3)
    blood = np.median(case_a.image[label])
    bright_far = (ndimage.gaussian_filter(case_a.image, 1.0) > 0.8 * blood) & far
    assert bright_far.sum() > 0.1 * label.sum()


# ------------------------------------------------------------------ domains


def test_domains_share_anatomy_but_not_appearance(case_a: PhantomCase, case_b: PhantomCase) -> None:
    assert np.array_equal(case_a.label, case_b.label)
    assert np.array_equal(case_a.affine, case_b.affine)
    label = case_a.label.astype(bool)

    def contrast(case: PhantomCase) -> float:
        return float(np.median(case.image[label]) / np.median(case.image[~label]))

    def relative_noise(case: PhantomCase) -> float:
        inside = ndimage.binary_erosion(label, iterations=2)
        residual = case.image - ndimage.median_filter(case.image, 3)
        return float(np.std(residual[inside]) / np.median(case.image[inside]))

    assert contrast(case_b) < 0.8 * contrast(case_a)
    assert relative_noise(case_b) > 1.2 * relative_noise(case_a)


def test_every_domain_renders(case_a: PhantomCase) -> None:
    assert len(DOMAINS) >= 2
    for name in DOMAINS:
        case = make_phantom(7, SMALL, name.lower())
        assert case.domain == name
        assert np.array_equal(case.label, case_a.label)
        assert np.all(np.isfinite(case.image)) and case.image.min() > 0


def test_unknown_domain_lists_the_known_ones() -> None:
    with pytest.raises(InputError, match="known domains are A, B"):
        resolve_domain("mri")
    with pytest.raises(InputError, match="unknown phantom domain"):
        make_phantom(0, TINY, "Z")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"shape": (8, 32, 32)}, "between 16"),
        ({"shape": (32, 32)}, "three integers"),
        ({"shape": (32.5, 32, 32)}, "three integers"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_bad_phantom_arguments(kwargs: dict, message: str) -> None:
    arguments = {"seed": 0, "shape": TINY, **kwargs}
    with pytest.raises(InputError, match=message):
        make_phantom(**arguments)


# ------------------------------------------------------------------ files and geometry


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory):
    return write_phantom_study(
        tmp_path_factory.mktemp("study") / "phantoms", cases=3, seed=5, shape=TINY, labeled=1
    )


def test_study_layout(study) -> None:
    files = [f"{case_name('A', 5, i)}.nii.gz" for i in range(3)]
    assert sorted(p.name for p in (study / "imagesTr").iterdir()) == files
    assert sorted(p.name for p in (study / "groundTruth").iterdir()) == files
    assert [p.name for p in (study / "labelsTr").iterdir()] == files[:1]
    dataset = json.loads((study / "dataset.json").read_text())
    assert dataset["numTraining"] == 1
    assert dataset["labels"]["1"] == "left atrium"
    assert (study / ".uamc" / "state.json").is_file()
    assert not [p for p in study.rglob("*") if ".tmp" in p.name]


def test_written_files_are_anisotropic_and_not_ras(study) -> None:
    codes = set()
    for path in sorted((study / "imagesTr").iterdir()):
        image = nib.load(path)
        codes.add(nib.aff2axcodes(image.affine))
        zooms = sorted(image.header.get_zooms())
        assert zooms[-1] > 1.8 * zooms[0]
        assert not np.allclose(image.affine[:3, :3], np.diag(np.diag(image.affine[:3, :3])))
        assert np.linalg.norm(image.affine[:3, 3]) > 1
        assert image.get_data_dtype() == np.float32
    assert ("R", "A", "S") not in codes


def test_reading_back_gives_the_canonical_arrays(study) -> None:
    for index in range(3):
        case = make_phantom(case_seed(5, index), TINY, "A")
        name = case_name("A", 5, index)
        image = read_volume(study / "imagesTr" / f"{name}.nii.gz")
        truth = read_label(study / "groundTruth" / f"{name}.nii.gz", like=image)
        assert np.array_equal(truth.array, case.label)
        assert np.array_equal(image.array, case.image)
        assert np.allclose(image.affine, case.affine, atol=1e-4)
        assert np.allclose(image.spacing, case.spacing, atol=1e-5)


def test_non_empty_folder_is_refused_unless_overwritten(tmp_path) -> None:
    out = tmp_path / "study"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(StudyError, match="not empty"):
        write_phantom_study(out, cases=1, shape=TINY)
    write_phantom_study(out, cases=2, shape=TINY, overwrite=True)
    write_phantom_study(out, cases=1, shape=TINY, seed=1, overwrite=True)
    assert [p.name for p in (out / "imagesTr").iterdir()] == [f"{case_name('A', 1, 0)}.nii.gz"]
    assert (out / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cases": 0}, "at least 1"),
        ({"cases": 2, "labeled": 3}, "between 0 and 2"),
        ({"cases": 2, "labeled": -1}, "between 0 and 2"),
        ({"cases": 1, "domain": "nope"}, "known domains"),
    ],
)
def test_bad_study_arguments_write_nothing(tmp_path, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        write_phantom_study(tmp_path / "out", shape=TINY, **kwargs)
    assert not (tmp_path / "out").exists()


def test_progress_is_reported(tmp_path) -> None:
    calls: list[tuple[int, int]] = []
    write_phantom_study(tmp_path / "s", cases=2, shape=TINY, progress=lambda *a: calls.append(a))
    assert calls == [(1, 2), (2, 2)]


# ------------------------------------------------------------------ CLI


def test_cli_end_to_end(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    code = main(
        ["phantoms", str(out), "--cases", "3", "--labeled", "1", "--shape", "32", "32", "16",
         "--seed", "2", "--domain", "b"]
    )
    assert code == 0
    names = [case_name("B", 2, i) for i in range(3)]
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [f"{n}.nii.gz" for n in names]
    assert len(list((out / "groundTruth").iterdir())) == 3
    assert [p.name for p in (out / "labelsTr").iterdir()] == [f"{names[0]}.nii.gz"]
    printed = capsys.readouterr().out
    assert str(out) in printed and "1 labeled" in printed and "B:" in printed
    assert "32 x 32 x 16" in printed and "spacing" in printed
    image = nib.load(out / "imagesTr" / f"{names[1]}.nii.gz")
    assert sorted(image.shape) == [16, 32, 32]


def test_cli_refuses_non_empty_folder_without_force(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    args = ["phantoms", str(out), "--cases", "1", "--shape", "16", "16", "16"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force", "--seed", "4"]) == 0
    assert [p.name for p in (out / "imagesTr").iterdir()] == [f"{case_name('A', 4, 0)}.nii.gz"]


@pytest.mark.parametrize(
    "extra",
    [
        ["--cases", "0"],
        ["--cases", "two"],
        ["--cases", "2", "--shape", "8", "32", "32"],
        ["--cases", "2", "--shape", "32", "32"],
        ["--cases", "2", "--domain", "Z"],
        ["--cases", "2", "--seed", "-3"],
        ["--cases", "2", "--labeled", "-1"],
        [],
    ],
)
def test_cli_bad_arguments(tmp_path, capsys, extra: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["phantoms", str(tmp_path / "x"), *extra])
    assert exit_info.value.code == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_more_labeled_than_cases(tmp_path, capsys) -> None:
    assert main(["phantoms", str(tmp_path / "x"), "--cases", "2", "--labeled", "3"]) == 2
    assert "--labeled 3" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
