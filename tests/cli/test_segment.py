"""`uamc segment` end to end with a tiny model file."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from _helpers import save_tiny_model
from napari_uamc.cli import main
from napari_uamc.cli.segment import DEFAULT_MODEL_NOTICE
from napari_uamc.engine import checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def leave_malloc_alone(monkeypatch):
    """`uamc segment` tunes glibc malloc process-wide; not inside the test process."""
    from napari_uamc.engine import device

    monkeypatch.setattr(device, "keep_freed_memory", lambda: False)


def write_image(path: Path, shape=(20, 18, 12), spacing=(1.0, 1.0, 1.5)) -> Path:
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), str(path))
    return path


@pytest.fixture()
def model_file(tmp_path: Path) -> Path:
    return save_tiny_model(tmp_path / "tiny.pt")


def test_segment_writes_three_files_per_image(tmp_path: Path, model_file: Path, capsys) -> None:
    first = write_image(tmp_path / "la_001_0000.nii.gz")
    second = write_image(tmp_path / "la_002.nii.gz", shape=(17, 21, 9), spacing=(0.5, 0.5, 2.0))
    h5 = tmp_path / "la_003.h5"
    with h5py.File(h5, "w") as handle:
        handle["image"] = np.random.default_rng(1).normal(size=(18, 18, 10)).astype(np.float32)
    out = tmp_path / "out"
    code = main([
        "segment", str(first), str(second), str(h5), "--model", str(model_file), "--out", str(out),
        "--mc-samples", "2", "--overlap", "0.25", "--device", "cpu", "--threads", "1",
        "--largest-component", "--spacing", "1.0",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    for case, source in (("la_001", first), ("la_002", second)):
        original = nib.load(str(source))
        for kind in ("seg", "sdf", "uncertainty"):
            written = nib.load(str(out / f"{case}_{kind}.nii.gz"))
            assert written.shape == original.shape
            assert np.allclose(written.affine, original.affine)
        assert f"{case}: foreground" in printed
    assert (out / "la_003_seg.nii.gz").exists()
    assert "mL" in printed and "nats" in printed
    assert "resampled" in printed  # la_002's spacing differs from the model's
    assert DEFAULT_MODEL_NOTICE not in printed


def test_default_model_notice_and_missing_default(tmp_path, model_file, capsys, monkeypatch) -> None:
    image = write_image(tmp_path / "a.nii.gz")
    monkeypatch.setattr(checkpoint, "default_model_path", lambda: model_file)
    assert main(["segment", str(image), "--out", str(tmp_path / "o"), "--mc-samples", "0"]) == 0
    assert DEFAULT_MODEL_NOTICE in capsys.readouterr().out
    monkeypatch.undo()
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL_RESOURCE", "models/not-there.pt")
    assert main(["segment", str(image), "--out", str(tmp_path / "o")]) == 2
    assert "packaged default model is missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--device", "tpu"], "unknown device"),
        (["--model", "{missing}"], "not found"),
    ],
)
def test_user_errors(tmp_path, model_file, capsys, extra, message) -> None:
    image = write_image(tmp_path / "a.nii.gz")
    extra = [e.replace("{missing}", str(tmp_path / "none.pt")) for e in extra]
    args = ["segment", str(image), "--out", str(tmp_path / "o"), "--model", str(model_file), *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_missing_input_and_cuda_unavailable(tmp_path, model_file, capsys) -> None:
    image = write_image(tmp_path / "a.nii.gz")
    code = main(["segment", str(image), str(tmp_path / "b.nii.gz"), "--model", str(model_file), "--out", str(tmp_path)])
    assert code == 2 and "b.nii.gz" in capsys.readouterr().err
    if not torch.cuda.is_available():
        code = main(["segment", str(image), "--model", str(model_file), "--out", str(tmp_path), "--device", "cuda"])
        assert code == 2 and "no CUDA" in capsys.readouterr().err


def test_model_that_does_not_fit(tmp_path, capsys) -> None:
    image = write_image(tmp_path / "a.nii.gz")
    two_channel = save_tiny_model(tmp_path / "two.pt", in_channels=2)
    assert main(["segment", str(image), "--model", str(two_channel), "--out", str(tmp_path / "o")]) == 2
    assert "input channels" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1", "1.5", "-0.2", "half"])
def test_overlap_outside_range_is_refused(tmp_path, value, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["segment", "x.nii.gz", "--out", str(tmp_path), "--overlap", value])
    assert stop.value.code == 2
    assert "--overlap" in capsys.readouterr().err


def test_same_case_twice_is_refused(tmp_path, model_file, capsys) -> None:
    a = write_image(tmp_path / "la_001_0000.nii.gz")
    (tmp_path / "b").mkdir()
    b = write_image(tmp_path / "b" / "la_001.nii.gz")
    assert main(["segment", str(a), str(b), "--model", str(model_file), "--out", str(tmp_path / "o")]) == 2
    assert "same case name" in capsys.readouterr().err


def test_tiles_layout_option(tmp_path, model_file, capsys) -> None:
    image = write_image(tmp_path / "a.nii.gz", spacing=(1.0, 1.0, 1.0))
    out = tmp_path / "o"
    args = ["segment", str(image), "--model", str(model_file), "--out", str(out), "--windows", "tiles"]
    assert main(args + ["--mc-samples", "1"]) == 0
    assert "(1 network window)" in capsys.readouterr().err
    assert (out / "a_uncertainty.nii.gz").exists()
    with pytest.raises(SystemExit):
        main(args + ["--windows", "diagonal"])


def test_cli_precision_choices_are_the_engines() -> None:
    from napari_uamc.cli._options import PRECISIONS
    from napari_uamc.engine.device import PRECISIONS as ENGINE_PRECISIONS

    assert PRECISIONS == ENGINE_PRECISIONS
