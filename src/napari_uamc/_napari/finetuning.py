"""Fine-tune, the offered version and the ranking refresh for the session (no Qt).

:class:`Finetuning` turns the panel's budget and method into the engine's options, runs
:func:`~napari_uamc._napari.tasks.finetune_in_child` through the session's runner, turns each
step report into a progress value and a line of text. A new version is *offered*, never imposed:
the fine-tune writes it without making it the study's model, and :class:`Offer` says how it does
on the accepted cases (before and after) and how much it changes the other cases' predictions;
the person adopts it (then the unaccepted cases are re-segmented,
:func:`~napari_uamc._napari.tasks.refresh_ranking`, so *Next case* uses its uncertainty) or
discards it; the decision is recorded in the version's ``.json``. A version nobody decided about
(its fine-tune ended while napari was closed, or the offer was left) is offered again when the
study opens, or when it is picked as the model. Stop is acknowledged at once (``stopping``) and
says how long the run took to end.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from psygnal import Signal

from napari_uamc._napari.jobs import Job
from napari_uamc._napari.tasks import (
    COMPARING_MESSAGE,
    WRITING_MESSAGE,
    WROTE_MESSAGE,
    finetune_in_child,
    refresh_ranking,
)
from napari_uamc._napari.versions import discard_version, read_version_info
from napari_uamc._words import counted, dice_text
from napari_uamc.data.study.versions import DEFAULT_MODEL_NAME, unreviewed_versions
from napari_uamc.engine.config import method_terms
from napari_uamc.errors import UamcError

SECTION = "finetune"
#: Fine-tune budget defaults (CPU-sized; the engine's defaults decide the rest).
DEFAULT_FINETUNE_MINUTES = 3
DEFAULT_FINETUNE_ITERATIONS = 200
BUDGET_UNITS = ("minutes", "iterations")
#: Fine-tune methods offered: label -> engine overrides (None: the engine's measured defaults).
FINETUNE_METHODS: dict[str, dict | None] = {
    "Supervised + BatchNorm recalibration": None,
    "UG-MCL consistency (slower steps)": {"terms": sorted(method_terms("ugmcl"))},
}


#: The engine's loss terms in plain words (docs/training.md), for the status line and the curve.
LOSS_LABELS = {"total": "total", "seg": "segmentation", "dis": "distance map",
               "itc": "teacher consistency", "ctc": "head consistency"}
#: An offer lists each accepted case's before -> after up to this many cases.
PER_CASE_SHOWN = 4
#: A version stopped before this many iterations is flagged as barely trained in its offer.
FEW_ITERATIONS = 20
#: An offer warns, and makes Discard its default, when the version's mean Dice with the accepted
#: labels is lower than its parent's by more than this (it trained on them, and still agrees less).
WORSE_BY = 0.005


#: What the fine-tune does after training, by the start of the engine's message (the writing,
#: wrote and comparing messages are named in napari_uamc._napari.tasks).
FINISHING_STAGES = (("recalibrating BatchNorm", "recalibrating BatchNorm…"),
                    ("scoring the accepted cases", "scoring the accepted cases…"),
                    ("stopped after", "finishing the new version…"))
#: The status's stage between the last training step and the engine's next message.
FINISHING = "finishing the new version…"


@dataclass
class _RunState:
    """Where the running fine-tune is, for its progress texts."""

    started: float | None = None  # on Finetuning.clock
    iteration: int = 0  # the last step reported (0: training has not started)
    training_seconds: float | None = None  # set when training ends
    training_stopped: bool = False  # Stop ended training
    finishing: bool = False  # training ended; the run goes on (busy bar)
    stage: str = FINISHING
    version: str | None = None  # from the engine's "writing model vNNN"


def default_budget(unit: str) -> int:
    return DEFAULT_FINETUNE_MINUTES if unit == "minutes" else DEFAULT_FINETUNE_ITERATIONS


def _numbers(values: Any) -> dict[str, float]:
    """The numeric entries of a recorded per-case dict (anything else: none)."""
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float))}


def _duration(seconds: float) -> str:
    """Seconds as the panel says them: "40 s", "3.1 min"."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _model_name(name: str) -> str:
    """A model as the offer names it beside a version: "default model", "v002"."""
    return "default model" if name == DEFAULT_MODEL_NAME else name


def _mean(values: dict[str, float]) -> float | None:
    numbers = [float(v) for v in (values or {}).values() if isinstance(v, (int, float))]
    return sum(numbers) / len(numbers) if numbers else None


@dataclass
class Offer:
    """A version a fine-tune wrote and nobody has adopted or discarded yet."""

    version: str
    parent: str
    iterations: int
    stopped_early: bool
    #: per accepted case: the parent's Dice against the label (before) and the version's (after)
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    #: per other case compared: Dice between the parent's and the version's predictions
    change: dict[str, float] = field(default_factory=dict)
    others: int = 0
    stop_seconds: float | None = None
    compare_seconds: float | None = None
    #: a Stop ended the comparison with the parent before its cases were done
    compare_stopped: bool = False
    #: how long the fine-tune took (None: not known): all of it, and its training alone
    seconds: float | None = None
    training_seconds: float | None = None
    #: made from the version's ``.json`` (no run of this panel wrote it, or its offer was left)
    from_file: bool = False

    @classmethod
    def from_outcome(cls, outcome: Any) -> Offer:
        result, change = outcome.result, outcome.change
        return cls(
            version=result.version, parent=result.parent, iterations=int(result.iterations),
            stopped_early=bool(result.stopped_early), before=dict(result.starting_agreement or {}),
            after=dict(result.training_dice or {}), change=dict(change.cases) if change is not None else {},
            others=len(result.unlabeled), stop_seconds=outcome.stop_seconds,
            compare_seconds=None if change is None else float(change.seconds),
            compare_stopped=bool(change is not None and change.stopped), seconds=float(result.seconds),
        )

    @classmethod
    def from_record(cls, version: str, info: Any) -> Offer:
        """The offer of an unreviewed version, from what its ``.json`` (``ModelVersionInfo``) holds."""
        unlabeled = (info.cases or {}).get("unlabeled") if isinstance(info.cases, dict) else None
        return cls(
            version=version, parent=info.parent or DEFAULT_MODEL_NAME, iterations=int(info.iterations or 0),
            stopped_early=bool(info.stopped_early), before=_numbers((info.starting_agreement or {}).get("cases")),
            after=_numbers((info.training_dice or {}).get("cases")), others=len(unlabeled or []), from_file=True,
        )

    def summary(self) -> str:
        """The Fine-tune section's last word on the run: what happened, not the offer's numbers."""
        took = f" (ended {self.stop_seconds:.1f} s after Stop)" if self.stop_seconds is not None else ""
        done = "stopped early" if self.stopped_early else "trained"
        if self.training_seconds is not None and self.seconds is not None:
            spent = f" in {_duration(self.training_seconds)} of training, {_duration(self.seconds)} in all"
        else:
            spent = f" in {_duration(self.seconds)}" if self.seconds is not None else ""
        return (f"<b>{self.version}</b> {done}{took}: {counted(self.iterations, 'iteration')}{spent}; "
                "see the offer above")

    @property
    def barely_trained(self) -> bool:
        return self.stopped_early and self.iterations < FEW_ITERATIONS

    @property
    def agrees_less(self) -> bool:
        """The version agrees less with the accepted labels than its parent (by more than
        :data:`WORSE_BY` in mean Dice, on the cases both were scored on), though it trained on them."""
        both = set(self.before) & set(self.after)
        if not both:
            return False
        before = sum(self.before[c] for c in both) / len(both)
        after = sum(self.after[c] for c in both) / len(both)
        return after < before - WORSE_BY

    @property
    def warning(self) -> str | None:
        """One plain line when keeping the parent is the better choice (the offer box then makes
        Discard its default button), else None."""
        v, p = self.version, self.parent
        if self.agrees_less:
            return f"{v} agrees less with your accepted labels than {p}, the model in use: Discard keeps {p}."
        if self.barely_trained:
            return (f"Stopped early after {counted(self.iterations, 'iteration')}: {v} is barely trained, "
                    f"probably no better than {p}, the model in use: Discard keeps {p}.")
        return None

    def _per_case_lines(self) -> list[str]:
        """Each accepted case's before -> after (a mean can hide the case that got worse); with
        more than :data:`PER_CASE_SHOWN` cases, only the one that lost most."""
        both = sorted(set(self.before) & set(self.after), key=lambda c: self.after[c] - self.before[c])
        if not both:
            return []
        shown = both if len(both) <= PER_CASE_SHOWN else both[:1]
        label = "per case" if len(both) <= PER_CASE_SHOWN else "lost most"
        return [f"&nbsp;&nbsp;{label}: " + "; ".join(
            f"{c} {dice_text(self.before[c])} -> {dice_text(self.after[c])}" for c in shown)]

    def lines(self) -> list[str]:
        """What the panel shows about the offer, one line per point (the :attr:`warning`, if any,
        second, as it is)."""
        v, p = self.version, self.parent
        offered = "was never adopted or discarded" if self.from_file else "is offered"
        lines = [f"<b>{v}</b> (from {p}, {counted(self.iterations, 'iteration')}) {offered}; {p} stays in use "
                 "until you adopt it."]
        warning = self.warning
        if warning is not None:
            lines.append(warning)
        if self.stopped_early and not (self.barely_trained and not self.agrees_less):  # else the warning says it
            lines.append(f"<b>Stopped early</b> after {counted(self.iterations, 'iteration')}"
                         + (": barely trained" if self.barely_trained else "") + ".")
        before, after = _mean(self.before), _mean(self.after)
        count = max(len(self.before), len(self.after))
        named = _model_name(p)
        if count == 1 and before is not None and after is not None and set(self.before) == set(self.after):
            (case,) = self.before
            lines.append(f"Accepted case {case}, agreement with your label (Dice): {named} "
                         f"{dice_text(self.before[case])}, {v} {dice_text(self.after[case])} "
                         f"({v}'s is a training score: it trained on this case).")
        elif before is not None and after is not None:
            lines.append(f"Accepted cases ({count}), mean agreement with your labels (Dice): {named} "
                         f"{dice_text(before)}, {v} {dice_text(after)} ({v}'s is a training score: it trained "
                         "on them).")
            lines.extend(self._per_case_lines())
        elif before is not None:
            lines.append(f"{counted(count, 'accepted case')}: {named} agreed with your "
                         f"{'label' if count == 1 else 'labels'} at Dice {dice_text(before)}; {v} was not scored "
                         "(stopped).")
        else:
            lines.append("Accepted cases: not compared (stopped).")
        changed = _mean(self.change)
        if changed is not None:
            name, lowest = min(self.change.items(), key=lambda item: item[1])
            most = f"; most changed: {name} {lowest:.2f}" if len(self.change) > 1 else f" ({name})"
            took = f" in {_duration(self.compare_seconds)}" if self.compare_seconds is not None else ""
            which = (f" (Stop ended the comparison{took};" if self.compare_stopped
                     else f", the first that Next case would open (compared{took};")
            lines.append(f"Other cases: Dice between {p}'s and {v}'s predictions {changed:.2f} on "
                         f"{len(self.change)} of {self.others}{which} 1.00 = unchanged){most}.")
        elif self.others:
            why = " (not kept on file)" if self.from_file else " (stopped)" if self.stopped_early else ""
            lines.append(f"Other cases: not compared{why}.")
        return lines


class Finetuning:
    """The fine-tune section's state: settings, the running job, its progress."""

    #: True while a fine-tune or a ranking refresh runs
    running = Signal(bool)
    #: progress bar: value, maximum
    progress = Signal(int, int)
    #: a new run starts (the loss curve clears)
    started = Signal()
    #: one step: iteration, losses by term
    stepped = Signal(int, dict)
    #: the engine's latest stage (comparing, the learning rate and why, recalibrating, writing)
    stage = Signal(str)
    #: Stop was pressed while work runs (acknowledged at once; ``running(False)`` follows)
    stopping = Signal()
    #: the offered version changed: an :class:`Offer`, or None once adopted or discarded
    offered = Signal(object)

    def __init__(self, session: Any) -> None:  # its napari_uamc._napari.session.Session
        self._session = session
        self.budget_unit = "minutes"
        self.budget = DEFAULT_FINETUNE_MINUTES
        self.method = next(iter(FINETUNE_METHODS))
        self.refresh_after = True
        #: a minutes budget, in seconds (None: an iterations budget)
        self.budget_seconds: float | None = None
        self._clock_start: float | None = None  # when training started, on self.clock
        self.clock = time.monotonic
        self._run_state = _RunState()
        self._stop = threading.Event()
        self._job: Job | None = None
        self._stop_asked_at: float | None = None
        #: the version the last fine-tune wrote, until adopted or discarded
        self.offer: Offer | None = None

    @property
    def job(self) -> Job | None:
        return self._job

    def stop(self) -> None:
        """Ask the running fine-tune or ranking refresh to end; says so at once."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._job is not None:
            self._stop_asked_at = time.monotonic()
            self.stopping.emit()
            self._say("stopping… (the run ends within a few seconds)")

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def _say(self, text: str, level: str = "info", *, notify: bool = False) -> None:
        self._session.say(SECTION, text, level, notify=notify)

    # ------------------------------------------------------------------ fine-tune
    def start(self) -> None:
        """Fine-tune the picked model on the study in the background."""
        session = self._session
        if self._job is not None:
            session.notice.emit("a fine-tune is already running", "info")
            return
        study = session.study
        if study is None:
            self._say("open a study first: fine-tuning uses its accepted and unaccepted cases", "error",
                      notify=True)
            return
        if not study.labeled_cases():
            self._say("accept at least one label before fine-tuning", "error", notify=True)
            return
        model = session.models.selected
        try:
            model_path = model.resolve()
        except UamcError as error:
            self._say(str(error), "error", notify=True)
            return
        options: dict[str, Any] = {self.budget_unit: self.budget, "adopt": False}
        overrides = FINETUNE_METHODS[self.method]
        if overrides is not None:
            options["overrides"] = dict(overrides)
        self._stop.clear()
        self._stop_asked_at = None
        self.set_offer(None)
        self.budget_seconds = 60.0 * self.budget if self.budget_unit == "minutes" else None
        self._clock_start = None
        self._run_state = _RunState(started=self.clock())
        self._session.say("versions", "")  # "now using ..." was about an earlier action
        self.started.emit()
        self.progress.emit(0, 1)
        self.stage.emit("")
        budget = counted(self.budget, "minute" if self.budget_unit == "minutes" else "iteration")
        self._say(f"fine-tuning {model.label} on {counted(len(study.labeled_cases()), 'accepted case')}: "
                  f"{budget} of training, with preparing before and finishing after…")
        self._run(Job(
            "finetune", finetune_in_child,  # trains in a child process: see its docstring
            dict(study_root=study.root, model_path=model_path, device=session.device,
                 should_stop=self._stop.is_set, **options),
            reporters={"on_step": self.on_step, "on_message": self.on_message, "on_progress": self.on_progress},
            on_returned=self._finetuned,
        ))

    def _run(self, job: Job) -> None:
        job.on_errored = self._failed
        job.on_finished = self._finished
        self._job = job
        self.running.emit(True)
        self._session.runner.start(job)

    def on_step(self, report: Any) -> None:
        """A step report of the engine: progress by the clock (minutes) or by iterations. The
        budget is training time: at its end the run goes on (:meth:`_training_ended`)."""
        total = max(1, int(getattr(report, "total", 0) or 0))
        iteration = int(getattr(report, "iteration", 0))
        self._run_state.iteration = iteration
        budget = self.budget_seconds
        eta = getattr(report, "eta_seconds", None)
        if budget:  # a minutes budget: the bar and the text follow the clock, not an iteration cap
            elapsed = self._training_elapsed(report)
            shown = min(round(elapsed), int(budget))  # elapsed + left = budget, as shown
            ended = shown >= int(budget)
            value, maximum = min(int(elapsed), int(budget)), int(budget)
            text = (f"iteration {iteration}, {shown} s of {budget:.0f} s of training, about {int(budget) - shown} s "
                    "of training left")
        else:
            self._training_elapsed(report)
            ended = iteration >= total
            value, maximum = min(iteration, total), total
            left = f", about {eta:.0f} s of training left" if eta is not None else ""
            text = f"iteration {iteration}/{total}{left}"
        losses = {k: v for k, v in dict(getattr(report, "losses", {}) or {}).items() if v is not None}
        self.stepped.emit(iteration, losses)
        if ended:  # the last step: BatchNorm, scoring, writing and comparing come next, no "0 s left"
            self._training_ended(FINISHING)
            return
        self.progress.emit(value, maximum)
        terms = "  ".join(f"{LOSS_LABELS.get(k, k)} {v:.3f}" for k, v in losses.items())
        self._say(f"{text}<br>{terms}")

    def _training_elapsed(self, report: Any) -> float:
        """Seconds since training started, on the panel's clock. The first report comes after its
        steps: training started their duration earlier (the engine's time budget counts from there)."""
        now = self.clock()
        if self._clock_start is None:
            steps = max(1, int(getattr(report, "iteration", 1) or 1))
            self._clock_start = now - steps * float(getattr(report, "seconds_per_iteration", 0.0) or 0.0)
        return max(0.0, now - self._clock_start)

    def _training_ended(self, stage: str) -> None:
        """Training is over but the run is not: the bar turns busy (no "100 %", no "0 s left")
        and the status says what it does now, ``stage``."""
        state = self._run_state
        if not state.finishing:
            state.finishing = True
            state.training_stopped = self._stop.is_set()
            state.training_seconds = 0.0 if self._clock_start is None else max(0.0, self.clock() - self._clock_start)
            self.progress.emit(0, 0)  # busy: the stages after training have no honest fraction
        state.stage = stage
        stopping = "stopping… " if self._stop.is_set() else ""
        how = "stopped after" if state.training_stopped else "done:"
        self._say(f"{stopping}training {how} {counted(state.iteration, 'iteration')} in "
                  f"{_duration(state.training_seconds or 0.0)}. Now {stage}")

    def on_message(self, text: str) -> None:
        """A message of the engine: its stage line before training; after training, the stage
        the status names (recalibrating, scoring, writing, comparing)."""
        if not self._run_state.iteration:  # preparing: comparing, reading, the learning rate and why
            self.stage.emit(text)
            return
        stage = self._finishing_stage(text)
        if stage is None:  # not a stage (stopped while scoring, ...): said as it comes, under the status
            self.stage.emit(text)
            return
        self.stage.emit("")  # the training's stage line (learning rate...) is history
        self._training_ended(stage)

    def _finishing_stage(self, text: str) -> str | None:
        """What the run does after training, from the engine's message (None: not a stage)."""
        state = self._run_state
        if text.startswith(WRITING_MESSAGE):
            words = text[len(WRITING_MESSAGE):].split()
            state.version = words[0] if words else None
            return f"writing {state.version or 'the new version'}…"
        if text.startswith(WROTE_MESSAGE):
            return state.stage  # written; the comparison (or the offer) comes next
        if text.startswith(COMPARING_MESSAGE):
            return f"comparing {state.version or 'the new version'} with the model in use…"
        for prefix, stage in FINISHING_STAGES:
            if text.startswith(prefix):
                return stage
        return None

    def on_progress(self, done: int, total: int) -> None:
        """Progress of the comparison with the parent on the other cases: a count of its own."""
        state = self._run_state
        self._training_ended(f"comparing {state.version or 'the new version'} with the model in use on "
                             f"{counted(total, 'case')}: {done} of {total} done…")
        self.progress.emit(done, max(1, total))

    def _failed(self, error: BaseException) -> None:
        from napari_uamc.engine.inference import Cancelled

        if isinstance(error, Cancelled) and str(error):
            self._say(str(error))
            return
        self._session.job_failed(SECTION, error)

    def _finetuned(self, outcome: Any) -> None:
        offer = Offer.from_outcome(outcome)
        state = self._run_state
        if state.started is not None:  # as the person waited: preparing, training, finishing
            offer.seconds = max(0.0, self.clock() - state.started)
            offer.training_seconds = state.training_seconds
        self._say(offer.summary(), "ok")  # the offer box above says what it does; no numbers twice
        self._session.version_added()
        self.progress.emit(1, 1)
        self.set_offer(offer)  # clears the run's last stage line ("comparing ...")

    def set_offer(self, offer: Offer | None) -> None:
        self.offer = offer
        self.offered.emit(offer)
        self._session.say("versions", "")  # an earlier "now using ..." is history
        self.stage.emit("")  # offered, adopted or discarded: the run's last stage line is history

    def offer_unreviewed(self, said: str = "") -> bool:
        """Offer the newest version nobody adopted or discarded (see the module); returns whether
        there was one. A running fine-tune's coming offer is left alone."""
        study = self._session.study
        if study is None or self._job is not None and self._job.name == "finetune":
            return False
        pending = unreviewed_versions(study)
        if not pending:
            return False
        self.offer_version(pending[0], said)
        return True

    def offer_version(self, version: str, said: str = "") -> None:
        """Offer ``version`` from its record (``said``: what to say first); Adopt or Discard decide."""
        self.set_offer(Offer.from_record(version, read_version_info(self._session.study, version)))
        self._say(f"{said}<b>{version}</b> was never adopted or discarded: it is offered at the top of the panel")

    def pick(self, version: str | None) -> None:
        """A person picked a model (the Model list, *Use selected version*): an unreviewed version
        is offered, not adopted; any other becomes the study's model (:meth:`use_version`)."""
        study = self._session.study
        if study is not None and version is not None and version in unreviewed_versions(study):
            self.offer_version(version)
            self._session.refresh_models()  # the Model list shows the model still in use
            self._session.say("versions", f"{version} is not adopted yet: see its offer at the top of the panel, "
                                          "then Adopt or Discard it")
            return
        self.use_version(version)

    def use_version(self, version: str | None) -> None:
        """Make a version (None: the packaged default) the study's current model: Segment uses it,
        the fine-tune starts from it; says what changed and refreshes the case ranking with it."""
        session, study = self._session, self._session.study
        if study is None:
            return
        before = study.current_model
        try:
            study.current_model = version
        except UamcError as error:
            self._say(str(error), "error", notify=True)
            session.refresh_models()
            return
        if self.offer is not None and self.offer.version == version:
            self.set_offer(None)  # picking the offered version adopts it
        session.refresh_models()
        name, was = version or "the default model", before or "the default model"
        if version == before:
            session.say("versions", f"{name} is already in use", "ok")
            return
        text = f"now using <b>{name}</b> for Segment and as the fine-tune's start (was {was})"
        if self.refresh_after and self.can_refresh:
            text += f"; re-segmenting the unaccepted cases so Next case follows {name}"
        else:
            text += f"; the case ranking is still {was}'s"
        session.say("versions", text, "ok")
        if self.refresh_after:
            self.refresh_ranking()

    def adopt(self) -> None:
        """Make the offered version the study's model (and refresh the ranking with it)."""
        offer = self.offer
        if offer is None:
            return
        self._session.use_version(offer.version)  # records it, clears the offer and says what it did

    def discard(self) -> None:
        """Discard the offered version: its weights go, its record stays marked ``discarded``."""
        offer, study = self.offer, self._session.study
        if offer is None or study is None:
            return
        try:
            discard_version(study, offer.version)
        except UamcError as error:
            self._say(str(error), "error", notify=True)
            return
        self.set_offer(None)
        self._session.version_added()
        said = f"discarded {offer.version}; {study.current_model or 'the default model'} stays in use"
        if not self.offer_unreviewed(said + ". "):  # the next one nobody decided about, if any
            self._say(said, "ok")

    def _finished(self) -> None:
        self._job = None
        if self._run_state.finishing and self.offer is None:  # failed or stopped: no busy bar left behind
            self.progress.emit(0, 1)
        self._run_state = _RunState()
        self.running.emit(False)

    # ------------------------------------------------------------------ ranking
    @property
    def can_refresh(self) -> bool:
        return self._session.study is not None and self._job is None

    def refresh_ranking(self) -> None:
        """Re-segment the unaccepted cases with the current model to refresh *Next case*."""
        session = self._session
        if not self.can_refresh:
            return
        model = session.models.selected
        self._stop.clear()
        self.progress.emit(0, 1)
        self._say(f"refreshing the uncertainty ranking with {model.label}…")

        def done(cases: list[str]) -> None:
            self._say(f"uncertainty ranking refreshed on {counted(len(cases), 'case')} with {model.label}", "ok")
            session.study_changed.emit()

        self._run(Job(
            "ranking", refresh_ranking,
            dict(study=session.study, model=model, mc_samples=session.mc_samples, device=session.device,
                 should_stop=self._stop.is_set),
            reporters={"progress": lambda done_, total: self.progress.emit(done_, max(1, total))},
            on_returned=done,
        ))
