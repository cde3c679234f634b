"""Fine-tune, the offered version and the ranking refresh for the session (no Qt).

:class:`Finetuning` turns the panel's budget, method and replay choice into the engine's options,
runs :func:`~napari_uamc._napari.tasks.finetune_in_child` through the session's runner and hands
its reports to :mod:`~napari_uamc._napari.finetune_progress`, which says how far it is. A new
version is *offered*, never imposed: the fine-tune writes it without making it the study's model,
and :class:`Offer` says how it does on the accepted cases (before and after), how much it changes
the other cases' predictions and whether it replayed earlier training cases against forgetting;
the person adopts it (then the unaccepted cases are re-segmented,
:func:`~napari_uamc._napari.tasks.refresh_ranking`, so *Next case* uses its uncertainty) or
discards it; the decision is recorded in the version's ``.json``. A version nobody decided about
(its fine-tune ended while napari was closed, or the offer was left) is offered again when the
study opens, or when it is picked as the model. Stop is acknowledged at once (``stopping``) and
says how long the run took to end. Replay against forgetting
(:mod:`napari_uamc.engine.replay`) is automatic unless a folder, checked when picked, or none is
chosen; the choice holds for the session, and the offer says whether a run replayed.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psygnal import Signal

from napari_uamc._napari.finetune_progress import RunProgress
from napari_uamc._napari.jobs import Job
from napari_uamc._napari.tasks import finetune_in_child, refresh_ranking
from napari_uamc._napari.versions import discard_version, read_version_info
from napari_uamc._words import counted, dice_text
from napari_uamc._words import duration_text as _duration
from napari_uamc.data.study.versions import DEFAULT_MODEL_NAME, unreviewed_versions
from napari_uamc.engine.config import ABLATION_ROWS, method_terms
from napari_uamc.engine.progress_messages import (
    METHOD_PREFIXES,
    agrees_less,
    barely_trained,
    scored_means,
)
from napari_uamc.engine.replay import AUTO as REPLAY_AUTO
from napari_uamc.errors import UamcError

SECTION = "finetune"
#: Fine-tune budget defaults (CPU-sized; the engine's defaults decide the rest).
DEFAULT_FINETUNE_MINUTES = 3
DEFAULT_FINETUNE_ITERATIONS = 200
BUDGET_UNITS = ("minutes", "iterations")
#: Fine-tune methods offered: label -> engine overrides (None: the engine's measured defaults).
FINETUNE_METHODS: dict[str, dict | None] = {
    "Automatic (measured best)": None,
    "Supervised + BatchNorm recalibration": {"terms": sorted(ABLATION_ROWS[2])},  # seg + dis
    "UG-MCL consistency (slower steps)": {"terms": sorted(method_terms("ugmcl"))},
}

#: An offer lists each accepted case's before -> after up to this many cases.
PER_CASE_SHOWN = 4
#: The command-line hints older records' replay reasons hold (the panel leaves them out): the
#: released one (2026-11-30, morning) and the one written between it and the panel's own words.
OLD_CLI_HINTS = (" (the panel's Replay choice, or uamc finetune --replay DIR)", " (uamc finetune --replay DIR)")


def default_budget(unit: str) -> int:
    return DEFAULT_FINETUNE_MINUTES if unit == "minutes" else DEFAULT_FINETUNE_ITERATIONS


def _numbers(values: Any) -> dict[str, float]:
    """The numeric entries of a recorded per-case dict (anything else: none)."""
    if not isinstance(values, dict):
        return {}
    return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float))}


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
    #: replay against forgetting, as recorded: ``{"source", "cases", "why"}`` (empty: not recorded)
    replay: dict[str, Any] = field(default_factory=dict)
    #: what taught the version when the engine chose it (``FinetuneResult.method``; "": not said)
    method: str = ""

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
            replay=dict(getattr(result, "replay", None) or {}), method=str(getattr(result, "method", "") or ""),
        )

    @classmethod
    def from_record(cls, version: str, info: Any) -> Offer:
        """The offer of an unreviewed version, from what its ``.json`` (``ModelVersionInfo``) holds."""
        unlabeled = (info.cases or {}).get("unlabeled") if isinstance(info.cases, dict) else None
        return cls(
            version=version, parent=info.parent or DEFAULT_MODEL_NAME, iterations=int(info.iterations or 0),
            stopped_early=bool(info.stopped_early), before=_numbers((info.starting_agreement or {}).get("cases")),
            after=_numbers((info.training_dice or {}).get("cases")), others=len(unlabeled or []), from_file=True,
            replay=dict(info.replay or {}) if isinstance(info.replay, dict) else {},
            method=next((str(n) for n in (info.notes or []) if str(n).startswith(METHOD_PREFIXES)), ""),
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
        """Too few iterations to have learned much (:func:`~napari_uamc.engine.progress_messages.barely_trained`)."""
        return barely_trained(self.iterations)

    def _means(self) -> tuple[float, float] | None:
        """Mean Dice with the accepted labels before and after, on the cases both were scored on."""
        return scored_means(self.before, self.after)

    @property
    def agrees_less(self) -> bool:
        """The version agrees less with the accepted labels than its parent, though it trained on
        them (:func:`~napari_uamc.engine.progress_messages.agrees_less`)."""
        return agrees_less(self.before, self.after)

    @property
    def no_better(self) -> str | None:
        """A plain sentence, said with the accepted cases' numbers, when the version agrees no better
        with the accepted labels than its parent but not so much less that :attr:`agrees_less` (no
        warning then, so Adopt and Discard looked alike in a try-out at 0.947 -> 0.944); else None."""
        means = self._means()
        if means is None or means[1] > means[0] or self.agrees_less:
            return None
        return (f"<b>{self.version} is no better than {_model_name(self.parent)} on your accepted labels</b>, "
                "though it trained on them: adopting it gains nothing there.")

    @property
    def warning(self) -> str | None:
        """One plain line when keeping the parent is the better choice (the offer box then makes
        Discard its default button), else None."""
        v, p = self.version, self.parent
        if self.agrees_less:
            return f"{v} agrees less with your accepted labels than {p}, the model in use: Discard keeps {p}."
        if self.barely_trained and self.stopped_early:
            return (f"Stopped early after {counted(self.iterations, 'iteration')}: {v} is barely trained, "
                    f"probably no better than {p}, the model in use: Discard keeps {p}.")
        if self.barely_trained:
            return (f"Only {counted(self.iterations, 'iteration')} in the budget: {v} is barely trained, probably "
                    f"no better than {p}, the model in use; a longer budget is needed to learn much: Discard "
                    f"keeps {p}.")
        return None

    def _no_better_said(self) -> str:
        return "" if self.no_better is None else " " + self.no_better

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
        elif self.barely_trained and self.agrees_less:  # the warning is about the labels
            lines.append(f"Only {counted(self.iterations, 'iteration')} in the budget: barely trained; a longer "
                         "budget is needed to learn much.")
        before, after = _mean(self.before), _mean(self.after)
        count = max(len(self.before), len(self.after))
        named = _model_name(p)
        if count == 1 and before is not None and after is not None and set(self.before) == set(self.after):
            (case,) = self.before
            lines.append(f"Accepted case {case}, agreement with your label (Dice): {named} "
                         f"{dice_text(self.before[case])}, {v} {dice_text(self.after[case])} "
                         f"({v}'s is a training score: it trained on this case)." + self._no_better_said())
        elif before is not None and after is not None:
            lines.append(f"Accepted cases ({count}), mean agreement with your labels (Dice): {named} "
                         f"{dice_text(before)}, {v} {dice_text(after)} ({v}'s is a training score: it trained "
                         "on them)." + self._no_better_said())
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
        if self.method:
            lines.append(self.method[0].upper() + self.method[1:] + ".")
        replayed = self.replay_line()
        if replayed:
            lines.append(replayed)
        return lines

    def replay_line(self) -> str:
        """Whether the run replayed earlier training cases against forgetting, in words ("": not recorded)."""
        cases, why = list(self.replay.get("cases") or []), str(self.replay.get("why") or "")
        for hint in OLD_CLI_HINTS:  # a record written before the panel's texts left the CLI out
            why = why.replace(hint, "")
        # the record's own words (the packaged model's is three lines long) stay in the version's
        # record and the CLI; the Replay row's grey line already says what they mean (try-out)
        why = re.sub(r" \(it says: (['\"]).*?\1\)", "", why)
        if cases:
            return (f"Replay against forgetting: {counted(len(cases), 'case')} of {self.replay.get('source')} "
                    f"({why}) trained beside your accepted cases.")
        if why:
            return "No replay: " + why.removeprefix("no replay: ") + "."
        return ""


class Finetuning:
    """The fine-tune section's state: settings, the running job, its progress."""

    #: True while a fine-tune or a ranking refresh runs
    running = Signal(bool)
    #: progress bar: value, maximum
    progress = Signal(int, int)
    #: a new run starts (the loss curve clears)
    started = Signal()
    #: the run's version was adopted or discarded, or another version is offered: its loss curve clears
    curve_cleared = Signal()
    #: one step: iteration, losses by term
    stepped = Signal(int, dict)
    #: the engine's latest stage (comparing, the learning rate and why, recalibrating, writing)
    stage = Signal(str)
    #: Stop was pressed while work runs (acknowledged at once; ``running(False)`` follows)
    stopping = Signal()
    #: the offered version changed: an :class:`Offer`, or None once adopted or discarded
    offered = Signal(object)
    #: the replay choice changed (from the panel's list or a script's :meth:`set_replay`)
    replay_changed = Signal()

    def __init__(self, session: Any) -> None:  # its napari_uamc._napari.session.Session
        self._session = session
        self.budget_unit = "minutes"
        self.budget = DEFAULT_FINETUNE_MINUTES
        self.method = next(iter(FINETUNE_METHODS))
        self.refresh_after = True
        #: where replay cases come from: REPLAY_AUTO (the model's own training data, when it is a
        #: folder here and the start is warm), a folder (:meth:`set_replay` checks it) or None (none)
        self.replay: str | None = REPLAY_AUTO
        #: a minutes budget, in seconds (None: an iterations budget)
        self.budget_seconds: float | None = None
        self.clock = time.monotonic
        #: what the running fine-tune shows (an idle one between runs)
        self.run = RunProgress(self)
        self._stop = threading.Event()
        self._job: Job | None = None
        self._stop_asked_at: float | None = None
        #: the version the last fine-tune wrote, until adopted or discarded
        self.offer: Offer | None = None
        #: the version whose run the loss curve shows, while it is offered (see :meth:`set_offer`)
        self._curve_of: str | None = None
        #: while a ranking refresh that a model change started runs: the Model versions line and the old model
        self._versions_said: tuple[str, str] | None = None

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

    def set_replay(self, choice: str | None) -> bool:
        """Choose where the next fine-tunes take replay cases from: ``REPLAY_AUTO``, None (no
        replay) or a folder, which is checked now (a clear error, and the choice unchanged, when it
        cannot give labeled cases). Returns whether the choice was taken; says what it means."""
        if choice is None or choice == REPLAY_AUTO:
            self.replay = choice
            said = (f"replay: automatic, {self.auto_replay_note}" if choice
                    else "replay: none; fine-tunes train on your accepted cases only")
        else:
            described = self._check_replay(choice, f"replay stays {self.replay_label}")
            if described is None:
                return False
            self.replay = str(Path(choice).expanduser())
            said = (f"replay: {described} in {self.replay} will be trained beside your accepted cases against "
                    "forgetting, in each fine-tune")
        if self._job is None:  # a running fine-tune's status stays; the choice is for the next one
            self._say(said, "ok")
        self.replay_changed.emit()
        return True

    def _check_replay(self, folder: str, then: str) -> str | None:
        """What a replay folder gives, in words; None when it gives nothing (the error said, with
        what happens ``then``)."""
        from napari_uamc.engine.replay import check_replay_folder

        study = self._session.study
        try:
            return check_replay_folder(folder, None if study is None else study.root)
        except UamcError as error:
            self._say(f"{error}; {then}", "error", notify=True)
            return None

    @property
    def auto_replay_note(self) -> str:
        """What *automatic* replay does for the model in use, said before a run (from the version's
        record, no weights read; the engine decides for good: :func:`~napari_uamc.engine.replay.replay_folder`)."""
        study, version = self._session.study, self._session.models.selected.version
        if version is None:
            return ("none for the packaged model: its record names its training data, not a folder on this "
                    "computer; choose a Folder… holding that data to replay it")
        if study is not None and read_version_info(study, version).kind == "finetune":
            return (f"none for {version}: it was fine-tuned in this study, whose accepted cases are trained on "
                    "anyway; choose a Folder… to replay other labeled cases")
        return (f"{version}'s training folder, if its record names one on this computer (warm starts only; the "
                "offer says what was replayed)")

    @property
    def replay_label(self) -> str:
        """The replay choice in words: "automatic", "none" or the folder."""
        return {REPLAY_AUTO: "automatic", None: "none"}.get(self.replay, str(self.replay))

    # ------------------------------------------------------------------ fine-tune
    def start(self) -> None:
        """Fine-tune the picked model on the study in the background."""
        session = self._session
        if self._job is not None:
            session.notice.emit("the uncertainty ranking is being refreshed: Fine-tune once it ends (or Stop it)"
                                if self._job.name == "ranking" else "a fine-tune is already running", "info")
            return
        study = session.study
        if study is None:
            self._say("open a study first: fine-tuning uses its accepted and unaccepted cases", "error",
                      notify=True)
            return
        if not study.labeled_cases():
            self._say("accept at least one label before fine-tuning", "error", notify=True)
            return
        if self.offer is not None:  # one offer at a time (a new run replaced it without a word)
            version = self.offer.version
            self._say(f"Adopt or Discard {version} first (its offer is at the top of the panel): a new "
                      f"fine-tune would leave {version} on disk, neither adopted nor discarded", "error", notify=True)
            return
        model = session.models.selected
        try:
            model_path = model.resolve()
        except UamcError as error:
            self._say(str(error), "error", notify=True)
            return
        if self.replay not in (REPLAY_AUTO, None) and self._check_replay(
                self.replay, "nothing was started: choose another replay folder, automatic or none") is None:
            return  # the folder went, or it is the study now open: nothing started, nothing lost
        options: dict[str, Any] = {self.budget_unit: self.budget, "adopt": False, "replay": self.replay}
        overrides = FINETUNE_METHODS[self.method]
        if overrides is not None:
            options["overrides"] = dict(overrides)
        self._stop.clear()
        self._stop_asked_at = None
        self.set_offer(None)
        self.budget_seconds = 60.0 * self.budget if self.budget_unit == "minutes" else None
        self._session.say("versions", "")  # "now using ..." was about an earlier action
        self.started.emit()
        self.stage.emit("")
        budget = counted(self.budget, "minute" if self.budget_unit == "minutes" else "iteration")
        self.run = RunProgress(self, f"fine-tuning {model.label} on "
                                     f"{counted(len(study.labeled_cases()), 'accepted case')}: {budget} of training")
        self.run.begin()  # a busy bar and a named stage, not a frozen 0 % (the child takes seconds to start)
        self._run(Job(
            "finetune", finetune_in_child,  # trains in a child process: see its docstring
            dict(study_root=study.root, model_path=model_path, device=session.device,
                 should_stop=self._stop.is_set, **options),
            reporters={"on_step": self.on_step, "on_message": self.on_message, "on_progress": self.on_progress,
                       "on_stage_progress": self.on_stage_progress, "on_tick": self.on_tick},
            on_returned=self._finetuned,
        ))

    def _run(self, job: Job) -> None:
        job.on_errored = self._failed
        job.on_finished = self._finished
        self._job = job
        self.running.emit(True)
        self._session.runner.start(job)

    # the running fine-tune's reports (finetune_progress.RunProgress says what they mean)
    def on_step(self, report: Any) -> None:
        self.run.on_step(report)

    def on_message(self, text: str) -> None:
        self.run.on_message(text)

    def on_progress(self, done: int, total: int) -> None:
        self.run.on_progress(done, total)

    def on_stage_progress(self, done: int, total: int) -> None:
        self.run.on_stage_progress(done, total)

    def on_tick(self) -> None:
        self.run.tick()

    def _failed(self, error: BaseException) -> None:
        from napari_uamc.engine.inference import Cancelled

        if isinstance(error, Cancelled) and str(error):
            self._say(str(error))
            return
        self._session.job_failed(SECTION, error)

    def _finetuned(self, outcome: Any) -> None:
        offer = Offer.from_outcome(outcome)
        state = self.run
        if state.started is not None:  # as the person waited: preparing, training, finishing
            offer.seconds = max(0.0, self.clock() - state.started)
            offer.training_seconds = state.training_seconds
        self._say(offer.summary(), "ok")  # the offer box above says what it does; no numbers twice
        self._session.version_added()
        self.progress.emit(1, 1)
        self._curve_of = offer.version
        self.set_offer(offer)  # clears the run's last stage line ("comparing ...")

    def set_offer(self, offer: Offer | None) -> None:
        """Offer ``offer`` (None: nothing offered). The loss curve of the run that wrote the version
        offered until now goes with it: adopted, discarded or replaced, that run is no longer under
        review, and the curve names no version (a curve left after Discard read as the model in use's)."""
        if self._curve_of is not None and (offer is None or offer.version != self._curve_of):
            self._curve_of = None
            self.curve_cleared.emit()
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
            session.say("versions", f"{text}; re-segmenting the unaccepted cases so Next case follows {name}…", "ok")
            self.refresh_ranking(versions_said=(text, was))  # its end says so here too
        else:
            session.say("versions", f"{text}; the case ranking is still {was}'s", "ok")

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
        if self._versions_said is not None:  # the ranking refresh stopped or failed (Fine-tune says which)
            text, was = self._versions_said
            self._session.say("versions", f"{text}; the re-segmentation did not finish (see Fine-tune): the case "
                                          f"ranking may still be {was}'s")
            self._versions_said = None
        if self.run.busy and self.offer is None:  # failed or stopped: no busy bar left behind
            self.progress.emit(0, 1)
        self.run = RunProgress(self)
        self.running.emit(False)

    # ------------------------------------------------------------------ ranking
    @property
    def can_refresh(self) -> bool:
        return self._session.study is not None and self._job is None

    def refresh_ranking(self, versions_said: tuple[str, str] | None = None) -> None:
        """Re-segment the unaccepted cases with the current model to refresh *Next case*.
        ``versions_said``: the Model versions line that announced it and the model it replaced;
        that line then says how it ended (it said "re-segmenting…" long after it had)."""
        session = self._session
        if not self.can_refresh:
            return
        model = session.models.selected
        self._stop.clear()
        self.progress.emit(0, 1)
        self._say(f"refreshing the uncertainty ranking with {model.label}…")
        self._versions_said = versions_said
        total = len(session.study.unlabeled_cases())

        def done(cases: list[str]) -> None:
            if len(cases) < total:
                self._say(f"stopped: uncertainty ranking refreshed on {len(cases)} of {counted(total, 'case')} "
                          f"with {model.label}")
            else:
                self._say(f"uncertainty ranking refreshed on {counted(len(cases), 'case')} with {model.label}", "ok")
            if self._versions_said is not None and len(cases) == total:  # else stopped: _finished says so
                resegmented = counted(len(cases), "unaccepted case")
                session.say("versions", f"{self._versions_said[0]}; re-segmented {resegmented}: Next case follows "
                                        f"{model.label}", "ok")
                self._versions_said = None
            session.study_changed.emit()

        self._run(Job(
            "ranking", refresh_ranking,
            dict(study=session.study, model=model, mc_samples=session.mc_samples, device=session.device,
                 should_stop=self._stop.is_set),
            reporters={"progress": lambda done_, total: self.progress.emit(done_, max(1, total))},
            on_returned=done,
        ))
