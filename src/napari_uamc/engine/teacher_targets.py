"""Teacher targets of whole unlabeled cases, computed once and refreshed: UG-MCL at a supervised price.

The paper's teacher runs T + 1 noisy passes on every unlabeled patch of every step, which made a
fine-tune step 5-8x a supervised one on a CPU (docs/benchmarks.md). With ``cfg.teacher_refresh``
= N > 0 the EMA teacher instead segments each unlabeled case whole, as Segment does (sliding
windows; deterministic softmax and SDF; MC-dropout entropy of the mean of T samples, in nats),
at step ``cfg.teacher_start``, and then refreshes one case every N steps, in turn. A step crops
its unlabeled patches' targets from these maps with the patches' own crop, rotation and flip.

The refreshing network is the EMA teacher's weights with the student's BatchNorm running
statistics: they follow the batches the fine-tune trains on (a cold start's teacher still holds
the statistics of the images the model came from). Maps are kept in float16 on the CPU: a case
of 100 x 100 x 70 voxels at two classes costs 5.6 MB.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from napari_uamc.engine.augment import crop_rotate_flip
from napari_uamc.engine.config import TrainConfig
from napari_uamc.engine.dataset import TrainingCase
from napari_uamc.engine.inference_config import InferenceConfig
from napari_uamc.engine.sampling import SampleSpec
from napari_uamc.engine.sweep import network_maps


@dataclass
class CaseTargets:
    """One case's teacher maps on its training grid, float16: ``probabilities`` ``[C, X, Y, Z]``,
    ``sdf`` ``[C-1, X, Y, Z]``, ``headroom`` ``[X, Y, Z]``: ``ln C`` minus the entropy (nats), so
    that the zero padding of a crop beyond the volume reads as the largest uncertainty."""

    probabilities: np.ndarray
    sdf: np.ndarray
    headroom: np.ndarray
    #: the training step whose teacher computed them
    step: int


@dataclass
class TargetCrops:
    """The targets of a step's unlabeled patches, on the device: ``probabilities``
    ``[B, C, X, Y, Z]``, ``sdf`` ``[B, C-1, X, Y, Z]``, ``uncertainty`` ``[B, X, Y, Z]`` (float32)."""

    probabilities: Tensor
    sdf: Tensor
    uncertainty: Tensor


def target_threshold(cfg: TrainConfig) -> float:
    """Uncertainty (nats) below which a cached target is trusted: ``tau_base * ln C``, the
    strictest level of the paper's schedule (a fine-tune has no ramp, so its per-step
    threshold would be ``ln C`` and keep every voxel)."""
    return cfg.tau_base * math.log(cfg.n_classes)


class TeacherTargets:
    """Whole-case teacher targets of ``cases`` (the trainer's unlabeled cases), see the module
    docstring. ``device``/``dtype``: where and in which precision the teacher runs."""

    def __init__(self, cases: Sequence[TrainingCase], cfg: TrainConfig, *, device: torch.device,
                 dtype: torch.dtype) -> None:
        if cfg.teacher_refresh < 1:
            raise ValueError("TeacherTargets needs cfg.teacher_refresh >= 1")
        self.cases = list(cases)
        self.cfg = cfg
        self.device = device
        self.dtype = dtype
        self.maps: list[CaseTargets | None] = [None] * len(self.cases)
        self._next = 0
        #: seconds spent computing targets (part of the fine-tune's cost)
        self.seconds = 0.0
        self._index = {id(case): i for i, case in enumerate(self.cases)}

    @property
    def ready(self) -> bool:
        return bool(self.cases) and all(m is not None for m in self.maps)

    def due(self, iteration: int) -> list[int]:
        """Indices of the cases to (re)compute before the step ``iteration``: all of them at
        ``teacher_start``, then one every ``teacher_refresh`` steps, in turn."""
        start, every = self.cfg.teacher_start, self.cfg.teacher_refresh
        if not self.cases or iteration < start:
            return []
        if not self.ready:
            return [i for i, m in enumerate(self.maps) if m is None]
        if (iteration - start) % every:
            return []
        index, self._next = self._next, (self._next + 1) % len(self.cases)
        return [index]

    def update(self, iteration: int, teacher: nn.Module, student: nn.Module) -> list[int]:
        """Compute the targets due before step ``iteration``; returns the case indices done."""
        indices = self.due(iteration)
        if not indices:
            return []
        started = time.perf_counter()
        net = _refreshing_network(teacher, student)
        config = InferenceConfig(mc_samples=self.cfg.mc_samples, device=str(self.device),
                                 channels_last=self.cfg.channels_last)
        for index in indices:
            image = self.cases[index].image
            probabilities, sdf, uncertainty, _ = network_maps(
                net, image, tuple(self.cfg.patch), config, self.device, self.dtype, None, None
            )
            headroom = np.clip(math.log(self.cfg.n_classes) - uncertainty, 0.0, None)
            self.maps[index] = CaseTargets(probabilities.astype(np.float16), sdf.astype(np.float16),
                                           headroom.astype(np.float16), iteration)
        self.seconds += time.perf_counter() - started
        return indices

    def crops(self, specs: Sequence[SampleSpec]) -> TargetCrops | None:
        """The targets of the unlabeled samples ``specs`` (None while any is not computed yet)."""
        if not specs:
            return None
        found = [self.maps[self._index[id(spec.case)]] for spec in specs]
        if any(m is None for m in found):
            return None
        patch = self.cfg.patch

        def stack(arrays: list[np.ndarray]) -> Tensor:
            return torch.from_numpy(np.stack(arrays).astype(np.float32)).to(self.device, non_blocking=True)

        probabilities, sdf, uncertainty = [], [], []
        most = math.log(self.cfg.n_classes)
        for spec, maps in zip(specs, found):
            probabilities.append(np.stack([crop_rotate_flip(c, spec.params, patch) for c in maps.probabilities]))
            sdf.append(np.stack([crop_rotate_flip(c, spec.params, patch) for c in maps.sdf]))
            uncertainty.append(most - crop_rotate_flip(maps.headroom, spec.params, patch).astype(np.float32))
        return TargetCrops(stack(probabilities), stack(sdf), stack(uncertainty))


def _refreshing_network(teacher: nn.Module, student: nn.Module) -> nn.Module:
    """The teacher's weights with the student's BatchNorm running statistics (a copy)."""
    net = copy.deepcopy(teacher)
    student_buffers = dict(student.named_buffers())
    with torch.no_grad():
        for name, buffer in net.named_buffers():
            if name in student_buffers:
                buffer.copy_(student_buffers[name])
    return net.eval()
