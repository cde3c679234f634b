"""End-to-end tests of `uamc evaluate` on small NIfTI folders written in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_uamc.cli import main
from napari_uamc.data.metrics import compute_metrics

SHAPE = (10, 12, 8)
#: Permuted, flipped, anisotropic source grid: array axis 0 runs along -y at 2 mm, axis 1
#: along x at 0.5 mm, axis 2 along z at 1.5 mm.
AFFINE = np.array(
    [[0.0, 0.5, 0.0, -3.0], [-2.0, 0.0, 0.0, 10.0], [0.0, 0.0, 1.5, 4.0], [0.0, 0.0, 0.0, 1.0]]
)
SOURCE_SPACING = (2.0, 0.5, 1.5)  # along the source array's axes


def box(lo, hi, shape=SHAPE, value=1) -> np.ndarray:
    array = np.zeros(shape, np.uint8)
    array[tuple(slice(a, b) for a, b in zip(lo, hi))] = value
    return array


def save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


@pytest.fixture
def folders(tmp_path):
    """Ground truth a, b, c, e; predictions a (_seg), b (plain), e (empty), z (no truth)."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    truths = {
        "a": box((2, 2, 2), (7, 9, 6)),
        "b": box((1, 3, 1), (6, 10, 5)),
        "c": box((3, 3, 3), (5, 5, 5)),
        "e": box((3, 3, 3), (6, 6, 6)),
    }
    preds = {
        "a_seg": box((3, 2, 2), (8, 9, 6)),
        "b": box((1, 4, 1), (6, 11, 6)),
        "e_seg": np.zeros(SHAPE, np.uint8),
        "z_seg": box((0, 0, 0), (2, 2, 2)),
    }
    for name, array in truths.items():
        save(gt / f"{name}.nii.gz", array)
    for name, array in preds.items():
        save(pred / f"{name}.nii.gz", array)
    # maps written beside predictions: fractional values a label reader would refuse
    uncertainty = np.full(SHAPE, 0.3, np.float32)
    save(pred / "a_uncertainty.nii.gz", uncertainty)
    save(pred / "a_sdf.nii.gz", -uncertainty)
    return pred, gt, truths, preds


def run_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["evaluate", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_matches_both_naming_styles_and_writes_json(folders, tmp_path, capsys):
    pred, gt, truths, preds = folders
    out = tmp_path / "results" / "metrics.json"
    code, stdout, stderr = run_cli(capsys, pred, gt, "--json", out)
    assert code == 0, stderr

    report = json.loads(out.read_text())
    assert sorted(report["cases"]) == ["a", "b", "e"]
    assert report["unit"] == "mm"
    assert report["missing_predictions"] == ["c"]
    assert report["unmatched_predictions"] == ["z"]
    # distances in mm from the affine: the same as on the source arrays with their spacing
    for case, pred_name in (("a", "a_seg"), ("b", "b")):
        expected = compute_metrics(preds[pred_name], truths[case], SOURCE_SPACING)
        assert report["cases"][case] == pytest.approx(expected.as_dict("mm"))
    assert report["cases"]["e"] == {"dice": 0.0, "jaccard": 0.0, "hd95_mm": None, "asd_mm": None}
    assert report["undefined"] == {"dice": 0, "jaccard": 0, "hd95_mm": 1, "asd_mm": 1}
    a, b = report["cases"]["a"], report["cases"]["b"]
    assert report["mean"]["dice"] == pytest.approx((a["dice"] + b["dice"]) / 3)
    assert report["mean"]["hd95_mm"] == pytest.approx((a["hd95_mm"] + b["hd95_mm"]) / 2)
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temp file left

    table = stdout.splitlines()
    assert table[0].split() == ["case", "Dice", "Jaccard", "HD95", "mm", "ASD", "mm"]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:5]}
    assert set(rows) == {"a", "b", "e", "mean"}
    assert rows["e"] == ["0.0000", "0.0000", "n/a", "n/a"]
    assert float(rows["a"][2]) == pytest.approx(a["hd95_mm"], abs=0.005)
    assert "undefined HD95/ASD" in stdout and "1 of 3" in stdout
    assert "no prediction: c" in stderr
    assert "no ground truth: z" in stderr


def test_unit_voxel_changes_keys_and_values(folders, tmp_path, capsys):
    pred, gt, truths, preds = folders
    out = tmp_path / "voxel.json"
    code, stdout, _ = run_cli(capsys, pred, gt, "--json", out, "--unit", "voxel")
    assert code == 0
    report = json.loads(out.read_text())
    assert report["unit"] == "voxel"
    assert set(report["cases"]["a"]) == {"dice", "jaccard", "hd95_vox", "asd_vox"}
    expected = compute_metrics(preds["a_seg"], truths["a"], unit="voxel")
    assert report["cases"]["a"]["asd_vox"] == pytest.approx(expected.asd)
    assert "HD95 vox" in stdout.splitlines()[0]


def test_label_selects_one_class(tmp_path, capsys):
    truth = box((1, 1, 1), (4, 4, 4)) + box((6, 6, 4), (9, 9, 7), value=2)
    pred = truth.copy()
    pred[pred == 2] = 0
    save(tmp_path / "gt" / "k.nii.gz", truth)
    save(tmp_path / "pred" / "k_seg.nii.gz", pred)
    out = tmp_path / "out.json"
    folders = (tmp_path / "pred", tmp_path / "gt")
    assert run_cli(capsys, *folders, "--label", "1", "--json", out)[0] == 0
    assert json.loads(out.read_text())["cases"]["k"]["dice"] == 1.0
    assert run_cli(capsys, *folders, "--label", "2", "--json", out)[0] == 0
    report = json.loads(out.read_text())
    assert report["cases"]["k"]["hd95_mm"] is None and report["label"] == 2
    code, _, stderr = run_cli(capsys, *folders, "--label", "0")
    assert code == 2 and "--label" in stderr


@pytest.mark.parametrize("mismatch", ["affine", "shape"])
def test_grid_mismatch_is_refused_naming_both_files(folders, capsys, mismatch):
    pred, gt, truths, _ = folders
    if mismatch == "affine":
        shifted = AFFINE.copy()
        shifted[0, 3] += 1.0
        save(pred / "b.nii.gz", truths["b"], shifted)
    else:
        save(pred / "b.nii.gz", np.zeros((10, 12, 9), np.uint8))
    code, _, stderr = run_cli(capsys, pred, gt)
    assert code == 2
    assert str(pred / "b.nii.gz") in stderr and str(gt / "b.nii.gz") in stderr
    assert "grid" in stderr


def test_no_matching_case_is_an_error(tmp_path, capsys):
    save(tmp_path / "gt" / "a.nii.gz", box((1, 1, 1), (3, 3, 3)))
    save(tmp_path / "pred" / "x_seg.nii.gz", box((1, 1, 1), (3, 3, 3)))
    code, _, stderr = run_cli(capsys, tmp_path / "pred", tmp_path / "gt")
    assert code == 2
    assert "no prediction" in stderr and "x" in stderr and "a" in stderr


def test_two_predictions_for_one_case_are_refused(folders, capsys):
    pred, gt, truths, _ = folders
    save(pred / "a.nii.gz", truths["a"])  # beside a_seg.nii.gz
    code, _, stderr = run_cli(capsys, pred, gt)
    assert code == 2
    assert "a.nii.gz" in stderr and "a_seg.nii.gz" in stderr


def test_missing_folders_are_reported(tmp_path, capsys):
    save(tmp_path / "gt" / "a.nii.gz", box((1, 1, 1), (3, 3, 3)))
    code, _, stderr = run_cli(capsys, tmp_path / "nowhere", tmp_path / "gt")
    assert code == 2 and "nowhere" in stderr
    (tmp_path / "empty").mkdir()
    code, _, stderr = run_cli(capsys, tmp_path / "gt", tmp_path / "empty")
    assert code == 2 and "no ground-truth files" in stderr


def test_progress_bar_for_many_cases(tmp_path, capsys):
    for n in range(5):
        mask = box((1, 1, 1), (3 + n % 3, 4, 4))
        save(tmp_path / "gt" / f"c{n}.nii.gz", mask)
        save(tmp_path / "pred" / f"c{n}_seg.nii.gz", mask)
    code, stdout, stderr = run_cli(capsys, tmp_path / "pred", tmp_path / "gt")
    assert code == 0
    assert "5/5" in stderr
    mean = next(line for line in stdout.splitlines() if line.startswith("mean"))
    assert mean.split()[1:] == ["1.0000", "1.0000", "0.00", "0.00"]
