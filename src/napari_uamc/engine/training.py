"""The UG-MCL trainer (METHOD.md sections 3 and 4): a generator of per-step reports.

One :class:`Trainer` serves ``uamc train``, the fine-tune of the annotation loop, the plugin's
background worker, the benchmarks and the tests::

    trainer = Trainer(cfg, labeled_cases, unlabeled_cases, device="auto")
    for report in trainer.steps():          # stops early when should_stop() is true
        print(report.iteration, report.losses["total"])
    trainer.export("model.pt", spacing=..., trained_on="...")

Per step: the loss of the batch from :class:`~napari_uamc.engine.ugmcl_step.UGMCLStep` (student
pass, the EMA teacher's noisy MC-dropout passes, the uncertainty mask, ``L = L_sup + lambda(t)
(L_itc + L_ctc)``); SGD with step decay; then the EMA update. Every random draw is a function of
``(seed, rank, iteration)``, so a resumed run continues exactly where the interrupted one was.

Host syncs: on CPU the loss values are read every step; on CUDA only every ``log_interval``
steps (and at the last), so in between :class:`StepReport` repeats the last values read
(``fresh=False``). A non-finite loss stops training with :class:`TrainingError` after restoring
the last state known to give a finite loss.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from napari_uamc.engine.checkpoint import ModelMeta, save_checkpoint
from napari_uamc.engine.config import PATCH_MULTIPLE, TERM_CTC, TERM_DIS, TERM_ITC, TERM_SEG, TrainConfig
from napari_uamc.engine.dataset import TrainingCase
from napari_uamc.engine.device import resolve_device, resolve_precision
from napari_uamc.engine.distributed import DistContext, any_rank, current
from napari_uamc.engine.ema import update_ema
from napari_uamc.engine.model import DualTaskVNet
from napari_uamc.engine.sampling import TrainingBatches, batch_loader
from napari_uamc.engine.teacher_targets import TeacherTargets
from napari_uamc.engine.training_state import (
    LastGoodState,
    modules_are_finite,
    pack_state,
    read_training_state,
    unpack_state,
    write_training_state,
)
from napari_uamc.engine.ugmcl_step import UGMCLStep
from napari_uamc.errors import InputError, TrainingError

#: Loss names a report carries (those of inactive terms are left out).
LOSS_NAMES = ("total", TERM_SEG, TERM_DIS, TERM_ITC, TERM_CTC)
#: Most batch-building worker processes chosen automatically on CUDA.
MAX_AUTO_WORKERS = 8
#: Smoothing of the seconds-per-iteration estimate (weight of the newest step).
SPEED_SMOOTHING = 0.1
#: Random streams derived from the seed (fixed forever so that runs stay reproducible).
_STREAM_INIT = 11
_STREAM_STEP = 12

StopRequest = Callable[[], bool]


@dataclass
class StepReport:
    """What happened in one optimiser step.

    ``iteration`` counts the steps done (1 after the first); ``losses`` holds ``total`` and the
    active terms: ``seg`` and ``dis`` as they enter the total (``0.5 (CE + Dice)``, ``0.5 Dice(
    T_inv(sdf), y) [+ w MSE]``), ``itc`` and ``ctc`` before the weight ``consistency_weight``.
    ``fresh`` is False when the values were read at an earlier step (CUDA reads them only
    every ``log_interval`` steps); ``threshold`` (nats) and ``mask_fraction`` are None without
    the itc term. ``eta_seconds`` accounts for a time budget. ``last``: no step follows (the
    iterations or the time budget are used up; a stop request can still end a run earlier).
    """

    iteration: int
    total: int
    losses: dict[str, float]
    lr: float
    consistency_weight: float
    threshold: float | None
    mask_fraction: float | None
    seconds_per_iteration: float
    eta_seconds: float
    fresh: bool = True
    message: str = ""
    last: bool = False


def derived_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed for ``(seed, *keys)`` (any int seed)."""
    sequence = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, *keys])
    return int(sequence.generate_state(1, np.uint32)[0])


def _is_out_of_memory(error: BaseException) -> bool:
    oom_type = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if isinstance(error, oom_type):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )


def _validate_runtime_fields(cfg: TrainConfig) -> None:
    from napari_uamc.engine.device import PRECISIONS

    if cfg.precision not in PRECISIONS:
        raise InputError(f"Training config: precision must be one of {PRECISIONS}, not {cfg.precision!r}")
    if not isinstance(cfg.log_interval, int) or cfg.log_interval < 1:
        raise InputError(f"Training config: log_interval must be an integer >= 1, not {cfg.log_interval!r}")
    if cfg.data_workers is not None and (not isinstance(cfg.data_workers, int) or cfg.data_workers < 0):
        raise InputError(f"Training config: data_workers must be None or an integer >= 0, not {cfg.data_workers!r}")
    if not isinstance(cfg.mc_chunk, int) or cfg.mc_chunk < 0:
        raise InputError(f"Training config: mc_chunk must be an integer >= 0, not {cfg.mc_chunk!r}")


def _check_cases(labeled: Sequence[TrainingCase], cfg: TrainConfig) -> None:
    if not labeled:
        raise TrainingError(
            "the labeled set is empty: training needs at least one case with a label "
            "(accept a label, or choose labeled cases with --labeled / --labeled-cases)"
        )
    for case in labeled:
        if case.label is None:
            raise TrainingError(f"case {case.name} is in the labeled set but has no label")
        largest = int(case.label.max(initial=0))
        if largest >= cfg.n_classes:
            raise InputError(
                f"case {case.name}: label value {largest} does not fit a model with "
                f"{cfg.n_classes} classes (background included)"
            )


def _check_model(model: DualTaskVNet, cfg: TrainConfig) -> None:
    if not isinstance(model, DualTaskVNet):
        raise InputError(f"the model to train must be a DualTaskVNet, not {type(model).__name__}")
    if model.n_classes != cfg.n_classes:
        raise InputError(
            f"the model has {model.n_classes} classes but the training config {cfg.n_classes}"
        )


def build_model(cfg: TrainConfig) -> DualTaskVNet:
    """A freshly initialised dual-task V-Net for ``cfg`` (initialisation seeded by ``cfg.seed``)."""
    torch.manual_seed(derived_seed(cfg.seed, _STREAM_INIT))
    return DualTaskVNet(1, cfg.n_classes, cfg.width, cfg.norm, cfg.dropout)


class Trainer:
    """Semi-supervised (or supervised) training of a dual-task V-Net; see the module docstring.

    ``model``: the student to start from (fine-tuning, ``--init``); None builds a fresh one.
    ``time_budget``: seconds of :meth:`steps` (fine-tuning by minutes): a step starts only when
    it is expected to end within the budget, judged by the last step's duration (the first step
    always runs unless the budget is 0), so a run ends before its budget, not a step after it.
    ``should_stop``: checked before every step; True ends :meth:`steps` early.
    Attributes the caller may read: ``student``, ``teacher``, ``iteration``, ``cfg`` (terms may
    have been reduced, see ``notes``), ``stopped_early``, ``notes`` (messages for the user),
    ``method`` (the :class:`~napari_uamc.engine.ugmcl_step.UGMCLStep` that computes each loss).

    Raises:
        TrainingError: no labeled case, or a labeled case without a label.
        InputError: a label value beyond ``cfg.n_classes``, invalid runtime settings, a batch
            BatchNorm cannot train on, or a ``model`` that does not fit ``cfg``.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        labeled: Sequence[TrainingCase],
        unlabeled: Sequence[TrainingCase] = (),
        *,
        model: DualTaskVNet | None = None,
        device: str | torch.device = "auto",
        should_stop: StopRequest | None = None,
        time_budget: float | None = None,
        dist_context: DistContext | None = None,
    ) -> None:
        _validate_runtime_fields(cfg)
        self.labeled = list(labeled)
        self.unlabeled = list(unlabeled)
        self.notes: list[str] = []
        _check_cases(self.labeled, cfg)
        if not self.unlabeled and cfg.terms & {TERM_ITC, TERM_CTC}:
            message = (
                "no unlabeled cases: training with the supervised terms only "
                f"({', '.join(sorted(cfg.terms & {TERM_SEG, TERM_DIS}))})"
            )
            warnings.warn(message, stacklevel=2)
            self.notes.append(message)
            cfg = cfg.replace(terms=cfg.terms & {TERM_SEG, TERM_DIS})
        self.cfg = cfg
        self.terms = cfg.terms
        self._check_batchnorm_batch(cfg)
        self.should_stop = should_stop
        self.time_budget = time_budget
        #: the clock of the time budget and the step times (a test may give a fake one)
        self.clock: Callable[[], float] = time.perf_counter
        self.dist = dist_context or current()
        self.device = self._pick_device(device)
        self.dtype = resolve_precision(cfg.precision, self.device)
        self.memory_format = torch.channels_last_3d if cfg.channels_last else torch.contiguous_format

        if model is None:
            model = build_model(cfg)
        _check_model(model, cfg)
        self.student = model.to(self.device, memory_format=self.memory_format)
        self.student.train()
        self.teacher = copy.deepcopy(self.student)
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.optimizer = torch.optim.SGD(
            self.student.parameters(), lr=cfg.base_lr, momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        self._net: nn.Module = self._wrap_distributed(self.student)
        #: the loss of one batch (the semi-supervised method); see :mod:`engine.ugmcl_step`
        self.method = UGMCLStep(self._net, self.teacher, cfg, device=self.device, dtype=self.dtype,
                                memory_format=self.memory_format)

        self.iteration = 0
        self.stopped_early = False
        self.seconds = 0.0
        self._good = LastGoodState()  # the state before the last update checked finite
        self._last_values: dict[str, float] = {}
        self._last_mask_fraction: float | None = None
        self._speed: float | None = None
        self._last_step: float | None = None  # seconds the last step of this run took
        self.batches = TrainingBatches(
            self.labeled,
            self.unlabeled if self.uses_unlabeled else [],
            patch=cfg.patch,
            labeled_per_batch=cfg.labeled_batch_size,
            unlabeled_per_batch=cfg.unlabeled_batch_size if self.uses_unlabeled else 0,
            n_classes=cfg.n_classes,
            seed=cfg.seed,
            rank=self.dist.rank,
            with_sdf=TERM_DIS in self.terms and cfg.sdf_mse_weight > 0,
        )
        #: whole-case teacher targets of the unlabeled cases (``cfg.teacher_refresh`` > 0), else None
        self.targets = (
            TeacherTargets(self.unlabeled, cfg, device=self.device, dtype=self.dtype, labeled=self.labeled)
            if cfg.teacher_refresh and self.uses_unlabeled and (TERM_ITC in self.terms or cfg.copy_paste) else None
        )

    # ------------------------------------------------------------------------- set-up checks
    def _check_batchnorm_batch(self, cfg: TrainConfig) -> None:
        """Refuse a batch that BatchNorm cannot train on: one patch whose bottleneck is one voxel."""
        batch = cfg.batch_size if self.uses_unlabeled else cfg.labeled_batch_size
        bottleneck = math.prod(p // PATCH_MULTIPLE for p in cfg.patch)
        if cfg.norm == "batch" and batch * bottleneck == 1:
            raise InputError(
                f"BatchNorm cannot train on a batch of 1 patch of {'x'.join(map(str, cfg.patch))} "
                f"(its bottleneck is one voxel): use at least 2 "
                f"{'patches per step' if self.uses_unlabeled else 'labeled patches per step'} "
                f"(--labeled-batch-size) or a larger patch"
            )

    def _pick_device(self, device: str | torch.device) -> torch.device:
        resolved = resolve_device(device)
        if self.dist.enabled and resolved.type == "cuda":
            return torch.device("cuda", self.dist.local_rank)
        return resolved

    def _wrap_distributed(self, module: nn.Module) -> nn.Module:
        if not self.dist.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        uses_sdf = self.cfg.uses_sdf_head or (TERM_ITC in self.terms and self.cfg.effective_beta < 1)
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # 1x1x1 head weights have ambiguous channels-last strides; DDP warns about it every step
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        return DistributedDataParallel(
            module, device_ids=device_ids, find_unused_parameters=not uses_sdf
        )

    # ------------------------------------------------------------------------------ properties
    @property
    def uses_unlabeled(self) -> bool:
        """Whether batches hold unlabeled samples (the consistency terms and copy-paste use them)."""
        return bool(self.unlabeled) and (bool(self.terms & {TERM_ITC, TERM_CTC}) or self.cfg.copy_paste)

    @property
    def data_workers(self) -> int:
        if self.cfg.data_workers is not None:
            return self.cfg.data_workers
        if self.device.type != "cuda":
            return 0
        cores = (os.cpu_count() or 1) // max(self.dist.world_size, 1)
        return max(0, min(MAX_AUTO_WORKERS, cores - 1))

    @property
    def mc_chunk(self) -> int:
        """Teacher passes per stacked forward (see :func:`~napari_uamc.engine.ugmcl_step.mc_chunk_for`)."""
        return self.method.mc_chunk

    def _sync_every(self) -> int:
        return self.cfg.log_interval if self.device.type == "cuda" else 1

    # ------------------------------------------------------------------------------ the loop
    def steps(self) -> Iterator[StepReport]:
        """Run from ``self.iteration`` to ``cfg.iterations``, yielding a report per step.

        Raises:
            TrainingError: a non-finite loss (the last finite state is restored) or out of memory.
        """
        started = self.clock()
        self._started = self._last_tick = started
        self._last_step = None
        self.stopped_early = False
        loader = batch_loader(
            self.batches,
            range(self.iteration, self.cfg.iterations),
            workers=self.data_workers,
            pin_memory=self.device.type == "cuda",
        )
        message = "; ".join(self.notes)
        budget_spent = self._budget_spent(started)
        try:
            while self.iteration < self.cfg.iterations:
                if self._stop_asked():
                    self.stopped_early = True
                    break
                if budget_spent:  # a normal end: the budget was the plan
                    break
                batch = next(loader)
                try:
                    report = self._step(batch)
                except TrainingError:
                    raise
                except Exception as error:
                    if _is_out_of_memory(error):
                        raise TrainingError(self._oom_message()) from None
                    raise
                if message:
                    report.message, message = message, ""
                budget_spent = self._budget_spent(started)  # decided once, so the report can say it
                report.last = budget_spent or self.iteration >= self.cfg.iterations
                if report.last:
                    report.eta_seconds = 0.0
                self.seconds = self.clock() - started
                yield report
        finally:
            loader.close()
            self.seconds = self.clock() - started

    def _stop_asked(self) -> bool:
        """Whether the caller asked to stop (on any rank)."""
        asked = bool(self.should_stop and self.should_stop())
        if self.dist.enabled and self.should_stop is not None:
            asked = any_rank(asked, self.device)
        return asked

    def _budget_spent(self, started: float) -> bool:
        """Whether the time budget leaves no room for another step: it is used up, or the next
        step, taking as long as the last one, would end after it (on any rank). Before checking
        only after a step let the last step start just before the budget's end and run a whole
        step past it (6-8 s of a 60 s budget on a busy 2-core CPU)."""
        if self.time_budget is None:
            return False
        elapsed = self.clock() - started
        spent = elapsed >= self.time_budget or (
            self._last_step is not None and elapsed + self._last_step > self.time_budget)
        return any_rank(spent, self.device) if self.dist.enabled else spent

    def _oom_message(self) -> str:
        cfg = self.cfg
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return (
            f"out of memory on {self.device} with patch {'x'.join(map(str, cfg.patch))}, batch "
            f"{cfg.batch_size} ({cfg.labeled_batch_size} labeled), width {cfg.width}, "
            f"{cfg.mc_samples} MC samples: use a smaller --patch or --batch-size (or a smaller "
            f"mc_chunk for the teacher passes)"
        )

    def _step(self, batch: Mapping[str, Tensor]) -> StepReport:
        cfg = self.cfg
        it = self.iteration
        targets = None
        if self.targets is not None:
            self.targets.update(it, self.teacher, self.student)
            targets = self.targets.crops(self.batches.specs(it)[1])
        torch.manual_seed(derived_seed(cfg.seed, _STREAM_STEP, self.dist.rank, it))
        lr = cfg.lr_at(it)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        x = batch["image"].to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        label = batch["label"].to(self.device, non_blocking=True).long()
        sdf_target = batch["sdf"].to(self.device, non_blocking=True) if "sdf" in batch else None

        self.student.train()
        losses = self.method.losses(x, label, sdf_target, it, targets)
        fresh = self._is_sync_step(it)
        if fresh:
            self._check_finite(it, losses.terms, losses.mask_fraction)
            self._good.remember(self.iteration, self.student, self.teacher, self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        self.optimizer.step()
        update_ema(self.teacher, self.student, it, cfg.ema_alpha)
        self.iteration = it + 1
        return self._report(lr, losses.weight, losses.threshold, fresh)

    def _is_sync_step(self, it: int) -> bool:
        every = self._sync_every()
        return (it + 1) % every == 0 or it + 1 >= self.cfg.iterations or it == 0

    def _check_finite(self, it: int, terms: dict[str, Tensor], mask_fraction: Tensor | None) -> None:
        names = list(terms)
        stacked = [terms[name].detach().float().reshape(()) for name in names]
        if mask_fraction is not None:
            stacked.append(mask_fraction.detach().float().reshape(()))
        values = torch.stack(stacked).tolist()  # the one host sync of the step
        bad = not all(math.isfinite(v) for v in values)
        if self.dist.enabled:
            bad = any_rank(bad, self.device)
        if bad:
            shown = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values))
            if modules_are_finite(self.student, self.teacher):
                where = f"the model is kept as it was after iteration {self.iteration}"
            else:
                restored = self._good.restore(self.student, self.teacher, self.optimizer)
                if restored is not None:
                    self.iteration = restored
                where = (
                    f"the model was restored to iteration {restored}, the last with a finite loss"
                    if restored is not None else "no earlier state was kept"
                )
            raise TrainingError(
                f"the loss is not finite at iteration {it + 1} ({shown}); {where}. Try a lower "
                f"learning rate (now {self.cfg.lr_at(it):g}) or --precision float32"
            )
        self._last_values = dict(zip(names, values[: len(names)]))
        self._last_mask_fraction = values[-1] if mask_fraction is not None else None

    def _report(self, lr: float, weight: float, threshold: float | None, fresh: bool) -> StepReport:
        now = self.clock()
        elapsed, self._last_tick = now - self._last_tick, now
        self._last_step = elapsed
        if self.iteration <= 1 or self._speed is None:
            self._speed = elapsed
        else:
            self._speed += SPEED_SMOOTHING * (elapsed - self._speed)
        eta = self._speed * (self.cfg.iterations - self.iteration)
        if self.time_budget is not None:
            eta = min(eta, max(0.0, self.time_budget - (now - self._started)))
        return StepReport(
            iteration=self.iteration,
            total=self.cfg.iterations,
            losses=dict(self._last_values),
            lr=lr,
            consistency_weight=weight,
            threshold=threshold,
            mask_fraction=self._last_mask_fraction,
            seconds_per_iteration=self._speed,
            eta_seconds=eta,
            fresh=fresh,
        )

    # ------------------------------------------------------------------------ state and export
    def case_names(self) -> dict[str, list[str]]:
        return {
            "labeled": [c.name for c in self.labeled],
            "unlabeled": [c.name for c in self.unlabeled],
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs; only tensors, ints and JSON strings (loads with
        ``torch.load(..., weights_only=True)``; format in :mod:`~napari_uamc.engine.training_state`)."""
        return pack_state(iteration=self.iteration, cfg=self.cfg, cases=self.case_names(),
                          student=self.student, teacher=self.teacher, optimizer=self.optimizer)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` output (same cases and architecture).

        Raises:
            TrainingError: not a training state, or made with other cases or another network.
        """
        self.iteration = unpack_state(state, cfg=self.cfg, cases=self.case_names(), student=self.student,
                                      teacher=self.teacher, optimizer=self.optimizer)
        self._good.forget()

    def save_state(self, path: str | os.PathLike[str], **extra: str) -> None:
        """Write :meth:`state_dict` to ``path`` (``MODEL.resume.pt``) atomically; ``extra``
        strings (JSON, e.g. ``data_json``) are stored beside it. The folder must exist.

        Raises:
            OSError: the file cannot be written.
        """
        write_training_state(path, {**self.state_dict(), **extra})

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Continue from a file :meth:`save_state` wrote (``torch.load(..., weights_only=True)``).

        Raises:
            InputError: the file holds no training state.
            TrainingError: made with other cases or another network (see :meth:`load_state_dict`).
            OSError: the file cannot be read.
        """
        self.load_state_dict(read_training_state(path))

    def compute_first_targets(self) -> None:
        """Compute the whole-case teacher targets due before the next step now, outside the steps
        and their time budget (the fine-tune's own stage). Out of memory raises TrainingError."""
        if self.targets is None:
            return
        try:
            self.targets.update(self.iteration, self.teacher, self.student)
        except Exception as error:
            if _is_out_of_memory(error):
                raise TrainingError(self._oom_message()) from None
            raise

    def result_model(self, use_teacher: bool = False) -> DualTaskVNet:
        """The trained network: the student, or the EMA teacher (the live module, not a copy)."""
        return self.teacher if use_teacher else self.student

    def history_entry(self, kind: str = "train", **extra: Any) -> dict[str, Any]:
        """A JSON-able record of this run for :attr:`ModelMeta.history`."""
        return {
            "kind": kind,
            "iterations": self.iteration,
            "planned_iterations": self.cfg.iterations,
            "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 1),
            "terms": sorted(self.terms),
            "labeled": list(dict.fromkeys(c.name for c in self.labeled)),  # a case may be drawn from twice
            "unlabeled_count": len(self.unlabeled),
            "device": str(self.device),
            "precision": str(self.dtype).removeprefix("torch."),
            "world_size": self.dist.world_size,
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **extra,
        }

    def build_meta(
        self,
        *,
        spacing: Sequence[float],
        base: ModelMeta | None = None,
        use_teacher: bool = False,
        kind: str = "train",
        **fields: Any,
    ) -> ModelMeta:
        """Metadata of the trained model: architecture, config, spacing, patch, history."""
        model = self.result_model(use_teacher)
        history = list(base.history) if base is not None else []
        history.append(self.history_entry(kind, result="teacher" if use_teacher else "student"))
        values: dict[str, Any] = dict(
            spacing=tuple(float(s) for s in spacing),
            patch=tuple(self.cfg.patch),
            config=self.cfg.to_dict(),
            history=history,
        )
        if base is not None:
            values["class_names"] = list(base.class_names)
        values.update(fields)
        return ModelMeta.for_model(model, **values)

    def export(
        self,
        path: str | os.PathLike[str],
        *,
        spacing: Sequence[float],
        use_teacher: bool = False,
        half: bool = False,
        **fields: Any,
    ) -> ModelMeta:
        """Save the trained model with :func:`save_checkpoint`; returns its metadata.

        ``fields`` go to :class:`ModelMeta` (``class_names``, ``trained_on``, ``parent``, ...).
        """
        meta = self.build_meta(spacing=spacing, use_teacher=use_teacher, **fields)
        save_checkpoint(Path(path), self.result_model(use_teacher), meta, half=half)
        return meta


def train(
    cfg: TrainConfig,
    labeled_cases: Sequence[TrainingCase],
    unlabeled_cases: Sequence[TrainingCase] = (),
    *,
    model: DualTaskVNet | None = None,
    device: str | torch.device = "auto",
    should_stop: StopRequest | None = None,
    resume_state: Mapping[str, Any] | None = None,
) -> Iterator[StepReport]:
    """Train and yield a :class:`StepReport` per step (a :class:`Trainer` without the handle).

    A generator: nothing is checked or run, and nothing raised, before the first ``next()``.

    Raises:
        TrainingError: no labeled case or one without a label; a ``resume_state`` that is not a
            training state, is newer, or was made with other cases or another network; a
            non-finite loss (the last finite state is restored) or out of memory.
        InputError: a label value >= ``cfg.n_classes``, invalid runtime settings, a batch
            BatchNorm cannot train on, a ``model`` that does not fit ``cfg``, or an unknown or
            unavailable ``device`` or ``cfg.precision``.
    """
    trainer = Trainer(
        cfg, labeled_cases, unlabeled_cases, model=model, device=device, should_stop=should_stop
    )
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
    yield from trainer.steps()
