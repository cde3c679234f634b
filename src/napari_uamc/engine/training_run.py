"""One resumable training run and its files, as ``uamc train`` runs it (in the spirit of
nnU-Net's ``run_training``): the caller has read the cases and built the config; this module
trains, keeps the run's files and exports the model.

Files beside the model ``MODEL.pt``:

- ``MODEL.log``: a header with the config, then one line per ``cfg.log_interval`` steps;
- ``MODEL.resume.pt``: the trainer state (:meth:`Trainer.save_state
  <napari_uamc.engine.training.Trainer.save_state>`), every ``checkpoint_every`` steps, on
  Ctrl-C, on a NaN stop and at the end, so ``resume_state`` can continue the run;
- ``MODEL.pt``: the trained model (:meth:`Trainer.export
  <napari_uamc.engine.training.Trainer.export>`).

Under ``torchrun`` every process trains (data-parallel); only rank 0 writes files and calls
the callbacks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_uamc.errors import InputError, TrainingError

if TYPE_CHECKING:  # torch is imported by run_training only: `uamc train --help` stays fast
    import torch

    from napari_uamc.engine.checkpoint import ModelMeta
    from napari_uamc.engine.config import TrainConfig
    from napari_uamc.engine.dataset import TrainingCase
    from napari_uamc.engine.distributed import DistContext
    from napari_uamc.engine.model import DualTaskVNet
    from napari_uamc.engine.training import StepReport

#: Default number of steps between resumable training states.
DEFAULT_CHECKPOINT_EVERY = 500
RESUME_SUFFIX = ".resume.pt"
LOG_SUFFIX = ".log"
MODEL_SUFFIX = ".pt"


@dataclass(frozen=True)
class RunPaths:
    """The files of a run: ``model`` (``MODEL.pt``), ``resume`` and ``log`` beside it."""

    model: Path
    resume: Path
    log: Path

    @classmethod
    def for_model(cls, out: str | os.PathLike[str]) -> RunPaths:
        """The run files of the model file ``out``.

        Raises:
            InputError: ``out`` does not end in ``.pt``.
        """
        model = Path(out)
        if model.suffix != MODEL_SUFFIX:
            raise InputError(f"--out must name a .pt file, not {model}")
        stem = model.name[: -len(MODEL_SUFFIX)]
        return cls(model, model.with_name(stem + RESUME_SUFFIX), model.with_name(stem + LOG_SUFFIX))


def check_checkpoint_every(steps: int) -> None:
    """Check the steps between resume states (0: only at the end, on Ctrl-C and on a NaN stop).

    Raises:
        InputError: ``steps`` < 0.
    """
    if steps < 0:
        raise InputError(f"--checkpoint-every must be >= 0, not {steps}")


@dataclass
class RunResult:
    """What :func:`run_training` did: ``iterations`` done in all, the exported model's ``meta``
    (None on ranks other than 0, which write nothing) and the run's ``paths``."""

    iterations: int
    meta: ModelMeta | None
    paths: RunPaths


def log_line(report: StepReport) -> str:
    """One line of ``MODEL.log``: losses, learning rate, consistency weight, threshold (nats),
    mask fraction and seconds per iteration of ``report``."""
    losses = " ".join(f"{k} {v:.5f}" for k, v in report.losses.items())
    extra = ""
    if report.threshold is not None:
        extra = f" tau {report.threshold:.4f}"
        if report.mask_fraction is not None:
            extra += f" mask {report.mask_fraction:.3f}"
    return (
        f"iter {report.iteration}/{report.total} {losses} lr {report.lr:.3g} "
        f"w {report.consistency_weight:.4g}{extra} s/it {report.seconds_per_iteration:.3f}"
        + ("" if report.fresh else " (losses of an earlier step)")
    )


def run_training(
    cfg: TrainConfig,
    labeled: Sequence[TrainingCase],
    unlabeled: Sequence[TrainingCase],
    out: str | os.PathLike[str],
    *,
    spacing: Sequence[float],
    model: DualTaskVNet | None = None,
    resume_state: Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    dist_context: DistContext | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    half: bool = False,
    log_title: str = "training",
    state_extra: Mapping[str, str] | None = None,
    export_fields: Mapping[str, Any] | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> RunResult:
    """Train ``cfg`` on the cases, writing ``out`` (``MODEL.pt``), ``MODEL.log`` and
    ``MODEL.resume.pt``; returns what was done.

    ``labeled``/``unlabeled``: z-scored cases (see :mod:`~napari_uamc.engine.dataset`);
    ``spacing``: ``(x, y, z)`` mm the model records (inputs are resampled to it at inference);
    ``model``: weights to start from (``--init``); ``resume_state``: a state read with
    :func:`~napari_uamc.engine.training_state.read_training_state` to continue from (same cases);
    ``checkpoint_every``: steps between resume states (0: only at the end, on Ctrl-C and on a
    NaN stop); ``half``: store float16 weights; ``log_title``: what the log header names
    (``# <log_title> -> MODEL.pt; config {...}``); ``state_extra``: strings stored in every
    resume state (e.g. ``data_json``); ``export_fields``: :class:`ModelMeta` fields
    (``trained_on``, ``class_names``, ``parent``, ``synthetic_only``, ...). ``on_step`` gets each
    :class:`StepReport`, ``on_message`` the run's notes (rank 0 only, both).
    The log is appended to; the model's folder is created.

    Raises:
        InputError: ``out`` is not a ``.pt`` file, ``checkpoint_every`` < 0, or the config,
            cases or ``model`` do not fit (see :class:`Trainer`).
        TrainingError: no usable labeled case, a resume state of other cases, a non-finite loss
            or out of memory (the resume state is written first).
        KeyboardInterrupt: Ctrl-C (the resume state is written first).
        OSError: a file cannot be written.
    """
    from napari_uamc.engine.distributed import current
    from napari_uamc.engine.training import Trainer

    paths = RunPaths.for_model(out)
    check_checkpoint_every(checkpoint_every)
    main = (dist_context or current()).is_main
    say = on_message if (main and on_message is not None) else (lambda text: None)
    trainer = Trainer(cfg, labeled, unlabeled, model=model, device=device, dist_context=dist_context)
    if resume_state is not None:
        trainer.load_state_dict(resume_state)
        say(f"resuming at iteration {trainer.iteration} of {cfg.iterations}")
    for note in trainer.notes:
        say(f"note: {note}")
    say(f"training on {trainer.device} ({str(trainer.dtype).removeprefix('torch.')}"
        + (f", {trainer.dist.world_size} processes" if trainer.dist.enabled else "") + f"); log: {paths.log}")

    def save_state() -> None:
        if main:
            trainer.save_state(paths.resume, **dict(state_extra or {}))

    paths.model.parent.mkdir(parents=True, exist_ok=True)
    log = open(paths.log, "a") if main else None
    try:
        if log:
            log.write(f"# {log_title} -> {paths.model}; config {json.dumps(cfg.to_dict())}\n")
        for report in trainer.steps():
            if main and on_step is not None:
                on_step(report)
            if log and (report.iteration % cfg.log_interval == 0 or report.iteration == cfg.iterations):
                log.write(log_line(report) + "\n")
                log.flush()
            if checkpoint_every and report.iteration % checkpoint_every == 0:
                save_state()
    except TrainingError:
        save_state()
        say(f"training state kept in {paths.resume}")
        raise
    except KeyboardInterrupt:
        save_state()
        say(f"interrupted at iteration {trainer.iteration}; continue with --resume {paths.resume}")
        raise
    finally:
        if log:
            log.close()
    save_state()
    meta = None
    if main:
        meta = trainer.export(paths.model, spacing=spacing, half=half, **dict(export_fields or {}))
    return RunResult(trainer.iteration, meta, paths)
