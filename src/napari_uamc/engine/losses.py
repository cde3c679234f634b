"""UG-MCL loss terms, ramps and the uncertainty threshold (METHOD.md section 3).

Shapes: probabilities and logits ``[B, C, X, Y, Z]``, SDFs ``[B, C-1, X, Y, Z]``, labels
``[B, X, Y, Z]`` (integer classes), uncertainty ``[B, X, Y, Z]`` or ``[B, 1, X, Y, Z]``.
Every loss is computed in float32 whatever the autocast dtype of its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_uamc.engine.config import TERM_DIS, TERM_SEG
from napari_uamc.engine.sdf import sdf_to_mask

if TYPE_CHECKING:
    from napari_uamc.engine.config import TrainConfig

DICE_EPS = 1e-5
#: Keeps the masked means finite when the uncertainty mask is empty.
MASK_EPS = 1e-8
#: Steepness of the sigmoid ramp exp(-RAMP_STEEPNESS * (1 - t/L)^2).
RAMP_STEEPNESS = 5.0
#: The supervised loss is SUPERVISED_SCALE * (CE + Dice [+ SDF Dice]).
SUPERVISED_SCALE = 0.5


def dice_loss(prob: Tensor, target: Tensor, eps: float = DICE_EPS) -> Tensor:
    """``1 - (2 sum(p g) + eps) / (sum(p^2) + sum(g^2) + eps)`` over all elements."""
    prob = prob.float()
    target = target.float()
    intersection = (prob * target).sum()
    denominator = (prob * prob).sum() + (target * target).sum()
    return 1 - (2 * intersection + eps) / (denominator + eps)


def foreground_dice_loss(fg_prob: Tensor, label: Tensor, eps: float = DICE_EPS) -> Tensor:
    """Mean over foreground classes c >= 1 of ``dice_loss(fg_prob[:, c-1], label == c)``."""
    losses = [dice_loss(fg_prob[:, c - 1], label == c, eps) for c in range(1, fg_prob.shape[1] + 1)]
    return torch.stack(losses).mean()


def supervised_loss(
    seg_logits: Tensor,
    sdf: Tensor,
    label: Tensor,
    sdf_target: Tensor | None,
    terms: AbstractSet[str],
    cfg: TrainConfig,
) -> dict[str, Tensor]:
    """Supervised loss on the labeled samples, as named parts plus their total ``"sup"``.

    ``0.5 * (CE + Dice(softmax fg, y) [seg] + Dice(T_inv(sdf), y) [dis]) + w_sdf * MSE(sdf, T(y))
    [dis, when cfg.sdf_mse_weight > 0]``. ``sdf_target`` (``[B, C-1, ...]``) is needed only for the
    MSE. Keys: ``ce``, ``dice`` (with seg), ``dis_dice`` (with dis), ``sdf_mse`` (with the
    MSE), ``sup``.
    """
    label = label.long()
    out: dict[str, Tensor] = {}
    total = seg_logits.new_zeros((), dtype=torch.float32)
    if TERM_SEG in terms:
        logits = seg_logits.float()
        out["ce"] = F.cross_entropy(logits, label)
        out["dice"] = foreground_dice_loss(torch.softmax(logits, dim=1)[:, 1:], label)
        total = total + SUPERVISED_SCALE * (out["ce"] + out["dice"])
    if TERM_DIS in terms:
        sdf = sdf.float()
        out["dis_dice"] = foreground_dice_loss(sdf_to_mask(sdf, cfg.sdf_k), label)
        total = total + SUPERVISED_SCALE * out["dis_dice"]
        if cfg.sdf_mse_weight > 0:
            if sdf_target is None:
                raise ValueError("supervised_loss: sdf_mse_weight > 0 needs sdf_target")
            out["sdf_mse"] = F.mse_loss(sdf, sdf_target.float())
            total = total + cfg.sdf_mse_weight * out["sdf_mse"]
    out["sup"] = total
    return out


def ramp(t: float, length: float) -> float:
    """``exp(-5 (1 - min(t, L)/L)^2)``: exp(-5) at t = 0, 1 from t = L on; 1 when L <= 0."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(float(t), 0.0), float(length)) / float(length)
    return math.exp(-RAMP_STEEPNESS * phase * phase)


def uncertainty_threshold(t: float, length: float, n_classes: int, cfg: TrainConfig) -> float:
    """``tau(t) = (tau_base + tau_range * ramp(t, L)) * ln C`` in nats."""
    return (cfg.tau_base + cfg.tau_range * ramp(t, length)) * math.log(n_classes)


def consistency_weight(t: float, cfg: TrainConfig) -> float:
    """``lambda(t) = consistency * ramp(t, L)``; full weight from the start when fine-tuning."""
    return cfg.consistency * ramp(t, cfg.rampup_length)


def entropy(mean_prob: Tensor) -> Tensor:
    """Predictive entropy in nats, ``-sum_c p_c ln p_c`` over dim 1 (0 ln 0 = 0): ``[B, ...]``."""
    p = mean_prob.float()
    return -torch.special.xlogy(p, p).sum(dim=1)


def intra_task_consistency(
    p_student: Tensor,
    sdf_student: Tensor | None,
    p_teacher: Tensor,
    sdf_teacher: Tensor | None,
    uncertainty: Tensor,
    threshold: float,
    beta: float,
) -> tuple[Tensor, Tensor]:
    """Uncertainty-masked mean-teacher loss and the fraction of voxels the mask keeps.

    ``beta * sum(m (p_s - p_t)^2) / (C sum(m)) + (1 - beta) * sum(m (sdf_s - sdf_t)^2) /
    ((C-1) sum(m))`` with ``m = [u < threshold]``; the SDFs may be None when beta == 1.
    The teacher tensors are detached. Both outputs are 0-d tensors (no host sync).
    """
    if uncertainty.dim() == p_student.dim() - 1:
        uncertainty = uncertainty.unsqueeze(1)
    mask = (uncertainty < threshold).float()  # [B, 1, ...], broadcast over channels
    kept = mask.sum()
    n_classes = p_student.shape[1]
    seg_sq = (p_student.float() - p_teacher.detach().float()).square().sum(dim=1, keepdim=True)
    loss = beta * (mask * seg_sq).sum() / (n_classes * kept + MASK_EPS)
    if beta < 1:
        if sdf_student is None or sdf_teacher is None:
            raise ValueError("intra_task_consistency: beta < 1 needs the student and teacher SDFs")
        sdf_sq = (sdf_student.float() - sdf_teacher.detach().float()).square().sum(
            dim=1, keepdim=True
        )
        loss = loss + (1 - beta) * (mask * sdf_sq).sum() / ((n_classes - 1) * kept + MASK_EPS)
    return loss, kept / mask.numel()


def cross_task_consistency(seg_prob: Tensor, sdf: Tensor, k: float) -> Tensor:
    """Mean over foreground classes and all voxels of ``(T_inv(sdf_c) - softmax_c)^2``."""
    return (sdf_to_mask(sdf.float(), k) - seg_prob[:, 1:].float()).square().mean()
