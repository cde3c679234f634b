"""Fine-tune and ranking refresh for the session: options, progress, stop (no Qt).

:class:`Finetuning` turns the panel's budget and method into the engine's options, runs
:func:`~napari_uamc._napari.tasks.finetune_in_child` through the session's runner, turns each
step report into a progress value and a line of text, and after a fine-tune that was not
stopped re-segments the unaccepted cases (:func:`~napari_uamc._napari.tasks.refresh_ranking`)
so *Next case* uses current uncertainty scores.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from psygnal import Signal

from napari_uamc._napari.jobs import Job
from napari_uamc._napari.tasks import finetune_in_child, refresh_ranking
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


def default_budget(unit: str) -> int:
    return DEFAULT_FINETUNE_MINUTES if unit == "minutes" else DEFAULT_FINETUNE_ITERATIONS


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

    def __init__(self, session: Any) -> None:  # its napari_uamc._napari.session.Session
        self._session = session
        self.budget_unit = "minutes"
        self.budget = DEFAULT_FINETUNE_MINUTES
        self.method = next(iter(FINETUNE_METHODS))
        self.refresh_after = True
        #: a minutes budget, in seconds (None: an iterations budget)
        self.budget_seconds: float | None = None
        self._first_step_at: float | None = None
        self._stop = threading.Event()
        self._job: Job | None = None
        self._pending_refresh = False

    @property
    def job(self) -> Job | None:
        return self._job

    def stop(self) -> None:
        self._stop.set()

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
        options: dict[str, Any] = {self.budget_unit: self.budget}
        overrides = FINETUNE_METHODS[self.method]
        if overrides is not None:
            options["overrides"] = dict(overrides)
        self._stop.clear()
        self.budget_seconds = 60.0 * self.budget if self.budget_unit == "minutes" else None
        self._first_step_at = None
        self.started.emit()
        self.progress.emit(0, 1)
        self.stage.emit("")
        self._say(f"fine-tuning {model.label} on {len(study.labeled_cases())} accepted cases…")
        self._run(Job(
            "finetune", finetune_in_child,  # trains in a child process: see its docstring
            dict(study_root=study.root, model_path=model_path, device=session.device,
                 should_stop=self._stop.is_set, **options),
            reporters={"on_step": self.on_step, "on_message": self.on_message},
            on_returned=self._finetuned,
        ))

    def _run(self, job: Job) -> None:
        job.on_errored = lambda error: self._session.job_failed(SECTION, error)
        job.on_finished = self._finished
        self._job = job
        self.running.emit(True)
        self._session.runner.start(job)

    def on_step(self, report: Any) -> None:
        """A step report of the engine: progress by the clock (minutes) or by iterations."""
        total = max(1, int(getattr(report, "total", 0) or 0))
        iteration = int(getattr(report, "iteration", 0))
        budget = self.budget_seconds
        eta = getattr(report, "eta_seconds", None)
        if budget:  # a minutes budget: the bar and the text follow the clock, not an iteration cap
            now = time.monotonic()
            if self._first_step_at is None:
                self._first_step_at = now
            elapsed = now - self._first_step_at
            self.progress.emit(min(int(elapsed), int(budget)), int(budget))
            left = eta if eta is not None else max(budget - elapsed, 0.0)
            text = f"iteration {iteration}, {elapsed:.0f} s of {budget:.0f} s, about {left:.0f} s left"
        else:
            self.progress.emit(min(iteration, total), total)
            text = f"iteration {iteration}/{total}" + (f", about {eta:.0f} s left" if eta is not None else "")
        losses = {k: v for k, v in dict(getattr(report, "losses", {}) or {}).items() if v is not None}
        self.stepped.emit(iteration, losses)
        terms = "  ".join(f"{k} {v:.3f}" for k, v in losses.items())
        self._say(f"{text}<br>{terms}")

    def on_message(self, text: str) -> None:
        self.stage.emit(text)

    def _finetuned(self, result: Any) -> None:
        stopped = bool(getattr(result, "stopped_early", False))
        self._say(f"fine-tune {'stopped early' if stopped else 'done'}: new version <b>{result.version}</b> "
                  "is now used for Segment", "ok")
        self._session.version_added()
        if self.refresh_after and not stopped:
            self._pending_refresh = True

    def _finished(self) -> None:
        self._job = None
        self.running.emit(False)
        if self._pending_refresh:
            self._pending_refresh = False
            self.refresh_ranking()

    # ------------------------------------------------------------------ ranking
    def refresh_ranking(self) -> None:
        """Re-segment the unaccepted cases with the current model to refresh *Next case*."""
        session = self._session
        if session.study is None or self._job is not None:
            return
        model = session.models.selected
        self._stop.clear()
        self.progress.emit(0, 1)
        self._say(f"refreshing the uncertainty ranking with {model.label}…")

        def done(cases: list[str]) -> None:
            self._say(f"uncertainty ranking refreshed on {len(cases)} cases with {model.label}", "ok")
            session.study_changed.emit()

        self._run(Job(
            "ranking", refresh_ranking,
            dict(study=session.study, model=model, mc_samples=session.mc_samples, device=session.device,
                 should_stop=self._stop.is_set),
            reporters={"progress": lambda done_, total: self.progress.emit(done_, max(1, total))},
            on_returned=done,
        ))
