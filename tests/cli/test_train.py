"""`uamc train` end to end on a tiny study: model, log and resume state, resuming, errors."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from _helpers import noisy_sphere
from napari_uamc.cli import main
from napari_uamc.engine.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _write_study(root, n_cases=4, n_labeled=2):
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    for index in range(n_cases):
        image, label = noisy_sphere(index, (32, 32, 16), shift=3, radius=(5, 8))
        affine = np.diag([1.0, 1.0, 1.5, 1.0])
        nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / f"c{index}.nii.gz"))
        if index < n_labeled:
            nib.save(nib.Nifti1Image(label, affine), str(root / "labelsTr" / f"c{index}.nii.gz"))


def test_cli_train_writes_model_log_and_resume_state(tmp_path, capsys):
    _write_study(tmp_path / "data")
    out = tmp_path / "model.pt"
    common = ["train", str(tmp_path / "data"), "--out", str(out), "--patch", "16", "16", "16",
              "--width", "2", "--mc-samples", "2", "--device", "cpu", "--precision", "float32",
              "--log-every", "1"]
    assert main(common + ["--iterations", "2", "--checkpoint-every", "1"]) == 0
    model, meta = load_checkpoint(out)
    assert meta.history[-1]["iterations"] == 2 and meta.spacing == (1.0, 1.0, 1.5)
    assert meta.history[-1]["labeled"] == ["c0", "c1"]
    log = (tmp_path / "model.log").read_text().splitlines()
    assert sum(line.startswith("iter ") for line in log) == 2
    resume = tmp_path / "model.resume.pt"
    assert torch.load(resume, weights_only=True)["iteration"] == 2
    assert main(common + ["--iterations", "3", "--resume", str(resume)]) == 0
    assert load_checkpoint(out)[1].history[-1]["iterations"] == 3
    assert "resuming at iteration 2" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "x.pt"), "--labeled", "3",
                 "--device", "cpu"]) == 2  # c2 has no label: a clear error, exit status 2
    assert "no label file" in capsys.readouterr().err


def test_cli_train_refuses_bad_run_settings_before_reading_data(tmp_path, capsys):
    missing = str(tmp_path / "no-such-folder")
    assert main(["train", missing, "--out", str(tmp_path / "model.pth"), "--device", "cpu"]) == 2
    assert "must name a .pt file" in capsys.readouterr().err
    assert main(["train", missing, "--out", str(tmp_path / "model.pt"), "--checkpoint-every", "-1"]) == 2
    assert "checkpoint-every must be >= 0" in capsys.readouterr().err
