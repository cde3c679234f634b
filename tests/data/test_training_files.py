"""Tests of the one read-only listing of a study's training files (uamc train and the fine-tune)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_uamc.data.study import Study
from napari_uamc.data.study.training_files import read_training_files
from napari_uamc.engine.dataset import load_cases_from_folder
from napari_uamc.engine.finetune import study_cases
from napari_uamc.errors import InputError

CASES = ("a", "b", "c", "d")
SHAPE = (6, 7, 8)


def folder_snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under ``root`` with its content hash (folders: empty)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


def box(value: int = 1) -> np.ndarray:
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[1:4, 2:5, 3:6] = value
    return label


@pytest.fixture
def study_root(tmp_path: Path) -> Path:
    """A study with two accepted cases, ground truth for an unaccepted one, then closed."""
    sources = tmp_path / "sources"
    sources.mkdir()
    rng = np.random.default_rng(0)
    for case in CASES:
        data = rng.normal(100.0, 20.0, SHAPE).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.5, 2.0, 1.0])), str(sources / f"{case}.nii.gz"))
    study = Study.create(tmp_path / "study", sorted(sources.iterdir()))
    study.accept("a", box())
    study.accept("c", box())
    study.save_ground_truth("b", box())  # never a training label
    return study.root


def test_uamc_train_and_the_finetune_list_the_same_cases(study_root: Path) -> None:
    study = Study.open(study_root)
    expected = (study.labeled_cases(), study.unlabeled_cases())
    assert expected == (["a", "c"], ["b", "d"])
    assert study_cases(study) == expected
    split = load_cases_from_folder(study_root)
    assert ([c.name for c in split.labeled], [c.name for c in split.unlabeled]) == expected
    listed = read_training_files(study_root)
    assert (listed.labeled, listed.unlabeled) == expected
    assert listed.labels == read_training_files(study_root, study_rules=True).labels


def test_reading_for_training_leaves_the_folder_unchanged(study_root: Path) -> None:
    # a folder made by other tools: no .uamc/, no dataset.json (Study.open would add both)
    for extra in (study_root / ".uamc", study_root / "dataset.json"):
        if extra.is_dir():
            for path in sorted(extra.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            extra.rmdir()
        else:
            extra.unlink()
    before = folder_snapshot(study_root)
    read_training_files(study_root)
    split = load_cases_from_folder(study_root)
    assert [c.name for c in split.labeled] == ["a", "c"]
    assert folder_snapshot(study_root) == before
    assert not (study_root / ".uamc").exists()


def test_training_rules_take_nrrd_and_seg_labels_the_study_rules_do_not(study_root: Path) -> None:
    (study_root / "labelsTr" / "c.nii.gz").rename(study_root / "labelsTr" / "c_seg.nii.gz")
    assert read_training_files(study_root).labeled == ["a", "c"]
    assert read_training_files(study_root, study_rules=True).labeled == ["a"]
    (study_root / "imagesTr" / "e.nrrd").write_bytes(b"")
    assert "e" in read_training_files(study_root).images
    assert "e" not in read_training_files(study_root, study_rules=True).images


def test_two_files_of_one_case_and_a_missing_images_folder_are_refused(study_root: Path) -> None:
    (study_root / "imagesTr" / "a.nrrd").write_bytes(b"")
    with pytest.raises(InputError, match="both case 'a'"):
        read_training_files(study_root)
    with pytest.raises(InputError, match="imagesTr"):
        read_training_files(study_root / "labelsTr")
