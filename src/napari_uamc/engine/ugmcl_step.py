"""The UG-MCL loss of one batch (METHOD.md section 3): student pass, teacher passes, loss terms.

:class:`UGMCLStep` is what the :class:`~napari_uamc.engine.training.Trainer` calls once per
optimiser step; the trainer keeps the schedule around it (seeding, learning rate, the finite
check, backward, SGD, the EMA update). A new loss term or another semi-supervised method
changes this module only.

Per batch (labeled samples first): the student sees the clean batch; the supervised terms use
the labeled part; the EMA teacher, in train mode (dropout on, BatchNorm on batch statistics),
gives the consistency target from one pass on the input plus clamped Gaussian noise and the
uncertainty from T more noisy passes, batched into as few forwards as ``mc_chunk`` allows;
``L = L_sup + lambda(t) (L_itc + L_ctc)``.

With ``cfg.copy_paste`` the labeled and unlabeled samples are mixed first
(:mod:`napari_uamc.engine.copy_paste`) and every mixed sample is supervised.

With ``cfg.teacher_refresh`` > 0 the teacher does not run in the step: the intra-task term
compares the unlabeled samples with whole-case targets cropped by the trainer
(:mod:`napari_uamc.engine.teacher_targets`), masked at
:func:`~napari_uamc.engine.teacher_targets.target_threshold`; until those exist the term is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from napari_uamc.engine.config import TERM_CTC, TERM_DIS, TERM_ITC, TERM_SEG, TrainConfig
from napari_uamc.engine.copy_paste import copy_paste
from napari_uamc.engine.device import autocast
from napari_uamc.engine.losses import (
    SUPERVISED_SCALE,
    consistency_weight,
    cross_task_consistency,
    entropy,
    intra_task_consistency,
    supervised_loss,
    uncertainty_threshold,
)
from napari_uamc.engine.teacher_targets import TargetCrops, target_threshold

#: Teacher passes per forward on a CPU when ``mc_chunk`` is 0 (auto): stacking passes measured
#: slower on a 2-core CPU (width 8, 64x64x48, batch 4, T=8: 0.95 s unstacked, 1.1 s by 3, 1.2 s all).
CPU_MC_CHUNK = 1


def mc_chunk_for(cfg: TrainConfig, device: torch.device) -> int:
    """Teacher passes stacked into one forward: ``cfg.mc_chunk``, or when 0 (auto) all of them on
    CUDA and :data:`CPU_MC_CHUNK` elsewhere; never more than the passes of a step (T, + 1 for the
    single-pass target)."""
    passes = cfg.mc_samples + (1 if cfg.teacher_target == "single" else 0)
    if cfg.mc_chunk:
        return min(cfg.mc_chunk, passes)
    return passes if device.type == "cuda" else min(CPU_MC_CHUNK, passes)


@dataclass
class StepLosses:
    """The loss of one batch, on the device, not yet read back.

    ``terms``: ``total`` first, then the active terms as :class:`StepReport` names them (``seg``
    and ``dis`` as they enter the total; ``itc`` and ``ctc`` before ``weight``), scalar tensors;
    ``mask_fraction``: share of voxels under the uncertainty threshold (None without ``itc``);
    ``weight``: the consistency weight lambda(t); ``threshold``: tau(t) in nats (None without ``itc``).
    """

    terms: dict[str, Tensor]
    mask_fraction: Tensor | None
    weight: float
    threshold: float | None

    @property
    def total(self) -> Tensor:
        return self.terms["total"]


class UGMCLStep:
    """UG-MCL losses of a batch for a student (``net``, possibly DDP-wrapped) and its EMA ``teacher``.

    ``cfg.terms`` selects the terms (supervised: ``seg`` and/or ``dis``; UG-MCL adds ``itc`` and
    ``ctc``); ``dtype`` is the autocast dtype and ``memory_format`` that of the inputs.
    """

    def __init__(
        self,
        net: nn.Module,
        teacher: nn.Module,
        cfg: TrainConfig,
        *,
        device: torch.device,
        dtype: torch.dtype,
        memory_format: torch.memory_format,
    ) -> None:
        self.net = net
        self.teacher = teacher
        self.cfg = cfg
        self.terms = cfg.terms
        self.device = device
        self.dtype = dtype
        self.memory_format = memory_format
        self.mc_chunk = mc_chunk_for(cfg, device)

    def losses(self, x: Tensor, label: Tensor, sdf_target: Tensor | None, iteration: int,
               targets: TargetCrops | None = None) -> StepLosses:
        """The loss of one batch at step ``iteration`` (0-based), with gradients to the student.

        ``x``: ``[B, 1, X, Y, Z]`` float images on the device, the ``L`` labeled samples first;
        ``label``: ``[L, X, Y, Z]`` integer classes; ``sdf_target``: ``[L, C-1, X, Y, Z]``
        normalised SDFs of the labels (only with ``dis`` and ``sdf_mse_weight`` > 0), else None;
        ``targets``: the unlabeled samples' cached teacher targets (``cfg.teacher_refresh`` > 0).
        Draws random numbers (dropout, teacher noise) from torch's global generators.

        Raises:
            RuntimeError: from torch, e.g. out of memory.
        """
        cfg = self.cfg
        if cfg.copy_paste and targets is not None:  # mixes, all supervised (engine/copy_paste.py);
            # without pseudo-labels yet, the clean batch with its labeled part supervised
            x, label = copy_paste(x, label, targets.probabilities.argmax(dim=1))
            x = x.contiguous(memory_format=self.memory_format)
        n_labeled = label.shape[0]
        itc_on, ctc_on = TERM_ITC in self.terms, TERM_CTC in self.terms
        weight = consistency_weight(iteration, cfg) if (itc_on or ctc_on) else 0.0
        cached = cfg.teacher_refresh > 0
        threshold = None
        if itc_on:
            threshold = target_threshold(cfg) if cached else uncertainty_threshold(
                iteration, cfg.rampup_length, cfg.n_classes, cfg)

        with autocast(self.device, self.dtype):
            seg_logits, sdf = self.net(x)
        parts = supervised_loss(
            seg_logits[:n_labeled], sdf[:n_labeled], label, sdf_target, self.terms, cfg
        )
        total = parts["sup"]
        terms: dict[str, Tensor] = {}
        if TERM_DIS in self.terms:
            terms[TERM_DIS] = SUPERVISED_SCALE * parts["dis_dice"] + (
                cfg.sdf_mse_weight * parts["sdf_mse"] if "sdf_mse" in parts else 0.0
            )
            terms[TERM_SEG] = parts["sup"] - terms[TERM_DIS]
        else:
            terms[TERM_SEG] = parts["sup"]
        mask_fraction = None
        if itc_on or ctc_on:
            p_student = torch.softmax(seg_logits.float(), dim=1)
        if itc_on and cached and targets is None:  # the whole-case targets do not exist yet
            terms[TERM_ITC] = total.new_zeros(())
            mask_fraction = total.new_zeros(())
        elif itc_on:
            first = n_labeled if cached else 0  # cached targets cover the unlabeled samples only
            if cached:
                p_teacher, sdf_teacher, uncertainty = targets.probabilities, targets.sdf, targets.uncertainty
            else:
                p_teacher, sdf_teacher, uncertainty = self.teacher_outputs(x)
            beta = cfg.effective_beta
            terms[TERM_ITC], mask_fraction = intra_task_consistency(
                p_student[first:],
                sdf[first:] if beta < 1 else None,
                p_teacher,
                sdf_teacher if beta < 1 else None,
                uncertainty,
                threshold,
                beta,
            )
            total = total + weight * terms[TERM_ITC]
        if ctc_on:
            terms[TERM_CTC] = cross_task_consistency(p_student, sdf, cfg.sdf_k)
            total = total + weight * terms[TERM_CTC]
        return StepLosses({"total": total, **terms}, mask_fraction, weight, threshold)

    def teacher_outputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(p_teacher, sdf_teacher, uncertainty)`` from the noisy teacher passes on ``x``.

        ``p_teacher``: ``[B, C, X, Y, Z]`` softmax target (one pass, or the mean of the T with
        ``teacher_target="mc_mean"``); ``sdf_teacher``: ``[B, C-1, X, Y, Z]``; ``uncertainty``:
        ``[B, X, Y, Z]`` entropy of the mean of the T softmaxes, in nats. No gradients.
        The passes are stacked along the batch axis (``mc_chunk`` at a time) so the teacher runs
        a few large forwards instead of T + 1 small ones. In train mode its BatchNorm then
        normalises with statistics over all stacked copies: the same inputs under independent
        noise, so the same statistics in expectation.

        Raises:
            RuntimeError: from torch, e.g. out of memory.
        """
        cfg = self.cfg
        single = cfg.teacher_target == "single"
        passes = cfg.mc_samples + (1 if single else 0)
        batch = x.shape[0]
        prob_sum: Tensor | None = None
        sdf_sum: Tensor | None = None
        target_prob: Tensor | None = None
        target_sdf: Tensor | None = None
        self.teacher.train()
        done = 0
        with torch.no_grad():
            while done < passes:
                count = min(self.mc_chunk, passes - done)
                inputs = x.repeat(count, 1, 1, 1, 1) if count > 1 else x
                noise = torch.randn_like(inputs).mul_(cfg.noise_std).clamp_(-cfg.noise_clip, cfg.noise_clip)
                inputs = (inputs + noise).contiguous(memory_format=self.memory_format)
                with autocast(self.device, self.dtype):
                    logits, sdf = self.teacher(inputs)
                prob = torch.softmax(logits.float(), dim=1).unflatten(0, (count, batch))
                sdf = sdf.float().unflatten(0, (count, batch))
                first = 0
                if single and done == 0:
                    target_prob, target_sdf, first = prob[0], sdf[0], 1
                if count > first:
                    part = prob[first:].sum(dim=0)
                    prob_sum = part if prob_sum is None else prob_sum + part
                    if not single:
                        sdf_part = sdf[first:].sum(dim=0)
                        sdf_sum = sdf_part if sdf_sum is None else sdf_sum + sdf_part
                done += count
        assert prob_sum is not None
        mean_prob = prob_sum / cfg.mc_samples
        if target_prob is None:
            target_prob, target_sdf = mean_prob, sdf_sum / cfg.mc_samples  # type: ignore[operator]
        return target_prob, target_sdf, entropy(mean_prob)  # type: ignore[return-value]
