"""Sliding-window inference with MC-dropout uncertainty, on tiny random networks."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_uamc.data.io import read_volume, volume_from_array
from napari_uamc.engine.checkpoint import ModelMeta
from napari_uamc.engine.inference import (
    Cancelled,
    InferenceConfig,
    entropy,
    keep_largest_components,
    mc_mean_probabilities,
    segment_volume,
    write_segmentation,
)
from napari_uamc.engine.model import DualTaskVNet
from napari_uamc.engine.preprocess import (
    needs_resampling,
    resample,
    resample_to_shape,
    resampled_shape,
    zscore,
)
from napari_uamc.engine.windows import (
    axis_starts,
    covering_starts,
    sliding_plan,
    stride_for_overlap,
    tile_plan,
    window_weights,
)
from napari_uamc.errors import CheckpointError, InputError

PATCH = (16, 16, 16)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: float32, plain memory layout: exact comparisons with a direct forward pass.
EXACT = dict(precision="float32", channels_last=False, device="cpu")


@pytest.fixture(scope="module")
def model() -> DualTaskVNet:
    torch.manual_seed(0)
    net = DualTaskVNet(width=2, dropout=0.5)
    for module in net.modules():  # BatchNorm statistics of a "trained" net
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def meta(model: DualTaskVNet) -> ModelMeta:
    return ModelMeta.for_model(model, spacing=(1.0, 1.0, 1.0), patch=PATCH)


def random_volume(shape, spacing=(1.0, 1.0, 1.0), seed=0):
    rng = np.random.default_rng(seed)
    array = rng.normal(100.0, 20.0, size=shape).astype(np.float32)
    return volume_from_array(array, spacing=spacing, name=f"random{shape}")


# --------------------------------------------------------------------------- preprocessing
def test_zscore_and_constant_volume() -> None:
    out = zscore(np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    assert out.dtype == np.float32
    assert abs(out.mean()) < 1e-6 and abs(out.std() - 1) < 1e-5
    flat = zscore(np.full((3, 3, 3), 7.0))
    assert np.array_equal(flat, np.zeros((3, 3, 3), np.float32))


def test_resampling_shapes_and_round_trip() -> None:
    assert resampled_shape((100, 100, 20), (0.5, 0.5, 2.5), (1.0, 1.0, 1.0)) == (50, 50, 50)
    array = np.random.default_rng(1).random((10, 12, 7)).astype(np.float32)
    there = resample(array, (1, 1, 2), (1, 1, 1), order=1)
    assert there.shape == (10, 12, 14)
    back = resample_to_shape(there, array.shape, order=1)
    assert back.shape == array.shape
    channels = resample_to_shape(np.stack([array, array]), (5, 6, 7), order=1)
    assert channels.shape == (2, 5, 6, 7)
    labels = resample_to_shape(np.eye(4, dtype=np.uint8)[None].repeat(4, 0), (8, 8, 8), order=0)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 1}
    with pytest.raises(InputError):
        resample(array, (1, 0, 1), (1, 1, 1))


@pytest.mark.parametrize(("source", "target"), [((40, 36, 24), (20, 18, 12)), ((17, 21, 9), (30, 11, 14))])
def test_linear_resampling_samples_the_same_points_as_scipy_zoom(source, target) -> None:
    from scipy import ndimage

    array = np.random.default_rng(2).normal(size=source).astype(np.float32)
    expected = ndimage.zoom(array, [t / s for t, s in zip(target, source)], order=1, mode="nearest",
                            grid_mode=True)
    assert np.allclose(resample_to_shape(array, target, order=1), expected, atol=1e-5)
    both = resample_to_shape(np.stack([array, -array]), target, order=1)
    assert np.allclose(both[1], -expected, atol=1e-5)


def test_needs_resampling_tolerance() -> None:
    assert not needs_resampling((1.05, 1.0, 0.95), (1.0, 1.0, 1.0))
    assert needs_resampling((1.0, 1.0, 1.2), (1.0, 1.0, 1.0))
    assert not needs_resampling((1.0, 1.0, 1.2), (1.0, 1.0, 1.0), tolerance=0.25)


# --------------------------------------------------------------------------- window geometry
@pytest.mark.parametrize("size,patch,stride", [(16, 16, 8), (37, 16, 8), (100, 32, 24), (33, 16, 1)])
def test_window_starts_cover_with_bounded_step(size: int, patch: int, stride: int) -> None:
    starts = axis_starts(size, patch, stride)
    assert starts[0] == 0 and starts[-1] == size - patch
    assert all(0 < b - a <= stride for a, b in zip(starts, starts[1:]))
    cover = covering_starts(starts, patch, size)
    covered = np.zeros(size, bool)
    for s in cover:
        covered[s : s + patch] = True
    assert covered.all() and set(cover) <= set(starts)
    assert len(cover) == math.ceil(size / patch) or len(cover) <= len(starts)


def test_paper_window_count_and_overlap_validation() -> None:
    # the paper's stride 18/18/4 with 112x112x80 windows gives 363 windows on 288x288x88
    plan = sliding_plan((288, 288, 88), (112, 112, 80), (18, 18, 4))
    assert len(plan.starts) == 363
    assert len(sliding_plan((288, 288, 88), (112, 112, 80), (56, 56, 40)).starts) == 50
    assert stride_for_overlap((112, 112, 80), 0.5) == (56, 56, 40)
    assert stride_for_overlap((16, 16, 16), 0.0) == (16, 16, 16)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(InputError, match=r"\[0, 1\)"):
            InferenceConfig(overlap=bad)
    with pytest.raises(InputError, match="multiples of 16"):
        InferenceConfig(patch=(16, 16, 20))
    with pytest.raises(InputError):
        InferenceConfig(mc_samples=-1)


def test_window_weights() -> None:
    gaussian = window_weights((16, 8, 9), "gaussian")
    assert gaussian.shape == (16, 8, 9) and gaussian.min() > 0 and gaussian.max() == 1
    assert gaussian[8, 4, 4] > gaussian[0, 0, 0]
    assert np.all(window_weights((4, 4, 4), "uniform") == 1)


def coverage(plan) -> np.ndarray:
    counts = np.zeros(plan.shape, int)
    for start in plan.starts:
        inside, target = plan.placement(start)
        counts[target] += 1
        assert all(t.stop - t.start == i.stop - i.start for t, i in zip(target, inside))
    return counts


def test_padding_and_placement_cover_the_volume() -> None:
    plan = sliding_plan((5, 40, 16), (16, 16, 16), (8, 8, 8))
    assert plan.padded == (16, 40, 16) and plan.offset == (5, 0, 0)
    padded = plan.pad(np.ones((5, 40, 16), np.float32))
    assert padded.shape == plan.padded and padded.sum() == 5 * 40 * 16
    assert coverage(plan).min() >= 1


@pytest.mark.parametrize(
    "shape,expected_window",
    [((288, 288, 88), (288, 288, 96)), ((20, 30, 9), (32, 32, 16)), ((500, 500, 100), None)],
)
def test_tile_plan(shape, expected_window) -> None:
    budget = 2**23
    plan = tile_plan(shape, (112, 112, 80), budget)
    assert all(w % 16 == 0 for w in plan.window)
    assert math.prod(plan.window) <= budget
    if expected_window is not None:
        assert plan.window == expected_window and len(plan.starts) == 1
    else:
        assert all(w >= p for w, p in zip(plan.window, (112, 112, 80)))
        # far fewer voxels than the sliding window at 50 % overlap
        sliding = sliding_plan(shape, (112, 112, 80), (56, 56, 40))
        assert plan.voxels() < 0.3 * sliding.voxels()
    assert coverage(plan).min() >= 1


# --------------------------------------------------------------------------- segment_volume
@pytest.mark.parametrize("shape", [(11, 23, 37), (16, 9, 5), (33, 17, 16)])
def test_output_shapes_on_odd_sizes(model, meta, shape) -> None:
    volume = random_volume(shape)
    result = segment_volume(model, meta, volume, InferenceConfig(mc_samples=2, overlap=0.25))
    assert result.label.shape == shape and result.label.dtype == np.uint8
    for name in ("sdf", "uncertainty", "disagreement"):
        array = getattr(result, name)
        assert array.shape == shape and array.dtype == np.float32, name
        assert np.all(np.isfinite(array)), name
    assert set(np.unique(result.label)) <= {0, 1}
    assert np.all(np.abs(result.sdf) <= 1)
    assert np.all((result.disagreement >= 0) & (result.disagreement <= 1))
    assert result.info["windows"] >= 1 and result.timings["total"] > 0


def test_patch_sized_volume_equals_a_direct_forward(model, meta) -> None:
    volume = random_volume(PATCH, seed=3)
    cfg = InferenceConfig(mc_samples=0, weighting="uniform", keep_probabilities=True, **EXACT)
    result = segment_volume(model, meta, volume, cfg)
    x = torch.from_numpy(zscore(volume.array))[None, None]
    with torch.no_grad():
        logits, sdf = model(x)
    probs = torch.softmax(logits, 1)[0].numpy()
    assert np.allclose(result.probabilities, probs, atol=1e-5)
    assert np.array_equal(result.label, probs.argmax(0))
    assert np.allclose(result.sdf, sdf[0, 0].numpy(), atol=1e-5)
    assert result.info["windows"] == 1
    assert np.all(result.uncertainty == 0), "mc_samples=0 gives no uncertainty"


def test_uncertainty_range_and_label_independent_of_sampling(model, meta) -> None:
    volume = random_volume((40, 18, 17), seed=4)
    sliding = dict(EXACT, windows="sliding")  # several deterministic windows
    plain = segment_volume(model, meta, volume, InferenceConfig(mc_samples=0, **sliding))
    sampled = segment_volume(model, meta, volume, InferenceConfig(mc_samples=4, **sliding))
    cover = segment_volume(model, meta, volume, InferenceConfig(mc_samples=2, mc_windows="cover", **sliding))
    every = segment_volume(
        model, meta, volume, InferenceConfig(mc_samples=3, mc_windows="all", mc_batch=2, **sliding)
    )
    for result in (sampled, cover, every):
        assert np.array_equal(plain.label, result.label)
        assert np.array_equal(plain.sdf, result.sdf)
        u = result.uncertainty
        assert u.min() >= 0 and u.max() <= math.log(2) + 1e-6
        assert u.max() > 0.01, "dropout must make the samples differ"
        assert np.all(u > 0), "every voxel gets MC samples"
    assert every.info["mc_windows"] == every.info["windows"]
    assert 0 < cover.info["mc_windows"] < cover.info["windows"]
    assert sampled.info["mc_windows"] == 1  # one tile covers this small volume


def test_mc_dropout_is_seeded_so_the_same_case_ranks_the_same_every_time(model, meta) -> None:
    volume = random_volume((40, 18, 17), seed=4)
    cfg = InferenceConfig(mc_samples=4, **EXACT)
    torch.manual_seed(123)
    expected = torch.rand(2)
    torch.manual_seed(123)
    torch.rand(1)
    first = segment_volume(model, meta, volume, cfg)
    assert torch.equal(torch.rand(1), expected[1:])  # the caller's random stream goes on as it was
    assert np.array_equal(first.uncertainty, segment_volume(model, meta, volume, cfg).uncertainty)
    other = segment_volume(model, meta, volume, InferenceConfig(mc_samples=4, seed=1, **EXACT))
    fresh = segment_volume(model, meta, volume, InferenceConfig(mc_samples=4, seed=None, **EXACT))
    assert not np.array_equal(first.uncertainty, other.uncertainty)
    assert not np.array_equal(first.uncertainty, fresh.uncertainty)
    for bad in (0.5, -1, 2**63):
        with pytest.raises(InputError, match="seed must be an integer"):
            InferenceConfig(seed=bad)


def test_tiles_layout_for_everything(model, meta) -> None:
    volume = random_volume((40, 18, 17), seed=4)
    tiled = segment_volume(model, meta, volume, InferenceConfig(mc_samples=2, windows="tiles", **EXACT))
    assert tiled.info["windows"] == 1 and tiled.info["mc_windows"] == 1
    assert tiled.label.shape == volume.shape and tiled.uncertainty.min() > 0


def test_entropy_limits() -> None:
    p = np.array([[1.0, 0.5, 0.0], [0.0, 0.5, 1.0]], dtype=np.float32)
    assert np.allclose(entropy(p), [0, math.log(2), 0], atol=1e-6)


def test_shared_encoder_mc_equals_naive_full_forwards(model) -> None:
    torch.manual_seed(11)
    x = torch.randn(1, 1, *PATCH)
    samples = 5
    with torch.no_grad():
        torch.manual_seed(123)
        naive = torch.stack(
            [torch.softmax(model.decode(model.encode(x), mc_dropout=True)[0], 1) for _ in range(samples)]
        ).mean(0)
        torch.manual_seed(123)
        shared = mc_mean_probabilities(model, model.encode(x), samples, batch=1)
    assert torch.allclose(shared, naive, atol=1e-6)
    # batched samples draw other masks but estimate the same mean
    with torch.no_grad():
        features = model.encode(x)
        torch.manual_seed(1)
        many_single = mc_mean_probabilities(model, features, 200, batch=1)
        torch.manual_seed(2)
        many_batched = mc_mean_probabilities(model, features, 200, batch=8)
    assert (many_single - many_batched).abs().mean() < 0.01
    deterministic = torch.softmax(model.decode(features, mc_dropout=False)[0], 1)
    assert not torch.allclose(many_single, deterministic, atol=1e-3)


def test_foreground_only_sampling_skips_confident_windows(model, meta) -> None:
    volume = random_volume((20, 18, 17), seed=5)
    never_confident = segment_volume(
        model, meta, volume,
        InferenceConfig(mc_samples=2, mc_only_foreground_windows=True, background_confidence=1.0, **EXACT),
    )
    always_confident = segment_volume(
        model, meta, volume,
        InferenceConfig(mc_samples=2, mc_only_foreground_windows=True, background_confidence=1e-6, **EXACT),
    )
    assert never_confident.info["mc_windows"] > 0 and never_confident.uncertainty.max() > 0
    assert always_confident.info["mc_windows"] == 0
    assert np.all(always_confident.uncertainty == 0)
    assert np.array_equal(never_confident.label, always_confident.label)


def test_bfloat16_channels_last_close_to_float32(model, meta) -> None:
    volume = random_volume((24, 20, 18), seed=6)
    cfg = dict(mc_samples=0, keep_probabilities=True, device="cpu")
    exact = segment_volume(model, meta, volume, InferenceConfig(precision="float32", channels_last=False, **cfg))
    fast = segment_volume(model, meta, volume, InferenceConfig(precision="bfloat16", channels_last=True, **cfg))
    assert np.abs(exact.probabilities - fast.probabilities).max() < 0.05
    assert fast.info["precision"] == "bfloat16"


def test_resampling_path_returns_the_input_grid(model, meta) -> None:
    volume = random_volume((30, 22, 9), spacing=(0.5, 0.7, 2.5), seed=7)
    result = segment_volume(model, meta, volume, InferenceConfig(mc_samples=1))
    assert result.info["resampled"] is True
    assert result.label.shape == volume.shape == result.uncertainty.shape == result.sdf.shape
    close = random_volume((17, 17, 17), spacing=(1.05, 0.95, 1.0), seed=7)
    assert segment_volume(model, meta, close, InferenceConfig(mc_samples=0)).info["resampled"] is False


def test_progress_and_stop_request(model, meta) -> None:
    volume = random_volume((40, 20, 16))
    calls: list[tuple[int, int]] = []
    segment_volume(model, meta, volume, InferenceConfig(mc_samples=2), progress=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert total > 1 and calls[0] == (0, total) and calls[-1] == (total, total)
    done = [d for d, _ in calls]
    assert done == sorted(done) and len(set(t for _, t in calls)) == 1
    asked = []

    def stop_after_two() -> bool:
        asked.append(1)
        return len(asked) > 2

    with pytest.raises(Cancelled, match="stopped at"):
        cfg = InferenceConfig(mc_samples=0, windows="sliding")
        segment_volume(model, meta, volume, cfg, should_stop=stop_after_two)
    assert not model.training


def test_bad_inputs_are_refused(model, meta) -> None:
    array = np.zeros((16, 16, 16), np.float32)
    array[3, 3, 3] = np.nan
    bad = volume_from_array(np.zeros((16, 16, 16), np.float32)).with_array(array)
    with pytest.raises(InputError, match="NaN"):
        segment_volume(model, meta, bad)
    two_channel = ModelMeta.for_model(DualTaskVNet(in_channels=2, width=2), patch=PATCH)
    with pytest.raises(CheckpointError, match="input channels"):
        segment_volume(DualTaskVNet(in_channels=2, width=2), two_channel, random_volume(PATCH))
    with pytest.raises(CheckpointError, match="width"):
        segment_volume(model, ModelMeta(width=8, patch=PATCH), random_volume(PATCH))
    with pytest.raises(InputError, match="unknown device"):
        segment_volume(model, meta, random_volume(PATCH), InferenceConfig(device="tpu"))


def test_multiclass_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = DualTaskVNet(n_classes=3, width=2).eval()
    meta3 = ModelMeta.for_model(net, patch=PATCH, class_names=["background", "a", "b c"])
    volume = random_volume((18, 16, 16))
    result = segment_volume(net, meta3, volume, InferenceConfig(mc_samples=2))
    assert result.sdf.shape == (2, 18, 16, 16)
    assert result.uncertainty.max() <= math.log(3) + 1e-6
    assert set(result.volume_ml(volume.spacing)) == {"a", "b c"}
    paths = write_segmentation(result, volume, tmp_path, "case")
    assert sorted(p.name for p in paths.values()) == [
        "case_sdf_a.nii.gz", "case_sdf_b_c.nii.gz", "case_seg.nii.gz", "case_uncertainty.nii.gz"
    ]


def test_largest_component() -> None:
    label = np.zeros((10, 10, 10), np.uint8)
    label[1:4, 1:4, 1:4] = 1  # 27 voxels
    label[7, 7, 7] = 1  # stray voxel
    label[6:9, 0:2, 0:2] = 2
    kept = keep_largest_components(label, 3)
    assert kept[7, 7, 7] == 0 and kept[2, 2, 2] == 1 and (kept == 2).sum() == 12
    diagonal = np.zeros((4, 4, 4), np.uint8)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = 1  # 26-connected: one component
    assert np.array_equal(keep_largest_components(diagonal, 2), diagonal)


def test_volume_ml_and_mean_uncertainty(model, meta) -> None:
    volume = random_volume((16, 16, 16), spacing=(1.0, 1.0, 1.0))
    result = segment_volume(model, meta, volume, InferenceConfig(mc_samples=2, largest_component=True))
    foreground = int((result.label == 1).sum())
    assert result.volume_ml((2.0, 1.0, 0.5)) == {"foreground": pytest.approx(foreground / 1000)}
    if foreground:
        assert result.mean_uncertainty() == pytest.approx(float(result.uncertainty[result.label > 0].mean()))


# --------------------------------------------------------------------------- writing
def oblique_nifti(path: Path, shape=(19, 14, 11), seed=8) -> np.ndarray:
    """An anisotropic, rotated, flipped (LPS-like) image in its own voxel order."""
    angle = 0.3
    rotation = np.array(
        [[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]]
    )
    axes = np.array([[0, -1, 0], [-1, 0, 0], [0, 0, 1]], dtype=float)  # swapped and flipped
    affine = np.eye(4)
    affine[:3, :3] = rotation @ axes @ np.diag([0.8, 1.3, 2.1])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    data = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return affine


def test_outputs_are_written_on_the_exact_source_grid(model, meta, tmp_path: Path) -> None:
    source = tmp_path / "case_0000.nii.gz"
    affine = oblique_nifti(source)
    volume = read_volume(source)
    oblique_meta = ModelMeta.for_model(model, spacing=volume.spacing, patch=PATCH)
    result = segment_volume(model, oblique_meta, volume, InferenceConfig(mc_samples=2))
    paths = write_segmentation(result, volume, tmp_path / "out", "case")
    assert set(paths) == {"seg", "sdf", "uncertainty"}
    original = nib.load(str(source))
    for key, dtype in (("seg", np.uint8), ("sdf", np.float32), ("uncertainty", np.float32)):
        written = nib.load(str(paths[key]))
        assert written.shape == original.shape, key
        assert np.allclose(written.affine, affine, atol=1e-5), key
        assert written.get_data_dtype() == dtype, key
    seg = np.asarray(nib.load(str(paths["seg"])).dataobj)
    assert np.array_equal(seg, volume.to_source_order(result.label))
    unc = np.asarray(nib.load(str(paths["uncertainty"])).dataobj)
    # float maps are stored rounded to 1e-4 (io.rounded_map), so they compress
    assert np.allclose(unc, volume.to_source_order(result.uncertainty), rtol=0, atol=0.5e-4 + 1e-7)


# --------------------------------------------------------------------------- fused network
def test_fused_copy_computes_the_same_function(model) -> None:
    from napari_uamc.engine.fused_inference import FusedConvReLU, can_fuse, fuse_for_inference

    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_for_inference(model, torch.float32, "cpu", channels_last=True)
    assert any(isinstance(m, FusedConvReLU) for m in fused.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in fused.modules())
    torch.manual_seed(3)
    x = torch.randn(2, 1, 32, 16, 16)
    with torch.no_grad():
        seg, sdf = model(x)
        seg_f, sdf_f = fused(x.contiguous(memory_format=torch.channels_last_3d))
        torch.manual_seed(9)
        mc = model.decode(model.encode(x), mc_dropout=True)[0]
        torch.manual_seed(9)
        mc_f = fused.decode(fused.encode(x), mc_dropout=True)[0]
    assert torch.allclose(seg, seg_f, atol=1e-4) and torch.allclose(sdf, sdf_f, atol=1e-4)
    assert torch.allclose(mc, mc_f, atol=1e-4), "dropout is untouched by the fusion"
    # the original is not modified
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert any(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    assert can_fuse(model) and not can_fuse(DualTaskVNet(width=2, norm="instance"))


def test_fused_and_unfused_inference_agree(model, meta) -> None:
    volume = random_volume((24, 20, 18), seed=12)
    cfg = dict(mc_samples=0, keep_probabilities=True, **EXACT)
    fused = segment_volume(model, meta, volume, InferenceConfig(fuse=True, **cfg))
    plain = segment_volume(model, meta, volume, InferenceConfig(fuse=False, **cfg))
    assert np.abs(fused.probabilities - plain.probabilities).max() < 1e-4


def test_instance_norm_model_runs_unfused() -> None:
    torch.manual_seed(0)
    net = DualTaskVNet(width=2, norm="instance").eval()
    meta_in = ModelMeta.for_model(net, patch=(32, 32, 32))
    result = segment_volume(net, meta_in, random_volume((33, 20, 18)), InferenceConfig(mc_samples=1))
    assert result.label.shape == (33, 20, 18) and np.all(np.isfinite(result.uncertainty))


def test_fast_mc_logits_equal_decode_with_the_same_masks(model) -> None:
    from napari_uamc.engine.fused_inference import fuse_for_inference, mc_segmentation_logits

    torch.manual_seed(4)
    x = torch.randn(1, 1, 32, 16, 16)
    with torch.no_grad():
        features = model.encode(x)
        batched = [*features[:-1], features[-1].expand(3, *features[-1].shape[1:])]
        torch.manual_seed(21)
        expected = model.decode(batched, mc_dropout=True)[0]
        torch.manual_seed(21)
        fast = mc_segmentation_logits(model, batched)
        assert torch.allclose(fast, expected, atol=1e-5)
        fused = fuse_for_inference(model, torch.float32, "cpu", channels_last=False)
        torch.manual_seed(21)
        features = fused.encode(x)
        fused_fast = mc_segmentation_logits(fused, [*features[:-1], features[-1].expand(3, -1, -1, -1, -1)])
    assert torch.allclose(fused_fast, expected, atol=1e-4)
