"""Plain-PyTorch baselines, written the way the original research code does it (torch + numpy only).

These are the "naive" sides of the speed comparisons (issue 5, item 3), independent of the
engine's fast paths, and they import nothing of napari_uamc, so the GPU benchmark can use them on
a machine with only torch and numpy:

- :func:`paper_sliding_window`: the paper's test procedure (UA-MT/DTC/UG-MCL ``test_single_case``):
  zero-pad axes smaller than the patch, windows of the patch every ``stride`` voxels (the last one
  flush with the border), one float32 forward per window, softmax and SDF averaged uniformly;
- :class:`PlainStep`: one UG-MCL iteration (METHOD.md sections 3-4): student forward/backward on
  the batch, ``T + 1`` noisy teacher passes in train mode, masked intra-task and cross-task
  consistency, SGD, EMA; by default float32, contiguous, one teacher pass per forward, as the
  research code runs; ``amp_dtype``, ``channels_last`` and ``mc_chunk`` switch the GPU habits on;
- :func:`synthetic_batch`: random images with sphere labels (the cost does not depend on content).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: The paper's LA test window and stride (112 x 112 x 80 every 18, 18, 4 voxels: 363 windows on
#: a 288 x 288 x 88 volume).
PAPER_PATCH = (112, 112, 80)
PAPER_STRIDE = (18, 18, 4)
#: The paper's UG-MCL settings used by the plain step (see METHOD.md; engine/config.py names them).
SDF_K = 1500.0
DICE_EPS = 1e-5
MASK_EPS = 1e-8


# ------------------------------------------------------------------------------ inference
def paper_window_starts(size: int, window: int, stride: int) -> list[int]:
    """Research code's window starts on one axis: ``min(stride * i, size - window)``."""
    count = math.ceil((size - window) / stride) + 1
    return [min(stride * i, size - window) for i in range(count)]


def paper_window_count(shape: Sequence[int], patch: Sequence[int], stride: Sequence[int]) -> int:
    """Number of windows :func:`paper_sliding_window` runs on a volume of ``shape``."""
    return math.prod(
        len(paper_window_starts(max(s, p), p, t)) for s, p, t in zip(shape, patch, stride)
    )


@torch.no_grad()
def paper_sliding_window(
    model: nn.Module,
    image: np.ndarray,
    patch: Sequence[int] = PAPER_PATCH,
    stride: Sequence[int] = PAPER_STRIDE,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(probabilities [C, ...], sdf [C-1, ...], windows)`` of ``model`` over a z-scored ``image``.

    float32, contiguous, eval mode, one window at a time, uniform averaging: the paper's test.
    ``model(x)`` must return ``(seg_logits, sdf)``.
    """
    model = model.eval().to(device)
    pads = [(max(p - s, 0) // 2, max(p - s, 0) - max(p - s, 0) // 2) for s, p in zip(image.shape, patch)]
    padded = np.pad(image.astype(np.float32), pads, mode="constant", constant_values=0)
    starts = [paper_window_starts(s, p, t) for s, p, t in zip(padded.shape, patch, stride)]
    score: np.ndarray | None = None
    sdf_sum: np.ndarray | None = None
    count = np.zeros(padded.shape, dtype=np.float32)
    windows = 0
    for x0 in starts[0]:
        for y0 in starts[1]:
            for z0 in starts[2]:
                box = (slice(x0, x0 + patch[0]), slice(y0, y0 + patch[1]), slice(z0, z0 + patch[2]))
                x = torch.from_numpy(np.ascontiguousarray(padded[box]))[None, None].to(device)
                logits, sdf = model(x)
                prob = torch.softmax(logits, dim=1)[0].cpu().numpy()
                if score is None:
                    score = np.zeros((prob.shape[0], *padded.shape), dtype=np.float32)
                    sdf_sum = np.zeros((sdf.shape[1], *padded.shape), dtype=np.float32)
                score[(slice(None), *box)] += prob
                sdf_sum[(slice(None), *box)] += sdf[0].cpu().numpy()  # type: ignore[index]
                count[box] += 1
                windows += 1
    crop = tuple(slice(lo, lo + s) for (lo, _), s in zip(pads, image.shape))
    assert score is not None and sdf_sum is not None
    probabilities = (score / count)[(slice(None), *crop)]
    sdf_map = (sdf_sum / count)[(slice(None), *crop)]
    return probabilities, sdf_map, windows


# ------------------------------------------------------------------------------- training
def sphere_labels(count: int, patch: Sequence[int], generator: torch.Generator) -> Tensor:
    """``count`` label maps ``[count, X, Y, Z]`` (int64), each one ball of random centre and radius."""
    grids = torch.meshgrid(*(torch.arange(p, dtype=torch.float32) for p in patch), indexing="ij")
    labels = []
    for _ in range(count):
        centre = [p * (0.3 + 0.4 * float(torch.rand((), generator=generator))) for p in patch]
        radius = min(patch) * (0.15 + 0.2 * float(torch.rand((), generator=generator)))
        distance2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
        labels.append((distance2 <= radius**2).long())
    return torch.stack(labels)


def synthetic_batch(
    batch: int, labeled: int, patch: Sequence[int], seed: int = 0
) -> tuple[Tensor, Tensor]:
    """``(images [B, 1, X, Y, Z], labels [labeled, X, Y, Z])``: noise plus bright balls."""
    generator = torch.Generator().manual_seed(seed)
    labels = sphere_labels(batch, patch, generator)
    images = torch.randn((batch, 1, *patch), generator=generator) + 2.0 * labels[:, None].float()
    return images, labels[:labeled]


@dataclass(frozen=True)
class StepSettings:
    """The paper's UG-MCL settings for one iteration (mid-run values of the ramps)."""

    mc_samples: int = 8
    noise_std: float = 0.1
    noise_clip: float = 0.2
    beta: float = 0.75
    consistency_weight: float = 0.1
    threshold: float = 0.75 * math.log(2)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    ema_alpha: float = 0.99


def _dice_loss(prob: Tensor, target: Tensor) -> Tensor:
    intersection = (prob * target).sum()
    return 1 - (2 * intersection + DICE_EPS) / ((prob * prob).sum() + (target * target).sum() + DICE_EPS)


class PlainStep:
    """One UG-MCL training iteration on a student and its EMA teacher (see the module docstring).

    ``amp_dtype`` (None: float32) autocasts the network; ``channels_last`` uses channels-last-3d;
    ``mc_chunk`` teacher passes run per forward (stacked along the batch axis).
    Calling the object runs one step and returns ``{"student": s, "teacher": s}`` when ``split``
    is set (with device syncs), else ``{}``.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        settings: StepSettings = StepSettings(),
        *,
        amp_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        mc_chunk: int = 1,
    ) -> None:
        self.student, self.teacher, self.settings = student.train(), teacher.train(), settings
        for parameter in teacher.parameters():
            parameter.requires_grad_(False)
        self.amp_dtype = amp_dtype
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
        self.mc_chunk = max(1, mc_chunk)
        self.optimizer = torch.optim.SGD(
            student.parameters(), lr=settings.lr, momentum=settings.momentum,
            weight_decay=settings.weight_decay,
        )

    def _autocast(self, device: torch.device):
        if self.amp_dtype is None:
            return torch.autocast(device_type=device.type, enabled=False)
        return torch.autocast(device_type=device.type, dtype=self.amp_dtype)

    def _teacher(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(p_target, sdf_target, uncertainty)`` from T + 1 noisy passes (the first is the target)."""
        s = self.settings
        passes, batch, done = s.mc_samples + 1, x.shape[0], 0
        outputs: list[tuple[Tensor, Tensor]] = []
        with torch.no_grad():
            while done < passes:
                n = min(self.mc_chunk, passes - done)
                inputs = x.repeat(n, 1, 1, 1, 1)
                noise = torch.randn_like(inputs).mul_(s.noise_std).clamp_(-s.noise_clip, s.noise_clip)
                with self._autocast(x.device):
                    logits, sdf = self.teacher((inputs + noise).contiguous(memory_format=self.memory_format))
                outputs += list(zip(torch.softmax(logits.float(), 1).split(batch), sdf.float().split(batch)))
                done += n
        mean = torch.stack([p for p, _ in outputs[1:]]).mean(0)
        uncertainty = -torch.special.xlogy(mean, mean).sum(dim=1, keepdim=True)
        return outputs[0][0], outputs[0][1], uncertainty

    def __call__(self, x: Tensor, label: Tensor, split: bool = False) -> dict[str, float]:
        s = self.settings
        device = x.device
        x = x.contiguous(memory_format=self.memory_format)
        times: dict[str, float] = {}
        started = _now(device, split)
        with self._autocast(device):
            logits, sdf = self.student(x)
        logits, sdf = logits.float(), sdf.float()
        n = label.shape[0]
        prob = torch.softmax(logits, dim=1)
        sdf_mask = torch.sigmoid(-SDF_K * sdf)
        target = (label == 1).float()
        supervised = 0.5 * (F.cross_entropy(logits[:n], label) + _dice_loss(prob[:n, 1], target)
                            + _dice_loss(sdf_mask[:n, 0], target))
        student_forward = _now(device, split)
        p_t, sdf_t, uncertainty = self._teacher(x)
        teacher_done = _now(device, split)
        mask = (uncertainty < s.threshold).float()
        kept = mask.sum()
        itc = s.beta * (mask * (prob - p_t).square().sum(1, keepdim=True)).sum() / (2 * kept + MASK_EPS)
        itc = itc + (1 - s.beta) * (mask * (sdf - sdf_t).square()).sum() / (kept + MASK_EPS)
        ctc = (sdf_mask - prob[:, 1:]).square().mean()
        loss = supervised + s.consistency_weight * (itc + ctc)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for t, p in zip(self.teacher.parameters(), self.student.parameters()):
                t.mul_(s.ema_alpha).add_(p, alpha=1 - s.ema_alpha)
        finished = _now(device, split)
        if split:
            times["teacher"] = teacher_done - student_forward
            times["student"] = (finished - started) - times["teacher"]
        return times


def _now(device: torch.device, sync: bool) -> float:
    if sync and device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()
