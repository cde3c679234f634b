"""Fine-tuning in the annotation loop (METHOD.md section 8): one function for CLI and plugin.

:func:`finetune_study` starts student and teacher from the study's current model (or a given
one, or the packaged default) and trains on every accepted case for a number of iterations or
minutes. It first compares the starting model with the accepted labels: a model new to the
images (:data:`COLD_START_DICE`) relearns at its training learning rate and at the spacing where
its patch holds the accepted structures whole; a model that knows them keeps its spacing and
fine-tunes at ``finetune_lr`` (:mod:`napari_uamc.engine.finetune_start`). The other cases of the
study are the unlabeled data: they re-estimate the BatchNorm statistics after training
(:data:`FINETUNE_DEFAULTS`); in a warm start they also feed UG-MCL's consistency against
whole-case teacher targets that the target gate trusts (:data:`WARM_SEMI_SUPERVISED`, measured
best there; a cold start stays supervised); with ``terms`` given (the CLI's ``--method``) the
person's choice holds, at full weight from the first step; with ``anchors`` a warm
start also trains on them labeled by the starting model. Against forgetting, a few cases of the
starting model's own training data are replayed beside the accepted ones when that data is on
this machine (:mod:`napari_uamc.engine.replay`). By default the EMA teacher is kept as
the result. Then it writes ``.uamc/models/vNNN.pt`` + ``vNNN.json`` and, with ``adopt=True``
(the CLI's default), makes it the study's current model; with ``adopt=False`` (the plugin) the
version is only written, and :func:`compare_with_parent` measures how much it changes the other
cases' predictions before a person adopts or discards it.

A stop request is checked at every stage (the comparison: before each window; reading: between
cases; training: before each step; BatchNorm recalibration: between batches; scoring: before each
window). Once training has taken a step, a stop still writes the version, marked
``stopped_early``, without recalibration batches or scores still to come; a stop before the first
step writes nothing and raises ``inference.Cancelled``. The version's files are written
atomically and its ``.json`` last, so a process killed at any moment leaves no ``.pt`` without its
record (only the reservation placeholder, see
:func:`~napari_uamc.data.study.versions.remove_unfinished_versions`). It prints
nothing: progress goes to the ``on_step`` and ``on_message`` callbacks.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc._atomic import write_text_atomic
from napari_uamc._words import counted, dice_text
from napari_uamc.data.study import ModelVersionInfo, Study
from napari_uamc.data.study.training_files import read_training_files
from napari_uamc.data.study.versions import DEFAULT_MODEL_NAME
from napari_uamc.engine.batchnorm import recalibrate_batchnorm
from napari_uamc.engine.checkpoint import ModelMeta, default_model_path, load_checkpoint, save_checkpoint
from napari_uamc.engine.config import ABLATION_ROWS, PATCH_MULTIPLE, RENAMED_KEYS, TrainConfig
from napari_uamc.engine.dataset import TrainingCase
from napari_uamc.engine.finetune_start import (  # noqa: F401  (COLD_START_DICE & co: part of this module's API)
    COLD_START_DICE,
    COLD_TEACHER_START,
    METHOD_CHOICES,
    STRUCTURE_MARGIN,
    WARM_SEMI_SUPERVISED,
    anchor_cases,
    choose_learning_rate,
    foreground_dice,
    method_sentence,
    starting_agreement,
    starting_prediction,
    structure_spacing,
    with_anchors,
)
from napari_uamc.engine.preprocess import resample_to_spacing, zscore
from napari_uamc.engine.progress_messages import (
    READING_REPLAY_MESSAGE,
    TARGETS_MESSAGE,
    TRAINING_MESSAGE,
    WRITING_MESSAGE,
    WROTE_MESSAGE,
)
from napari_uamc.engine.replay import AUTO, FINETUNED_ON, NO_COLD_REPLAY, read_replay, replay_folder
from napari_uamc.engine.stop_checks import StoppedInStep, stop_checks
from napari_uamc.engine.training import StepReport, Trainer, build_model
from napari_uamc.errors import InputError, TrainingError

#: Budget when neither iterations nor minutes are given (sized for a CPU; a GPU does more steps).
DEFAULT_MINUTES = 3.0
#: Iteration cap of a run budgeted in minutes.
MAX_ITERATIONS_BY_TIME = 100_000
#: Fine-tune choices that differ from a training run's config (METHOD.md section 8), decided by
#: bench_loop (docs/benchmarks.md, "Correct-and-retrain loop"): under a fixed CPU budget,
#: supervised seg + dis terms, keeping the EMA teacher and recalibrating BatchNorm on all the
#: study's images gave the best Dice on the uncorrected cases and the least forgetting. UG-MCL's
#: consistency terms cost 5-8x more per step (the teacher's T + 1 passes) and scored lower in the
#: same time; DTC's cross-task term (the packaged model's own terms) also scored lower and forgot
#: more. ``overrides={"terms": ...}`` (``--method ugmcl``) brings them back. On real LA scans,
#: UG-MCL with whole-case teacher targets (``teacher_refresh``: 1-1.5x a supervised step) also
#: scored lower than this default in the same time, cold and warm ("Semi-supervised fine-tune on
#: real LA scans" in docs/benchmarks.md), and so did copy-paste (``copy_paste``) from a cold start,
#: within noise of it from a warm one ("Fine-tune levers on real LA scans"). With the target gate,
#: UG-MCL beat these defaults in every warm study, so a warm start adds :data:`WARM_SEMI_SUPERVISED`.
FINETUNE_DEFAULTS: dict[str, Any] = {
    "terms": ABLATION_ROWS[2],  # seg + dis
    "bn_recalibration": True,
    "keep_ema": True,
    # set on every fine-tune, so that a parent version's own choices are not inherited
    "cold_start_rules": True,
    "anchors": False,
    "fresh_weights": False,
    "copy_paste": False,
    "target_gate": False,
    # a warm-start default's choices (WARM_SEMI_SUPERVISED) are not inherited either: a child asked
    # for `--method ugmcl` gets the paper's per-patch teacher at the engine's weight (METHOD.md),
    # 2 accepted + 2 other patches a step
    "teacher_refresh": 0,
    "teacher_start": 0,
    **{name: getattr(TrainConfig(), name) for name in ("consistency", "batch_size", "labeled_batch_size")},
}
#: Whole-case teacher targets are computed for at most this many of the other cases (a seeded
#: draw; the benchmarks' studies had 8) ...
MAX_TARGET_CASES = 8
#: ... holding at most this many voxels on the working grid together (at least one case): they
#: are computed before the first step (0.55 s for a cropped LA scan, 90 x 90 x 64 at 1.25 mm, and
#: 5.8 s for a full-size one, 320 x 320 x 44, with T = 8 on 2 CPU cores), and their refreshes,
#: one case every ``teacher_refresh`` steps, come out of the training budget.
MAX_TARGET_VOXELS = 5_000_000
#: Random patches per study image for the BatchNorm recalibration.
RECALIBRATION_PATCHES_PER_IMAGE = 2
#: :func:`compare_with_parent` compares this many of the other cases, the first in *Next case*'s
#: order: a fixed number, so a run shows the same numbers on any machine (no time limit; sized on
#: 2 CPU cores: docs/napari-plugin.md, "A new version is offered").
COMPARE_CASES = 3

StepCallback = Callable[[StepReport], None]
MessageCallback = Callable[[str], None]
ProgressCallback = Callable[[int, int], None]


@dataclass
class FinetuneResult:
    """The new model version and what went into it."""

    version: str
    path: Path
    info_path: Path
    parent: str
    iterations: int
    stopped_early: bool
    seconds: float
    labeled: list[str]
    unlabeled: list[str]
    training_dice: dict[str, float] = field(default_factory=dict)
    meta: ModelMeta | None = None
    #: Dice of the starting model's predictions against each accepted label (before training)
    starting_agreement: dict[str, float] = field(default_factory=dict)
    #: whether the version became the study's current model (``adopt``)
    adopted: bool = False
    #: the file the fine-tune started from
    parent_path: Path | None = None
    #: the replay cases trained on beside the accepted ones (``Replay.record()``)
    replay: dict[str, Any] = field(default_factory=dict)
    #: what taught the version, when the engine chose it (:func:`method_sentence`; "" otherwise)
    method: str = ""
    #: seconds of training steps (``seconds`` is the whole fine-tune)
    training_seconds: float = 0.0

    @property
    def mean_training_dice(self) -> float | None:
        values = list(self.training_dice.values())
        return float(np.mean(values)) if values else None


def _model_source(study: Study, model_path: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """``(file, parent name)`` of the model to start from."""
    if model_path is not None:
        path = Path(model_path)
        for known in study.model_versions():  # a version of this study: name it by its version
            if study.model_path(known).resolve() == path.resolve():
                return path, known
        if path.resolve() == default_model_path().resolve():  # the packaged model, as the CLI names it
            return path, DEFAULT_MODEL_NAME
        return path, str(model_path)
    version = study.current_model
    if version is not None:
        return study.model_path(version), version
    return default_model_path(), DEFAULT_MODEL_NAME


def _fit_patch(patch: tuple[int, int, int], shapes: list[tuple[int, ...]]) -> tuple[int, int, int]:
    """The model's patch, shrunk only where every volume is smaller: then to the largest
    volume's size rounded up to a multiple of 16 (smaller volumes are zero-padded, as the
    paper's code does). A patch never cuts a study's volumes into slabs thinner than they are."""
    largest = np.max(np.array(shapes), axis=0)
    return tuple(
        max(PATCH_MULTIPLE, min(p, -(-int(s) // PATCH_MULTIPLE) * PATCH_MULTIPLE))
        for p, s in zip(patch, largest)
    )  # type: ignore[return-value]


def target_cases(cases: list[TrainingCase], seed: int) -> list[TrainingCase]:
    """The other cases whose whole-case teacher targets a fine-tune computes (all when they fit):
    a draw seeded by ``seed`` within :data:`MAX_TARGET_CASES` and :data:`MAX_TARGET_VOXELS`, in
    the cases' order."""
    if len(cases) <= MAX_TARGET_CASES and sum(c.image.size for c in cases) <= MAX_TARGET_VOXELS:
        return list(cases)
    chosen, voxels = [], 0
    for index in np.random.default_rng(seed).permutation(len(cases)):
        size = cases[index].image.size
        if len(chosen) == MAX_TARGET_CASES or (chosen and voxels + size > MAX_TARGET_VOXELS):
            break
        chosen.append(int(index))
        voxels += size
    return [cases[i] for i in sorted(chosen)]


def study_cases(study: Study) -> tuple[list[str], list[str]]:
    """``(accepted, other)`` case names of ``study``, sorted, listed as ``uamc train`` lists a
    study (:func:`~napari_uamc.data.study.training_files.read_training_files`, with the study's
    rules: NIfTI images, labels named ``labelsTr/<case>.nii.gz``); only cases the study knows.

    Raises:
        InputError: two image files of the study are one case.
    """
    files = read_training_files(study.root, study_rules=True)
    return [c for c in files.labeled if c in study], [c for c in files.unlabeled if c in study]


def _read_case(study: Study, name: str, spacing: tuple[float, float, float], labeled: bool,
               tolerance: float) -> TrainingCase:
    """A study case z-scored (and resampled to the working ``spacing`` where it differs)."""
    volume = study.read_image(name)
    image = zscore(volume.array)
    label = study.read_label(name).array if labeled else None  # type: ignore[union-attr]
    image, label, spacing = resample_to_spacing(image, label, volume.spacing, spacing, f"case {name}", tolerance)
    return TrainingCase(name, image, None if label is None else label.astype(np.uint8), spacing)


#: :func:`training_dice` reports its progress in this many units per case.
SCORE_UNITS = 100


def training_dice(model, meta: ModelMeta, study: Study, cases: list[str], device: str,
                  should_stop: Callable[[], bool] | None = None,
                  progress: ProgressCallback | None = None) -> dict[str, float]:
    """Dice (mean over foreground classes) of the model's deterministic prediction against the
    accepted label of each case: a *training* score, the model has learned these cases.
    ``progress(done, total)``: :data:`SCORE_UNITS` per case, shared by its windows.
    Raises ``inference.Cancelled`` when ``should_stop()`` turns true."""
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    config = InferenceConfig(mc_samples=0, device=device)
    scores = {}
    total = SCORE_UNITS * len(cases)
    for index, name in enumerate(cases):
        label = study.read_label(name).array  # type: ignore[union-attr]
        windows = None
        if progress is not None:
            def windows(done: int, of: int, index: int = index) -> None:
                progress(SCORE_UNITS * index + (SCORE_UNITS * done) // max(1, of), total)
        predicted = segment_volume(model, meta, study.read_image(name), config, progress=windows,
                                   should_stop=should_stop).label
        scores[name] = foreground_dice(predicted, label, meta.n_classes)
    return scores


def finetune_study(
    study: Study | str | os.PathLike[str],
    *,
    model_path: str | os.PathLike[str] | None = None,
    iterations: int | None = None,
    minutes: float | None = None,
    device: str = "auto",
    overrides: Mapping[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_step: StepCallback | None = None,
    on_message: MessageCallback | None = None,
    score: bool = True,
    resample_tolerance: float = 0.10,
    adopt: bool = True,
    replay: str | os.PathLike[str] | None = AUTO,
    on_progress: ProgressCallback | None = None,
) -> FinetuneResult:
    """Fine-tune on ``study`` and write a new model version (see the module docstring).

    ``model_path``: start from this file instead of the study's current model (default: the
    current model, else the packaged default). Budget: ``iterations`` or ``minutes`` (not both;
    neither: :data:`DEFAULT_MINUTES`). ``overrides``: :class:`TrainConfig` fields to change
    (``terms``, ``finetune_lr``, ``bn_recalibration``, ``keep_ema``, ``batch_size``, ...).
    ``score``: compute the training Dice on the accepted cases. ``adopt``: make the new version
    the study's current model (``False``: write it only; a person adopts it later). ``replay``:
    where replay cases come from (``"auto"``: the starting model's training data when it is a
    folder here; a folder; ``None``: none; see :mod:`napari_uamc.engine.replay`).
    ``on_progress(done, total)``: how far the stage the last message named is, for the stages
    after training that take long (BatchNorm recalibration: patches; scoring: cases). Raises
    :class:`TrainingError` when no case is accepted or training fails, and ``inference.Cancelled``
    when stopped before the first training step (the study's current model is then unchanged and
    no version is written).
    """
    say = on_message or (lambda text: None)
    started = time.perf_counter()
    overrides = {RENAMED_KEYS.get(key, key): value for key, value in (overrides or {}).items()}
    if iterations is not None and minutes is not None:
        raise InputError("give the fine-tune budget as iterations or as minutes, not both")
    if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1):
        raise InputError(f"iterations must be an integer >= 1, not {iterations!r}")
    if minutes is not None and not (isinstance(minutes, (int, float)) and minutes > 0):
        raise InputError(f"minutes must be a positive number, not {minutes!r}")
    if iterations is None and minutes is None:
        minutes = DEFAULT_MINUTES
    if not isinstance(study, Study):
        study = Study.open(study)

    labeled_names, unlabeled_names = study_cases(study)
    if not labeled_names:
        raise TrainingError(
            f"study {study.root} has no accepted case: accept at least one label before fine-tuning"
        )
    source, parent = _model_source(study, model_path)
    model, meta = load_checkpoint(source, "cpu")
    say(f"starting from model {parent}")  # the file is in the version record (a path reads as noise in the panel)

    from napari_uamc.engine.inference import Cancelled

    def stopped() -> bool:
        return bool(should_stop and should_stop())

    def nothing_written(where: str) -> Cancelled:
        return Cancelled(f"fine-tune stopped {where}: no model version was written")

    agreement: dict[str, float] = {}
    say("comparing the starting model with the accepted labels")
    try:
        agreement = starting_agreement(model, meta, study, labeled_names, parent, device, should_stop)
    except Cancelled:  # the stop request ends the fine-tune before its first step
        compared = "stopped before the comparison ended"
    except (MemoryError, RuntimeError) as error:  # e.g. out of memory on a GPU: train anyway
        compared = f"the starting model could not be compared with the accepted labels ({error})"
    agreed = float(np.mean(list(agreement.values()))) if agreement else None
    if agreed is not None:
        compared = f"the starting model agrees with the accepted labels at Dice {dice_text(agreed)}"
    cold_rules = bool({**FINETUNE_DEFAULTS, **overrides}["cold_start_rules"])
    cold = cold_rules and agreed is not None and agreed < COLD_START_DICE
    spacing = tuple(float(v) for v in meta.spacing)
    if cold:
        spacing = structure_spacing(study, labeled_names, tuple(meta.patch))
        say(f"{compared} (below {COLD_START_DICE}): new to these images; relearning at {spacing[0]:.2f} mm, "
            f"where the patch holds the accepted structures whole")

    say(f"reading {counted(len(labeled_names), 'accepted case')} and {counted(len(unlabeled_names), 'other case')}")
    labeled: list[TrainingCase] = []
    unlabeled: list[TrainingCase] = []
    for names, cases, is_labeled in ((labeled_names, labeled, True), (unlabeled_names, unlabeled, False)):
        for name in names:
            if stopped():
                raise nothing_written("before training began")
            cases.append(_read_case(study, name, spacing, is_labeled, resample_tolerance))  # type: ignore[arg-type]
    replay_source, replay_why = replay_folder(meta.trained_on, replay, study.root)
    if cold and replay == AUTO and replay_source is not None:  # measured: replay is for warm starts
        replay_source, replay_why = None, NO_COLD_REPLAY
    if replay_source is not None:
        say(f"{READING_REPLAY_MESSAGE}{replay_source} ({replay_why})")
    replayed = read_replay(replay_source, replay_why, spacing, meta.n_classes, say=say)
    if stopped():
        raise nothing_written("before training began")
    patch = _fit_patch(meta.patch, [c.image.shape for c in labeled + unlabeled + replayed.cases])

    base = TrainConfig.from_dict(meta.config) if meta.config else TrainConfig()
    method_chosen = bool(METHOD_CHOICES & set(overrides))  # by the person
    semi = agreed is not None and agreed >= COLD_START_DICE and bool(unlabeled) and not method_chosen
    changes: dict[str, Any] = dict(
        FINETUNE_DEFAULTS,
        **(WARM_SEMI_SUPERVISED if semi else {}),
        finetune=True,
        patch=patch,
        n_classes=meta.n_classes,
        width=meta.width,
        norm=meta.norm,
        dropout=meta.dropout,
        iterations=iterations if iterations is not None else MAX_ITERATIONS_BY_TIME,
    )
    changes.update(overrides)
    cfg = base.replace(**changes)
    method_note = method_sentence(semi, cold and not method_chosen, len(unlabeled), cfg.bn_recalibration)
    if max((int(c.label.max(initial=0)) for c in labeled), default=0) >= meta.n_classes:  # type: ignore[union-attr]
        raise InputError(f"an accepted label has a class the model {parent} does not know "
                         f"({meta.n_classes} classes: {', '.join(meta.class_names)})")
    if "finetune_lr" in overrides:
        chosen_by, why = "settings", f"learning rate {cfg.finetune_lr:g}, as asked"
    elif agreed is not None and cold_rules:
        learning_rate, why = choose_learning_rate(cfg, agreement)
        cfg = cfg.replace(finetune_lr=learning_rate)
        chosen_by = "starting agreement"
    else:
        chosen_by, why = "settings", f"{compared}: learning rate {cfg.finetune_lr:g}"
    say(why)
    if method_note:  # after the rate: the line a watcher (the panel) keeps showing while it trains
        say(method_note)
    if cold and cfg.teacher_refresh and "teacher_start" not in overrides:
        cfg = cfg.replace(teacher_start=COLD_TEACHER_START)

    anchors: list[TrainingCase] = []
    if cfg.anchors and not cold and agreed is not None and unlabeled:
        say(f"labeling {counted(len(unlabeled), 'other case')} with the starting model (anchors against forgetting)")
        try:
            anchors = anchor_cases(model, meta, study, unlabeled, parent, device, should_stop)
        except Cancelled:
            pass  # the trainer sees the stop request before its first step

    if cfg.fresh_weights:  # the architecture only: what a cold start learns without the old weights
        model = build_model(cfg)
    targeted = target_cases(unlabeled, cfg.seed) if cfg.teacher_refresh else unlabeled
    drawn_note = (f"teacher targets for {len(targeted)} of the {len(unlabeled)} other cases, drawn with the seed "
                  f"{cfg.seed}: {', '.join(c.name for c in targeted)}") if len(targeted) < len(unlabeled) else ""
    if drawn_note:
        say(drawn_note)
    disarm = stop_checks(model, should_stop)  # before the Trainer copies the student into the teacher
    trainer = Trainer(
        cfg, with_anchors(labeled, anchors) + replayed.cases, targeted, model=model, device=device,
        should_stop=should_stop,
        time_budget=None if minutes is None else 60.0 * minutes,
    )
    for note in trainer.notes:
        say(note)
    trainer.notes[:0] = [note for note in (method_note, drawn_note) if note]  # said above; kept in the record
    budget = counted(iterations, "iteration") if iterations is not None else f"{minutes:g} min"
    try:  # a stop in the targets' stage is one before the first step: nothing is written (below)
        if trainer.targets is not None and cfg.teacher_start == 0 and not stopped():  # a stage of its own
            say(f"{TARGETS_MESSAGE}{counted(len(targeted), 'other case')}")
            trainer.compute_first_targets()
        say(f"{TRAINING_MESSAGE}{budget}")
        for report in trainer.steps():
            if on_step is not None:
                on_step(report)
    except StoppedInStep:
        trainer.stopped_early = True
    finally:
        disarm()
    if trainer.targets is not None and trainer.targets.seconds:
        trainer.notes.append(f"teacher targets of {counted(len(targeted), 'other case')} computed from step "
                             f"{cfg.teacher_start}, one case refreshed every {cfg.teacher_refresh} steps: "
                             f"{trainer.targets.seconds:.1f} s"
                             + (f"; {trainer.targets.implausible} of {trainer.targets.computed} found implausible "
                                "by the target gate (trusted nowhere)" if cfg.target_gate else ""))
    if semi and trainer.targets is not None:  # now known: the cases whose targets it learned from
        after = method_sentence(semi, False, len(unlabeled), cfg.bn_recalibration,
                                taught=len(trainer.targets.taught_cases))
        trainer.notes[trainer.notes.index(method_note)] = after
        method_note = after
    if trainer.stopped_early:
        if trainer.iteration == 0:
            raise nothing_written("before its first training step")
        say(f"stopped after {counted(trainer.iteration, 'iteration')}")

    result_model = trainer.result_model(use_teacher=cfg.keep_ema)
    recalibrated = 0
    if cfg.bn_recalibration and not stopped():
        say("recalibrating BatchNorm statistics on the study's images")
        recalibrated = recalibrate_batchnorm(
            result_model,
            [c.image for c in labeled + unlabeled + replayed.cases],
            patch,
            batch_size=cfg.batch_size,
            patches_per_image=RECALIBRATION_PATCHES_PER_IMAGE,
            seed=cfg.seed,
            device=trainer.device,
            dtype=trainer.dtype,
            channels_last=cfg.channels_last,
            should_stop=should_stop,
            progress=on_progress,
        )
    result_model.eval()

    version = study.reserve_model_version()  # no other writer can take this name now
    path = study.model_path(version)
    new_meta = trainer.build_meta(
        spacing=spacing,
        base=meta,
        use_teacher=cfg.keep_ema,
        kind="finetune",
        patch=tuple(meta.patch),
        parent=parent,
        version=version,
        trained_on=f"{FINETUNED_ON}{study.name} ({study.root})",
        synthetic_only=False,
    )
    scores: dict[str, float] = {}
    if score and not stopped():
        say("scoring the accepted cases (training Dice)")
        try:
            scores = training_dice(result_model, new_meta, study, labeled_names, str(trainer.device), should_stop,
                                   on_progress)
        except Cancelled:
            say("stopped while scoring: the version is written without its training Dice")
    say(f"{WRITING_MESSAGE}{version}")  # a process watching for it lets the write end
    save_checkpoint(path, result_model, new_meta)  # after the scores: the .json follows at once
    # stopped in training, or later (recalibration or scores cut short): never a finished version
    stopped_early = trainer.stopped_early or stopped()
    seconds = time.perf_counter() - started
    info = ModelVersionInfo(
        version=version,
        parent=parent,
        parent_path=str(source),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        kind="finetune",
        cases={"labeled": labeled_names, "unlabeled": unlabeled_names},
        iterations=trainer.iteration,
        stopped_early=stopped_early,
        budget={"iterations": iterations, "minutes": minutes},
        seconds=round(seconds, 1),
        training_seconds=round(trainer.seconds, 1),
        device=str(trainer.device),
        precision=str(trainer.dtype).removeprefix("torch."),
        # a minutes budget runs under an iteration cap (MAX_ITERATIONS_BY_TIME): the record says
        # how many steps it made, not the cap (a try-out read 100000 as the run's length)
        settings=cfg.to_dict() if iterations is not None else {**cfg.to_dict(), "iterations": trainer.iteration},
        result="teacher (EMA)" if cfg.keep_ema else "student",
        bn_recalibration_patches=recalibrated,
        starting_agreement={
            "note": "Dice of the starting model's prediction against each accepted label (how much was "
                    "corrected); empty when it could not be compared. start: 'cold' when the mean is below "
                    f"{COLD_START_DICE} and the cold-start rules are on (settings.cold_start_rules), else 'warm'",
            "cases": agreement,
            "mean": agreed,
            "start": "cold" if cold else ("warm" if agreed is not None else "unknown"),
        },
        learning_rate={"value": cfg.finetune_lr, "chosen_by": chosen_by, "why": why},
        anchors=[case.name for case in anchors],
        replay=replayed.record(),
        spacing={"value": list(spacing), "parent": list(meta.spacing),
                 "why": "a cold start: the patch holds the accepted structures whole" if cold
                 else "the starting model's spacing"},
        training_dice={
            "note": "Dice on cases this version trained on (a training score, not a test score)",
            "cases": scores,
            "mean": float(np.mean(list(scores.values()))) if scores else None,
        },
        notes=list(trainer.notes),
    )
    info_path = study.model_info_path(version)
    write_text_atomic(info_path, json.dumps(info.to_json(), indent=1, sort_keys=True), parents=True)
    if adopt:
        study.current_model = version
        say(f"{WROTE_MESSAGE}{version} ({path}); it is now the study's current model")
    else:
        say(f"{WROTE_MESSAGE}{version} ({path}); not adopted: the study's model is still "
            f"{study.current_model or DEFAULT_MODEL_NAME}")
    return FinetuneResult(
        version=version, path=path, info_path=info_path, parent=parent,
        iterations=trainer.iteration, stopped_early=stopped_early, seconds=seconds,
        labeled=labeled_names, unlabeled=unlabeled_names, training_dice=scores, meta=new_meta,
        starting_agreement=dict(agreement), adopted=adopt, parent_path=source, replay=replayed.record(),
        method=method_note, training_seconds=float(trainer.seconds),
    )


@dataclass
class PredictionChange:
    """How much a new version changes the predictions of cases nobody accepted: per case, the
    Dice between the parent's and the new version's label maps (1.0: unchanged)."""

    cases: dict[str, float]
    #: the other cases there were (``cases`` may be a sample of them, see :func:`compare_with_parent`)
    of: int
    seconds: float
    stopped: bool = False

    @property
    def mean(self) -> float | None:
        return float(np.mean(list(self.cases.values()))) if self.cases else None

    @property
    def lowest(self) -> tuple[str, float] | None:
        return min(self.cases.items(), key=lambda item: item[1]) if self.cases else None


def compare_with_parent(
    study: Study | str | os.PathLike[str],
    result: FinetuneResult,
    *,
    device: str = "auto",
    should_stop: Callable[[], bool] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    max_cases: int = COMPARE_CASES,
) -> PredictionChange:
    """Dice between the parent's and the new version's predictions on the first ``max_cases``
    unaccepted cases in the order *Next case* opens them (most uncertain first, unscored cases by
    name): the same cases however long they take (``seconds`` says how long). The parent's
    prediction saved in the study is reused (:func:`starting_prediction`); the new version runs
    one deterministic pass per case. A stop request (checked before each window) ends it with the
    cases done so far."""
    from napari_uamc.engine.inference import Cancelled, InferenceConfig, segment_volume

    if not isinstance(study, Study):
        study = Study.open(study)
    started = time.perf_counter()
    others = [case for case in study.ranked_for_labeling() if case in set(result.unlabeled)]
    chosen = others[:max(0, max_cases)]
    change = PredictionChange({}, len(others), 0.0)
    if not chosen or result.parent_path is None:
        return change
    parent_model, parent_meta = load_checkpoint(result.parent_path, "cpu")
    model, meta = load_checkpoint(result.path, "cpu")
    config = InferenceConfig(mc_samples=0, device=device)
    for index, name in enumerate(chosen):
        if on_progress is not None:
            on_progress(index, len(chosen))
        try:
            before = starting_prediction(parent_model, parent_meta, study, name, result.parent, device, should_stop)
            after = segment_volume(model, meta, study.read_image(name), config, should_stop=should_stop).label
        except Cancelled:
            change.stopped = True
            break
        change.cases[name] = foreground_dice(before, after, meta.n_classes)
    if on_progress is not None:
        on_progress(len(change.cases), len(chosen))
    change.seconds = time.perf_counter() - started
    return change
