"""The network sweep of inference: windows -> blended probabilities, SDF and MC uncertainty.

Used by :func:`napari_uamc.engine.inference.segment_volume`. One *pass* runs the network over
the windows of a :class:`~napari_uamc.engine.windows.WindowPlan`; per window the encoder runs
once, then the deterministic decode (dropout off) and/or ``T`` MC-dropout decodes that reuse the
encoder's features. Window outputs are blended with per-voxel weights into float32 sums on the
CPU, on the volume's own grid, so memory stays at a few volume-sized arrays.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from napari_uamc.engine.device import autocast
from napari_uamc.engine.fused_cache import cached_fused_copy
from napari_uamc.engine.fused_inference import can_fuse, mc_segmentation_logits
from napari_uamc.engine.inference_config import InferenceConfig
from napari_uamc.engine.model import DualTaskVNet
from napari_uamc.engine.windows import (
    WindowPlan,
    sliding_plan,
    stride_for_overlap,
    tile_plan,
    window_weights,
)
from napari_uamc.errors import UamcError

#: Relative cost of the encoder and of one decoder pass (FLOPs of the V-Net, for progress units).
ENCODER_COST, DECODER_COST = 0.77, 1.0
_LOG_FLOOR = 1e-12
_TINY = np.finfo(np.float32).tiny

ProgressCallback = Callable[[int, int], None]
StopRequest = Callable[[], bool]


class Cancelled(UamcError):
    """Segmentation stopped because the caller asked it to (``should_stop()`` returned True)."""


def mc_mean_probabilities(
    model: DualTaskVNet,
    features: list[torch.Tensor],
    samples: int,
    batch: int,
    after_batch: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Mean softmax ``[1, C, ...]`` of ``samples`` MC-dropout decodes of one window's features.

    The features of the (deterministic) encoder are shared: only the bottleneck is expanded
    along the batch axis (a view, no copy); the skip connections broadcast. ``after_batch(n)``
    is called after each batch of ``n`` samples (progress, stop requests).
    """
    total: torch.Tensor | None = None
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        shared = [*features[:-1], features[-1].expand(n, *features[-1].shape[1:])]
        if getattr(model, "fused_for_inference", False):
            logits = mc_segmentation_logits(model, shared)
        else:
            logits, _ = model.decode(shared, mc_dropout=True)
        summed = torch.softmax(logits.float(), dim=1).sum(dim=0, keepdim=True)
        total = summed if total is None else total + summed
        done += n
        if after_batch is not None:
            after_batch(n)
    assert total is not None
    return total / samples


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """``-sum_c p_c ln p_c`` over axis 0, float32, clipped to [0, ln C]."""
    p = np.clip(probabilities, _LOG_FLOOR, 1.0)
    out = -np.sum(probabilities * np.log(p), axis=0, dtype=np.float32)
    return np.clip(out, 0.0, math.log(probabilities.shape[0])).astype(np.float32, copy=False)


@dataclass(frozen=True)
class _Pass:
    """One sweep over the windows of ``plan``: the deterministic decode and/or MC samples."""

    plan: WindowPlan
    deterministic: bool
    mc_starts: frozenset[tuple[int, int, int]]

    def work(self, start: tuple[int, int, int], samples: int, patch_voxels: int) -> float:
        """Cost of one window in units of one decoder pass over a training patch."""
        units = ENCODER_COST
        units += DECODER_COST if self.deterministic else 0.0
        units += DECODER_COST * samples if start in self.mc_starts else 0.0
        return units * math.prod(self.plan.window) / patch_voxels


def plan_passes(
    shape: tuple[int, int, int], patch: tuple[int, int, int], cfg: InferenceConfig
) -> list[_Pass]:
    """The window sweeps :func:`segment_volume` makes over a (model-grid) volume of ``shape``."""
    if cfg.windows == "tiles":
        det_plan = tile_plan(shape, patch, cfg.tile_voxels)
    else:
        det_plan = sliding_plan(shape, patch, cfg.stride or stride_for_overlap(patch, cfg.overlap))
    if cfg.mc_samples == 0:
        return [_Pass(det_plan, True, frozenset())]
    if cfg.mc_windows == "all":
        return [_Pass(det_plan, True, frozenset(det_plan.starts))]
    if cfg.mc_windows == "cover" or cfg.windows == "tiles":
        return [_Pass(det_plan, True, frozenset(det_plan.covering()))]
    mc_plan = tile_plan(shape, patch, cfg.tile_voxels)
    return [_Pass(det_plan, True, frozenset()), _Pass(mc_plan, False, frozenset(mc_plan.starts))]


def prepare_network(
    model: DualTaskVNet, cfg: InferenceConfig, device: torch.device, dtype: torch.dtype
) -> tuple[DualTaskVNet, bool]:
    """An eval-mode copy of ``model`` to run, and whether it needs autocast to ``dtype``.

    With ``cfg.fuse`` (and a foldable norm) it is the fused copy of :mod:`engine.fused_inference`, stored
    in ``dtype``, reused while ``model``'s weights stay the same (:mod:`engine.fused_cache`);
    otherwise a float32 copy run under autocast. ``model`` itself is untouched.
    """
    if cfg.fuse and can_fuse(model):
        return cached_fused_copy(model, dtype, device, cfg.channels_last), False
    net = copy.deepcopy(model).eval().to(device)
    if cfg.channels_last:
        net.to(memory_format=torch.channels_last_3d)
    return net, dtype != torch.float32


class _Accumulator:
    """Weighted sums of window outputs on the volume's grid (float32, CPU)."""

    def __init__(self, shape: tuple[int, int, int], n_classes: int, sampling: bool) -> None:
        self.prob = np.zeros((n_classes, *shape), dtype=np.float32)
        self.sdf = np.zeros((n_classes - 1, *shape), dtype=np.float32)
        self.weight = np.zeros(shape, dtype=np.float32)
        self.mc = np.zeros((n_classes, *shape), dtype=np.float32) if sampling else None
        self.mc_weight = np.zeros(shape, dtype=np.float32) if sampling else None

    @staticmethod
    def _add(total: np.ndarray, target, values: np.ndarray, inside, weights: np.ndarray) -> None:
        total[(slice(None), *target)] += values[(slice(None), *inside)] * weights

    def add_deterministic(
        self, placement, probs: np.ndarray, sdf: np.ndarray, weights: np.ndarray
    ) -> None:
        inside, target = placement
        w = weights[inside]
        self._add(self.prob, target, probs, inside, w)
        self._add(self.sdf, target, sdf, inside, w)
        self.weight[target] += w

    def add_mc(self, placement, mean_probs: np.ndarray, weights: np.ndarray) -> None:
        inside, target = placement
        w = weights[inside]
        self._add(self.mc, target, mean_probs, inside, w)  # type: ignore[arg-type]
        self.mc_weight[target] += w  # type: ignore[index]

    def background_probability(self, target) -> np.ndarray:
        """Blended deterministic background probability over ``target`` so far."""
        return self.prob[(0, *target)] / np.maximum(self.weight[target], _TINY)

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised ``(probabilities, sdf, uncertainty)``; uncertainty 0 where not sampled."""
        probabilities = self.prob / np.maximum(self.weight, _TINY)
        sdf = self.sdf / np.maximum(self.weight, _TINY)
        if self.mc is None:
            return probabilities, sdf, np.zeros(self.weight.shape, dtype=np.float32)
        mean = self.mc / np.maximum(self.mc_weight, _TINY)  # type: ignore[operator]
        sampled = self.mc_weight > 0  # type: ignore[operator]
        uncertainty = np.where(sampled, entropy(mean), np.float32(0))
        return probabilities, sdf, uncertainty.astype(np.float32, copy=False)


class _Work:
    """Progress reporting and stop requests, in units of decoder passes over a training patch."""

    def __init__(
        self, total: float, progress: ProgressCallback | None, should_stop: StopRequest | None
    ) -> None:
        self.total = max(1, int(math.ceil(total)))
        self.done = 0.0
        self.progress = progress
        self.should_stop = should_stop
        self.report()

    def check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Cancelled(f"segmentation stopped at {self.percent()} % of the work")

    def advance(self, units: float) -> None:
        self.done += units
        self.report()

    def percent(self) -> int:
        return int(100 * min(self.done, self.total) / self.total)

    def report(self, final: bool = False) -> None:
        if self.progress is not None:
            done = self.total if final else min(int(self.done), self.total - 1)
            self.progress(done, self.total)


def _window_input(
    padded: np.ndarray,
    start: tuple[int, int, int],
    window: tuple[int, int, int],
    device: torch.device,
    dtype: torch.dtype,
    memory_format: torch.memory_format,
) -> torch.Tensor:
    crop = tuple(slice(s, s + w) for s, w in zip(start, window))
    x = torch.from_numpy(np.ascontiguousarray(padded[crop]))[None, None]
    return x.to(device=device, dtype=dtype).contiguous(memory_format=memory_format)


def network_maps(
    model: DualTaskVNet,
    image: np.ndarray,
    patch: tuple[int, int, int],
    cfg: InferenceConfig,
    device: torch.device,
    dtype: torch.dtype,
    progress: ProgressCallback | None,
    should_stop: StopRequest | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """Blended ``(probabilities [C], sdf [C-1], uncertainty)`` of the network over ``image``.

    Also returns how many windows ran the deterministic decode and the MC samples.
    """
    shape = tuple(int(s) for s in image.shape)
    passes = plan_passes(shape, patch, cfg)  # type: ignore[arg-type]
    patch_voxels = math.prod(patch)
    samples = cfg.mc_samples
    work = _Work(
        sum(p.work(start, samples, patch_voxels) for p in passes for start in p.plan.starts),
        progress,
        should_stop,
    )
    acc = _Accumulator(shape, model.n_classes, samples > 0)  # type: ignore[arg-type]
    memory_format = torch.channels_last_3d if cfg.channels_last else torch.contiguous_format
    net, use_autocast = prepare_network(model, cfg, device, dtype)
    input_dtype = torch.float32 if use_autocast else dtype
    autocast_dtype = dtype if use_autocast else torch.float32  # float32: no autocast
    counts = {"windows": 0, "mc_windows": 0}

    for sweep in passes:
        padded = sweep.plan.pad(image)
        window = sweep.plan.window
        weights = window_weights(window, cfg.weighting)
        scale = math.prod(window) / patch_voxels

        def sampled(n: int, scale: float = scale) -> None:
            work.advance(DECODER_COST * n * scale)
            work.check()

        for start in sweep.plan.starts:
            work.check()
            placement = sweep.plan.placement(start)
            x = _window_input(padded, start, window, device, input_dtype, memory_format)
            with torch.inference_mode(), autocast(device, autocast_dtype):
                features = net.encode(x)
                work.advance(ENCODER_COST * scale)
                if sweep.deterministic:
                    logits, sdf = net.decode(features, mc_dropout=False)
                    probs = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
                    acc.add_deterministic(placement, probs, sdf[0].float().cpu().numpy(), weights)
                    counts["windows"] += 1
                    work.advance(DECODER_COST * scale)
                if start not in sweep.mc_starts:
                    continue
                if cfg.mc_only_foreground_windows:
                    background = acc.background_probability(placement[1])
                    if float(background.min()) >= cfg.background_confidence:
                        work.advance(DECODER_COST * samples * scale)
                        continue
                mean = mc_mean_probabilities(net, features, samples, cfg.mc_batch, sampled)
            acc.add_mc(placement, mean[0].cpu().numpy(), weights)
            counts["mc_windows"] += 1
    work.report(final=True)
    probabilities, sdf_map, uncertainty = acc.result()
    return probabilities, sdf_map, uncertainty, counts
