"""The fused inference copy is built once per model and weights, and never served stale."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from _helpers import TINY_PATCH
from napari_uamc.data.io import volume_from_array
from napari_uamc.engine import fused_cache
from napari_uamc.engine.batchnorm import recalibrate_batchnorm
from napari_uamc.engine.checkpoint import ModelMeta
from napari_uamc.engine.fused_cache import cached_fused_copy
from napari_uamc.engine.fused_inference import fuse_for_inference
from napari_uamc.engine.inference import InferenceConfig, segment_volume
from napari_uamc.engine.model import DualTaskVNet

FLOAT32 = dict(precision="float32", channels_last=False, device="cpu", mc_samples=2)


def _model() -> DualTaskVNet:
    torch.manual_seed(0)
    net = DualTaskVNet(width=2, dropout=0.5)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture()
def fuses(monkeypatch) -> list[int]:
    """Counts the fused copies built; the cache starts empty."""
    fused_cache.clear_fused_cache()
    built: list[int] = []

    def counting(*args, **kwargs):
        built.append(1)
        return fuse_for_inference(*args, **kwargs)

    monkeypatch.setattr(fused_cache, "fuse_for_inference", counting)
    yield built
    fused_cache.clear_fused_cache()


def _outputs(net: DualTaskVNet) -> torch.Tensor:
    x = torch.randn(1, 1, *TINY_PATCH, generator=torch.Generator().manual_seed(5))
    with torch.inference_mode():
        seg, sdf = net(x)
    return torch.cat([seg, sdf], dim=1)


def _assert_current(model: DualTaskVNet, fuses: list[int]) -> None:
    """The next call builds a new copy, equal to a fresh fuse of the changed model."""
    before = len(fuses)
    served = cached_fused_copy(model, torch.float32, "cpu", False)
    assert len(fuses) == before + 1, "the changed model must not get the old copy"
    fresh = fuse_for_inference(model, torch.float32, "cpu", False)
    assert torch.equal(_outputs(served), _outputs(fresh))


def test_unchanged_weights_fuse_once_through_segment(fuses) -> None:
    model = _model()
    meta = ModelMeta.for_model(model, spacing=(1.0, 1.0, 1.0), patch=TINY_PATCH)
    image = np.random.default_rng(0).normal(size=(20, 18, 16)).astype(np.float32)
    volume = volume_from_array(image, spacing=(1.0, 1.0, 1.0), name="random")
    first = segment_volume(model, meta, volume, InferenceConfig(**FLOAT32))
    second = segment_volume(model, meta, volume, InferenceConfig(**FLOAT32))
    assert len(fuses) == 1
    # the same seeded MC masks: building the copy draws nothing from torch's random state
    assert np.array_equal(first.label, second.label)
    assert np.array_equal(first.uncertainty, second.uncertainty)
    # another precision or memory layout is another copy (one kept per model)
    segment_volume(model, meta, volume, InferenceConfig(**{**FLOAT32, "channels_last": True}))
    assert len(fuses) == 2


@pytest.mark.parametrize(
    "change",
    ["parameter_in_place", "through_data", "bn_buffer", "load_state_dict", "optimizer_step"],
)
def test_any_change_of_the_weights_refuses_the_cache(fuses, change) -> None:
    model = _model()
    cached_fused_copy(model, torch.float32, "cpu", False)
    assert cached_fused_copy(model, torch.float32, "cpu", False) is not None and len(fuses) == 1
    conv = model.encoder[0][0].conv
    with torch.no_grad():
        if change == "parameter_in_place":
            conv.weight[0, 0, 0, 0, 0] += 1.0
        elif change == "through_data":  # bumps no version counter
            conv.weight.data[0, 0, 0, 0, 0] += 1.0
        elif change == "bn_buffer":
            model.encoder[0][0].norm.running_var[0] *= 2.0
        elif change == "load_state_dict":
            model.load_state_dict(_model_with_seed(7).state_dict())
    if change == "optimizer_step":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        seg, sdf = model(torch.randn(2, 1, *TINY_PATCH))
        (seg.mean() + sdf.mean()).backward()
        optimizer.step()
        model.eval()
    _assert_current(model, fuses)


def test_batchnorm_recalibration_refuses_the_cache(fuses) -> None:
    """A training-mode BatchNorm forward changes running statistics without a version bump."""
    model = _model()
    cached_fused_copy(model, torch.float32, "cpu", False)
    model.train()
    with torch.no_grad():
        model(torch.randn(2, 1, *TINY_PATCH) * 3 + 1)
    model.eval()
    _assert_current(model, fuses)
    image = np.random.default_rng(3).normal(size=(20, 18, 16)).astype(np.float32)
    recalibrate_batchnorm(model, [image], TINY_PATCH, channels_last=False)
    _assert_current(model, fuses)


def _model_with_seed(seed: int) -> DualTaskVNet:
    torch.manual_seed(seed)
    return DualTaskVNet(width=2, dropout=0.5).eval()


def test_memory_stays_bounded(fuses) -> None:
    models = [_model_with_seed(s) for s in range(fused_cache.MAX_MODELS + 1)]
    for model in models:
        cached_fused_copy(model, torch.float32, "cpu", False)
    assert len(fused_cache._entries) == fused_cache.MAX_MODELS
    cached_fused_copy(models[0], torch.float32, "cpu", False)  # the oldest was let go
    assert len(fuses) == len(models) + 1
    del models, model
    gc.collect()
    assert len(fused_cache._entries) == 0, "an entry goes with its model"
