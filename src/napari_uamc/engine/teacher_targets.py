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

With ``cfg.target_gate`` a case's targets are trusted only while they look like a segmentation
of the structures the labeled cases hold (:func:`case_plausibility`): every foreground class's
predicted volume within a factor :data:`GATE_VOLUME_FACTOR` of the labeled cases' range, and the
segmentation head's class agreeing with the SDF head's zero level (Dice >= :data:`GATE_AGREEMENT`:
UG-MCL's cross-task consistency, read per case). A teacher that misses a structure with
confidence (MC dropout does not flag what it never saw) then gives no target at all instead of
"background" everywhere.
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
    #: False when ``cfg.target_gate`` found the targets implausible (``headroom`` is then zero)
    trusted: bool = True


@dataclass
class TargetCrops:
    """The targets of a step's unlabeled patches, on the device: ``probabilities``
    ``[B, C, X, Y, Z]``, ``sdf`` ``[B, C-1, X, Y, Z]``, ``uncertainty`` ``[B, X, Y, Z]`` (float32)."""

    probabilities: Tensor
    sdf: Tensor
    uncertainty: Tensor


#: ``cfg.target_gate``: a class's predicted volume must lie within this factor of the labeled cases'
#: smallest and largest volume of that class ...
GATE_VOLUME_FACTOR = 2.0
#: ... and its segmentation must agree with the SDF head's zero level at least this much (Dice).
GATE_AGREEMENT = 0.8


@dataclass(frozen=True)
class Plausibility:
    """:func:`case_plausibility`'s reading of one case's targets."""

    #: per foreground class: predicted voxels over the labeled cases' range (1: inside it)
    volume_ratios: tuple[float, ...]
    #: per foreground class: Dice of ``argmax == c`` against ``sdf[c - 1] < 0``
    agreements: tuple[float, ...]

    @property
    def plausible(self) -> bool:
        return (all(1 / GATE_VOLUME_FACTOR <= r <= GATE_VOLUME_FACTOR for r in self.volume_ratios)
                and all(a >= GATE_AGREEMENT for a in self.agreements))


def labeled_volumes(cases: Sequence[TrainingCase], n_classes: int) -> list[tuple[int, int]]:
    """Per foreground class, the smallest and largest voxel count among the labels of ``cases``
    that hold it (a label without the class says nothing of its size); ``(0, 0)`` for a class
    no label holds."""
    counts = [np.bincount(case.label.ravel(), minlength=n_classes)[1:n_classes]
              for case in cases if case.label is not None]
    if not counts:
        raise ValueError("target_gate needs labeled cases")
    table = np.stack(counts)
    ranges = []
    for column in table.T:
        present = column[column > 0]
        ranges.append((int(present.min()), int(present.max())) if present.size else (0, 0))
    return ranges


def case_plausibility(probabilities: np.ndarray, sdf: np.ndarray,
                      volumes: Sequence[tuple[int, int]]) -> Plausibility:
    """How plausible a case's teacher segmentation is (see the module docstring).

    ``probabilities`` ``[C, X, Y, Z]``, ``sdf`` ``[C-1, X, Y, Z]`` on the case's training grid;
    ``volumes``: :func:`labeled_volumes` of the labeled cases (same spacing, so voxel counts
    compare).
    """
    predicted = probabilities.argmax(axis=0)
    ratios, agreements = [], []
    for c, (low, high) in enumerate(volumes, start=1):
        segment, inside = predicted == c, sdf[c - 1] < 0
        n = int(segment.sum())
        if high == 0:  # no label holds the class: plausible only where it is not predicted either
            ratios.append(1.0 if n == 0 else math.inf)
        else:
            ratios.append(n / low if n < low else n / high if n > high else 1.0)
        both = int(np.logical_and(segment, inside).sum())
        total = n + int(inside.sum())
        agreements.append(2 * both / total if total else 1.0)  # both heads empty: they agree
    return Plausibility(tuple(ratios), tuple(agreements))


def target_threshold(cfg: TrainConfig) -> float:
    """Uncertainty (nats) below which a cached target is trusted: ``tau_base * ln C``, the
    strictest level of the paper's schedule (a fine-tune has no ramp, so its per-step
    threshold would be ``ln C`` and keep every voxel)."""
    return cfg.tau_base * math.log(cfg.n_classes)


class TeacherTargets:
    """Whole-case teacher targets of ``cases`` (the trainer's unlabeled cases), see the module
    docstring. ``device``/``dtype``: where and in which precision the teacher runs."""

    def __init__(self, cases: Sequence[TrainingCase], cfg: TrainConfig, *, device: torch.device,
                 dtype: torch.dtype, labeled: Sequence[TrainingCase] = ()) -> None:
        if cfg.teacher_refresh < 1:
            raise ValueError("TeacherTargets needs cfg.teacher_refresh >= 1")
        #: ``cfg.target_gate``: per foreground class, the labeled cases' smallest and largest volume
        self.volumes = labeled_volumes(labeled, cfg.n_classes) if cfg.target_gate else None
        self.cases = list(cases)
        self.cfg = cfg
        self.device = device
        self.dtype = dtype
        self.maps: list[CaseTargets | None] = [None] * len(self.cases)
        self._next = 0
        self._updated_at: int | None = None  # the step of the last update (it runs once per step)
        #: seconds spent computing targets (part of the fine-tune's cost)
        self.seconds = 0.0
        #: case targets computed, and how many of them the gate found implausible
        self.computed = self.implausible = 0
        #: indices of the cases whose trusted targets a training step used (they taught the student)
        self.taught_cases: set[int] = set()
        self._index = {id(case): i for i, case in enumerate(self.cases)}

    @property
    def ready(self) -> bool:
        return bool(self.cases) and all(m is not None for m in self.maps)

    def due(self, iteration: int) -> list[int]:
        """Indices of the cases to (re)compute before the step ``iteration``: all of them at
        ``teacher_start``, then one every ``teacher_refresh`` steps, in turn."""
        start, every = self.cfg.teacher_start, self.cfg.teacher_refresh
        if not self.cases or iteration < start or iteration == self._updated_at:
            return []
        if not self.ready:
            return [i for i, m in enumerate(self.maps) if m is None]
        if (iteration - start) % every:
            return []
        index, self._next = self._next, (self._next + 1) % len(self.cases)
        return [index]

    def update(self, iteration: int, teacher: nn.Module, student: nn.Module) -> list[int]:
        """Compute the targets due before step ``iteration``; returns the case indices done. A
        second call for the same step does nothing (the fine-tune computes the first targets
        before its first step, which calls this again)."""
        indices = self.due(iteration)
        self._updated_at = iteration
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
            trusted = self.volumes is None or case_plausibility(probabilities, sdf, self.volumes).plausible
            self.computed += 1
            if not trusted:
                self.implausible += 1
                headroom[...] = 0.0
            self.maps[index] = CaseTargets(probabilities.astype(np.float16), sdf.astype(np.float16),
                                           headroom.astype(np.float16), iteration, trusted)
        self.seconds += time.perf_counter() - started
        return indices

    def crops(self, specs: Sequence[SampleSpec]) -> TargetCrops | None:
        """The targets of the unlabeled samples ``specs`` (None while any is not computed yet)."""
        if not specs:
            return None
        indices = [self._index[id(spec.case)] for spec in specs]
        found = [self.maps[i] for i in indices]
        if any(m is None for m in found):
            return None
        patch = self.cfg.patch

        def stack(arrays: list[np.ndarray]) -> Tensor:
            return torch.from_numpy(np.stack(arrays).astype(np.float32)).to(self.device, non_blocking=True)

        probabilities, sdf, uncertainty = [], [], []
        most = math.log(self.cfg.n_classes)
        self.taught_cases.update(i for i, maps in zip(indices, found) if maps.trusted)
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
