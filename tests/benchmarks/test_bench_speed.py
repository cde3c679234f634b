"""benchmarks/bench_speed.py and its plain-PyTorch baselines (benchmarks/_plain.py), at tiny sizes."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _plain  # noqa: E402
import bench_speed  # noqa: E402
from napari_uamc.data.volume import Volume  # noqa: E402
from napari_uamc.engine.checkpoint import ModelMeta  # noqa: E402
from napari_uamc.engine.inference import InferenceConfig, segment_volume  # noqa: E402
from napari_uamc.engine.model import DualTaskVNet  # noqa: E402
from napari_uamc.engine.preprocess import zscore  # noqa: E402


def tiny_model(width: int = 2) -> DualTaskVNet:
    torch.manual_seed(0)
    model = DualTaskVNet(width=width).eval()
    # non-trivial BatchNorm statistics, so that eval mode matters
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


def test_paper_window_count_is_the_papers_363():
    assert _plain.paper_window_count((288, 288, 88), _plain.PAPER_PATCH, _plain.PAPER_STRIDE) == 363
    # an axis shorter than the patch is padded to one window
    assert _plain.paper_window_count((96, 96, 48), (112, 112, 80), (18, 18, 4)) == 1
    assert _plain.paper_window_starts(40, 16, 8) == [0, 8, 16, 24]
    assert _plain.paper_window_starts(41, 16, 8) == [0, 8, 16, 24, 25]  # the last one flush


def test_plain_paper_test_matches_the_engines_reference_layout():
    model = tiny_model()
    rng = np.random.default_rng(0)
    image = rng.normal(size=(40, 32, 20)).astype(np.float32)
    probabilities, sdf, windows = _plain.paper_sliding_window(model, zscore(image), (16, 16, 16), (8, 8, 4))
    assert windows == 4 * 3 * 2
    volume = Volume(image, np.eye(4))
    meta = ModelMeta.for_model(model, patch=(16, 16, 16), spacing=volume.spacing)
    cfg = InferenceConfig(mc_samples=0, windows="sliding", stride=(8, 8, 4), weighting="uniform", precision="float32",
                          fuse=False, channels_last=False, device="cpu", keep_probabilities=True)
    engine = segment_volume(model, meta, volume, cfg)
    assert engine.info["windows"] == windows
    np.testing.assert_allclose(probabilities, engine.probabilities, atol=1e-5)
    np.testing.assert_allclose(sdf[0], engine.sdf, atol=1e-5)


def test_plain_step_trains_the_student_and_moves_the_teacher_by_ema():
    torch.manual_seed(0)
    student = DualTaskVNet(width=2)
    teacher = DualTaskVNet(width=2)
    teacher.load_state_dict(student.state_dict())
    settings = _plain.StepSettings(mc_samples=2, ema_alpha=0.9)
    step = _plain.PlainStep(student, teacher, settings, mc_chunk=3)
    images, labels = _plain.synthetic_batch(2, 1, (16, 16, 16))
    assert images.shape == (2, 1, 16, 16, 16) and labels.shape == (1, 16, 16, 16)
    assert 0 < labels.float().mean() < 0.5
    before_s = [p.detach().clone() for p in student.parameters()]
    before_t = [p.detach().clone() for p in teacher.parameters()]
    times = step(images, labels, split=True)
    assert times["student"] > 0 and times["teacher"] > 0
    moved = [not torch.equal(a, b) for a, b in zip(before_s, student.parameters())]
    assert all(moved)
    for old_t, new_s, new_t in zip(before_t, student.parameters(), teacher.parameters()):
        torch.testing.assert_close(new_t, 0.9 * old_t + 0.1 * new_s.detach())
    assert all(not p.requires_grad for p in teacher.parameters())


def test_flop_counts_per_voxel_and_per_path():
    encoder, decoder = bench_speed.network_flops_per_voxel(16)
    forward = (encoder + decoder) * math.prod(_plain.PAPER_PATCH)
    assert 60e9 < forward < 100e9  # ENGINEERING.md: "about 80 GFLOP" per F=16 paper-patch forward
    patch, shape = (16, 16, 16), (32, 32, 32)
    enc, dec = bench_speed.network_flops_per_voxel(2)
    reference = bench_speed.inference_flops(2, patch, shape, None, (8, 8, 8), 0)
    assert reference == pytest.approx(27 * 16**3 * (enc + dec))
    tiles = bench_speed.inference_flops(2, patch, shape, {"windows": "tiles"}, None, 4)
    assert tiles == pytest.approx(32**3 * (enc + dec + 4 * dec))  # one 32^3 tile, shared encoder


def test_smoke_run_caches_and_writes_its_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nother text\n")
    args = ["--smoke", "--parts", "inference,agreement", "--cache-dir", str(tmp_path / "cache")]
    assert bench_speed.main([*args, "--write", str(doc)]) == 0
    text = doc.read_text()
    assert "other text" in text and text.count("<!-- BEGIN speed -->") == 1
    assert "| tiles, the default |" in text and "| paper test |" in text  # agreement table
    assert "| uamc segment default, tiles (T=2) |" in text  # speed table: one subprocess per row
    assert "--write" not in text.split("\n")[5]  # the command shown is the measuring one
    assert bench_speed.main([*args, "--cached", "--write", str(doc)]) == 0
    assert doc.read_text() == text  # from the cache: nothing measured again


def test_unknown_part_is_refused():
    with pytest.raises(SystemExit, match="unknown part"):
        bench_speed.main(["--smoke", "--parts", "inference,bogus"])
