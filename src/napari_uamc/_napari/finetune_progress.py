"""What a running fine-tune shows: the Fine-tune section's status line and bar (no Qt).

:class:`RunProgress` turns what the fine-tune child reports (:func:`~napari_uamc._napari.tasks.
finetune_in_child`: the engine's step reports and messages, the progress of a long stage, a tick
every second) into the status text and the bar, through the
:class:`~napari_uamc._napari.finetuning.Finetuning` that owns the run (its signals, clock and
budget). A run has three parts, and the person always sees which one and that it moves:

* preparing, a busy bar: starting the fine-tune process, comparing the model with the accepted
  labels, reading the cases, the first training step (a clinician's try-out showed a frozen 0 %
  for the first 7 s);
* training: the bar and the status follow the budget, minutes by the clock, or iterations;
* finishing, a busy bar again, or the stage's own count where the engine reports one:
  recalibrating BatchNorm, scoring, writing, comparing with the model in use (14.5 s and 5.5 s
  in the try-out, with no sign of life).

Every named stage says how long it has run once it has run a second, and how long it has left
where its progress is reported. A text is said once: the engine's "writing" and "wrote" messages
are one stage (the try-out's status said *Now writing v001…* twice).
"""

from __future__ import annotations

from typing import Any

from napari_uamc._napari.tasks import COMPARING_MESSAGE
from napari_uamc._words import counted, duration_text
from napari_uamc.engine.progress_messages import (  # no torch
    READING_REPLAY_MESSAGE,
    TARGETS_MESSAGE,
    TRAINING_MESSAGE,
    WRITING_MESSAGE,
    WROTE_MESSAGE,
)

#: The first stage, until the child's first message (it imports torch and reads the model first).
STARTING = "starting the fine-tune process…"
#: Before training: the beginning of an engine message -> (stage, what the status says; None: the
#: message itself). Other messages (the learning rate and why, replay...) show under the status.
PREPARING_STAGES = (
    ("comparing the starting model", "comparing", "comparing the model with your accepted labels…"),
    (READING_REPLAY_MESSAGE, "replay", "reading the replay cases…"),
    ("reading ", "reading", None),
    ("labeling ", "anchors", "labeling the other cases with the model (anchors against forgetting)…"),
    (TARGETS_MESSAGE, "targets", None),
    (TRAINING_MESSAGE, "training", "training: the first step…"),
)
#: After training: the beginning of an engine message -> (stage, what the status says).
FINISHING_STAGES = (("recalibrating BatchNorm", "recalibrating", "recalibrating BatchNorm…"),
                    ("scoring the accepted cases", "scoring", "scoring the accepted cases…"),
                    ("stopped after", "finishing", "finishing the new version…"))
#: The status's stage between the last training step and the engine's next message.
FINISHING = "finishing the new version…"
#: A stage says how long it has run once it has run this long (seconds).
SHOWN_AFTER = 1.0
#: The engine's loss terms in plain words (docs/training.md), for the status line and the curve.
LOSS_LABELS = {"total": "total", "seg": "segmentation", "dis": "distance map",
               "itc": "teacher consistency", "ctc": "head consistency"}


def _stage_of(text: str, stages: tuple) -> tuple[str, str] | None:
    """``(stage, words)`` of an engine message (None: it names no stage)."""
    for prefix, key, words in stages:
        if text.startswith(prefix):
            return key, words or text.rstrip(".") + "…"
    return None


class RunProgress:
    """The progress texts of one fine-tune run (see the module); ``head`` says what runs
    ("fine-tuning v001 on 2 accepted cases: 3 minutes of training"), empty for no run."""

    def __init__(self, owner: Any, head: str = "") -> None:  # owner: a Finetuning
        self._owner = owner
        self.head = head
        now = owner.clock()
        self.started: float | None = now if head else None  # on owner.clock
        self.iteration = 0  # the last step reported (0: training has not started)
        self.training_started: float | None = None
        self.training_seconds: float | None = None  # set when training ends
        self.training_stopped = False  # Stop ended training
        self.finishing = False  # training ended; the run goes on
        self.stage, self.stage_key, self.stage_started = STARTING, "starting", now
        self.count: tuple[int, int] | None = None  # the stage's progress (done, total), if reported
        self.count_at = now  # when the count came
        self.version: str | None = None  # from the engine's "writing model vNNN"
        self.busy = False  # the bar is Qt's busy bar
        self._step: tuple[float, int, int, float | None, str] | None = None  # time, iteration, total, eta, losses
        self._said = ""

    # ------------------------------------------------------------------ reports
    def begin(self) -> None:
        """The run starts: a busy bar and its first stage."""
        self._bar(0, 0)
        self._say(self._preparing_text(self.started or 0.0))

    def on_step(self, report: Any) -> None:
        """A step report: progress by the clock (minutes) or by iterations. The budget is training
        time: at its last step the run goes on (:meth:`_training_ended`)."""
        owner, now = self._owner, self._owner.clock()
        total = max(1, int(getattr(report, "total", 0) or 0))
        iteration = self.iteration = int(getattr(report, "iteration", 0))
        if self.finishing:  # the panel judged the last step too early: training goes on
            self.finishing, self.training_seconds = False, None
        if self.training_started is None:  # the first report comes after its steps
            steps = max(1, iteration)
            self.training_started = now - steps * float(getattr(report, "seconds_per_iteration", 0.0) or 0.0)
        losses = {k: v for k, v in dict(getattr(report, "losses", {}) or {}).items() if v is not None}
        terms = "  ".join(f"{LOSS_LABELS.get(k, k)} {v:.3f}" for k, v in losses.items())
        self._step = (now, iteration, total, getattr(report, "eta_seconds", None), terms)
        owner.stepped.emit(iteration, losses)
        budget = owner.budget_seconds
        elapsed = now - self.training_started
        ended = bool(getattr(report, "last", False)) or (
            round(elapsed) >= int(budget) if budget else iteration >= total)
        if ended:  # BatchNorm, scoring, writing and comparing come next: no "0 s left"
            self._training_ended("finishing", FINISHING)
            return
        self._show_training(now)

    def on_message(self, text: str) -> None:
        """A message of the engine: before training, the stage it starts (or a line under the
        status); after training, the stage the status names."""
        owner = self._owner
        if not self.iteration and not self.finishing:
            stage = _stage_of(text, PREPARING_STAGES)
            if stage is None:  # the learning rate and why, replay...: said as it comes, under the status
                owner.stage.emit(text)
                return
            now = owner.clock()
            if stage[0] == "training":
                self.training_started = now  # the engine's budget counts from here
            self._enter(*stage, now)
            self._say(self._preparing_text(now))
            return
        stage = self._finishing_stage(text)
        if stage is None:  # not a stage (stopped while scoring, ...): said as it comes, under the status
            owner.stage.emit(text)
            return
        owner.stage.emit("")  # the training's stage line (learning rate...) is history
        self._training_ended(*stage)

    def on_progress(self, done: int, total: int) -> None:
        """Progress of the comparison with the parent on the other cases: a count of its own."""
        self._training_ended("comparing", f"comparing {self.version or 'the new version'} with the model in use "
                                          f"on {counted(total, 'case')}: {done} of {total} done…", (done, total))

    def on_stage_progress(self, done: int, total: int) -> None:
        """Progress of the stage running now (recalibration: patches; scoring: cases): its bar, and
        the time it has left."""
        if self.finishing:
            self._training_ended(self.stage_key, self.stage, (done, total))

    def tick(self) -> None:
        """A second went by: the stage says how long it has run (the bar moves by the clock)."""
        owner = self._owner
        if self.started is None or owner.stop_requested:  # "stopping…" stays until the run ends
            return
        now = owner.clock()
        if self.finishing:
            self._say(self._finishing_text(now))
        elif self.iteration:
            self._show_training(now)
        else:
            self._say(self._preparing_text(now))

    # ------------------------------------------------------------------ stages
    def _finishing_stage(self, text: str) -> tuple[str, str] | None:
        """What the run does after training, from the engine's message (None: not a stage)."""
        if text.startswith(WRITING_MESSAGE):
            words = text[len(WRITING_MESSAGE):].split()
            self.version = words[0] if words else None
            return "writing", f"writing {self.version or 'the new version'}…"
        if text.startswith(WROTE_MESSAGE):
            return self.stage_key, self.stage  # written; the comparison (or the offer) comes next
        if text.startswith(COMPARING_MESSAGE):
            return "comparing", f"comparing {self.version or 'the new version'} with the model in use…"
        return _stage_of(text, FINISHING_STAGES)

    def _enter(self, key: str, words: str, now: float) -> None:
        """The run is at stage ``key``, said ``words``; a new stage starts its clock and count."""
        if key != self.stage_key:
            self.stage_key, self.stage_started, self.count = key, now, None
            if self.finishing:
                self._bar(0, 0)  # busy until the new stage reports a count
        self.stage = words

    def _training_ended(self, key: str, words: str, count: tuple[int, int] | None = None) -> None:
        """Training is over but the run is not: the bar turns busy (no "100 %", no "0 s left")
        unless the stage reports its ``count`` (done, total), and the status says what it does now."""
        owner, now = self._owner, self._owner.clock()
        if not self.finishing:
            self.finishing = True
            self.training_stopped = owner.stop_requested
            self.training_seconds = 0.0 if self.training_started is None else max(0.0, now - self.training_started)
            self._bar(0, 0)  # busy: the stages after training have no honest fraction
        self._enter(key, words, now)
        if count is not None:
            self.count, self.count_at = (count[0], max(1, count[1])), now
            self._bar(*self.count)
        self._say(self._finishing_text(now))

    # ------------------------------------------------------------------ texts
    def _timing(self, now: float) -> str:
        """How long the stage has run, and has left where its count is known ("" in its first second)."""
        elapsed = max(0.0, now - self.stage_started)
        if elapsed < SHOWN_AFTER:
            return ""
        left = ""
        if self.count is not None and 0 < self.count[0] < self.count[1]:
            done, total = self.count  # at the pace so far, counted down since the count came
            seconds = (self.count_at - self.stage_started) / done * (total - done) - (now - self.count_at)
            left = f", about {duration_text(seconds)} left" if seconds >= SHOWN_AFTER else ""
        return f" ({duration_text(elapsed)} so far{left})"

    def _preparing_text(self, now: float) -> str:
        return f"{self.head or 'fine-tuning'}. Now {self.stage}{self._timing(now)}"

    def _finishing_text(self, now: float) -> str:
        stopping = "stopping… " if self._owner.stop_requested else ""
        how = "stopped after" if self.training_stopped else "done:"
        return (f"{stopping}training {how} {counted(self.iteration, 'iteration')} in "
                f"{duration_text(self.training_seconds or 0.0)}. Now {self.stage}{self._timing(now)}")

    def _show_training(self, now: float) -> None:
        """The status and the bar while it trains, at ``now``: the budget's seconds by the clock, or
        the iterations with the engine's estimate of the time left (counted down between steps)."""
        if self._step is None or self.training_started is None:
            return
        at, iteration, total, eta, terms = self._step
        budget = self._owner.budget_seconds
        if budget:  # a minutes budget: the bar and the text follow the clock, not an iteration cap
            elapsed = max(0.0, now - self.training_started)
            shown = min(round(elapsed), int(budget))  # elapsed + left = budget, as shown
            left = int(budget) - shown
            rest = f"about {left} s of training left" if left >= 1 else "its last step"
            text = f"iteration {iteration}, {shown} s of {budget:.0f} s of training, {rest}"
            self._bar(min(int(elapsed), int(budget)), int(budget))
        else:
            left = None if eta is None else eta - (now - at)
            text = f"iteration {iteration}/{total}" + (
                f", about {left:.0f} s of training left" if left is not None and left >= 0.5 else "")
            self._bar(min(iteration, total), total)
        self._say(f"{text}<br>{terms}")

    def _bar(self, value: int, maximum: int) -> None:
        self.busy = maximum == 0
        self._owner.progress.emit(value, maximum)

    def _say(self, text: str) -> None:
        if text != self._said:  # once: a tick or a second message for one stage says nothing new
            self._said = text
            self._owner._say(text)
