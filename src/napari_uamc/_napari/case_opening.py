"""Opening a study case without stalling napari and without losing what was painted.

The case on screen is *left*, not closed: its draft is written in the background
(:mod:`napari_uamc._napari.drafts`) and its layers stay, taking no paint, while the next case's
files are read in a worker. Once they are read and the draft is on disk, the next case takes over
those layers (:meth:`CaseLayers.take_over`: renamed and refilled, not removed and added, which
spares napari building layer controls and a garbage collection per removed layer), one layer per
event-loop turn. No Qt.
"""

from __future__ import annotations

from typing import Any

from napari_uamc._napari import layers as layer_io
from napari_uamc._napari.case_layers import CaseFiles, read_case
from napari_uamc._napari.drafts import DraftKeeper
from napari_uamc._napari.jobs import Job, in_turns


def next_case_note(study: Any, case: str, open_case: str | None) -> str:
    """Why *Next case* chose ``case`` and what the person will see, for the study line.

    Next case ranks the unaccepted cases by their uncertainty score (Segment gives one), then
    takes those without a score in list order. ``open_case`` is the case left (not a candidate).
    """
    info = study.case_info(case)
    other = "other " if open_case is not None else ""
    ranked = study.ranked_for_labeling()
    left_first = (f"; {open_case}, the case you left, still ranks first"
                  if open_case is not None and ranked and ranked[0] == open_case
                  and study.case_info(open_case).uncertainty is not None else "")
    if info.uncertainty is not None:
        return f"the most uncertain {other}unaccepted case (uncertainty score {info.uncertainty:.4f} nats){left_first}"
    note = f"in list order: no {other}unaccepted case has an uncertainty score to rank by yet (Segment gives one)"
    if not info.has_prediction:
        note += "; not segmented yet: Segment to see the model's labels"
    return note + left_first


class CaseOpener:
    """Opens one case at a time for a session."""

    def __init__(self, session: Any) -> None:
        self._s = session
        self.drafts = DraftKeeper(session)
        self._job: Job | None = None
        self._showing = False  # the opened case's layers are being put on screen, in turns
        #: the case whose Next case note the study line shows, and the study's scores then
        self._noted: tuple[str, dict[str, float | None]] | None = None
        session.study_changed.connect(self.recheck_note)
        session.models_changed.connect(self.recheck_note)

    def recheck_note(self) -> None:
        """The study line's Next case note does not outlive a re-ranking (a new model version
        re-scores the cases, a Segment scores one): when the scores changed, it is said again
        if it still holds, else dropped."""
        s = self._s
        if self._noted is None:
            return
        case, scores = self._noted
        if s.study is None or s.case != case:
            self._noted = None
            return
        now = {info.name: info.uncertainty for info in s.study.cases_info()}
        ranked = s.study.ranked_for_labeling()
        if now == scores and case in ranked:  # still unaccepted, same scores: the note holds
            return
        self._noted = None
        if ranked and ranked[0] == case and now.get(case) is not None:
            self._noted = (case, now)
            s.say("study", f"{case}, {next_case_note(s.study, case, None)}")
        else:
            s.say("study", "")

    @property
    def busy(self) -> bool:
        """Whether a case is opening (its files read or its layers put on screen)."""
        return self._job is not None

    def open(self, case: str, note: str = "") -> None:
        """Keep the open case's draft, read ``case``'s files in the background, then show them.

        ``note`` (why this case, see :func:`next_case_note`) is said while it opens and stays on
        the study line once it is on screen."""
        s = self._s
        study = s.study
        if study is None:
            return
        if self._job is not None:
            s.notice.emit("a case is already opening", "info")
            return
        previous = self._leave_case()
        s.say("study", f"opening {case}, {note}…" if note else f"opening {case}…")
        job = Job(
            "open case", read_case, dict(study=study, case=case),
            on_returned=lambda files: self._show(study, files, previous, note),
            on_errored=lambda error: self._failed(previous, error),
            on_finished=self._finished,
        )
        self._job = job
        s.runner.start(job)

    def _finished(self) -> None:
        if not self._showing:
            self._job = None

    def _leave_case(self) -> str | None:
        """Leave the case on screen for the next one: its draft is written in the background, its
        layers stay (taking no paint) until the next case takes them over; returns the case."""
        s = self._s
        case = s.case
        if case is None:
            return None
        self.drafts.keep_in_background(case)
        segmentation = s.layers.segmentation(case)
        if segmentation is not None:
            segmentation.editable = False
        s.outcomes.pop(case, None)
        s._set_case(None)
        return case

    def _failed(self, previous: str | None, error: BaseException) -> None:
        s = self._s
        s.say("study", str(error), "error", notify=True)
        if previous is not None and s.case is None and s.layers.get(previous) is not None:
            self.drafts.after_saved(lambda: self._back_to(previous))

    def _back_to(self, case: str) -> None:
        """The next case could not open: the one left is the open case again."""
        self._s._set_case(case)
        segmentation = self._s.layers.segmentation(case)
        if segmentation is not None:
            segmentation.editable = True

    def _label_axes(self, case: str) -> None:
        """Name napari's axes ("slice", "row", "column" instead of "-3") on the case's image layer,
        when the viewer holds nothing but the case's layers: a person's own layers keep napari's
        labels, or their own."""
        s = self._s
        image = s.layers.get(case)
        if image is not None and all(s.layers.belongs_to(layer.name, case) for layer in s.viewer.layers):
            layer_io.label_axes(image)

    def _say_saved_prediction(self, case: str, saved: Any) -> None:
        """A reopened case's Segment line says what is on screen (it read 0 % and nothing); from
        what the worker read (saved_prediction.SavedOutcome), no disk read here."""
        model = saved.model_version or "the default model"
        score = f", uncertainty score {saved.uncertainty_score:.4f} nats" if saved.uncertainty_score is not None else ""
        self._s.segment_progress.emit(1, 1)
        self._s.say("segment", f"{case}: the saved prediction of {model}{score}; Segment to redo it")

    def _show(self, study: Any, files: CaseFiles, previous: str | None, note: str = "") -> None:
        s = self._s
        if study is not s.study or s.case is not None:  # another study or case came meanwhile
            if previous is not None and study is not s.study:
                self.drafts.after_saved(lambda: s.layers.remove_all_of(previous))
            return
        case = files.case
        failure = [""]  # why the draft of the case left failed, told again once this case is on screen

        def done() -> None:
            self._showing = False
            self._job = None
            s._set_case(case)
            if files.saved is not None:  # the saved prediction: where to correct, disagreement
                s.outcomes[case] = files.saved
                self._say_saved_prediction(case, files.saved)
            s.select_image(case)
            s.regions_changed.emit(list(files.saved.regions) if files.saved else [])
            if s.show_disagreement:
                s.set_disagreement(True)
            s.say("study", f"{case}, {note}" if note else "")
            self._noted = (case, {info.name: info.uncertainty for info in study.cases_info()}) if note else None
            if files.draft is not None:
                s.say("accept", f"{case}: your unaccepted edits (draft) are back on screen", notify=True)
            if failure[0]:  # said when it failed; the line stays until the next action
                s.say("accept", failure[0], "error")
            self._label_axes(case)  # the slider went to the case's middle slice with its image (case_steps)
            s.viewer.reset_view()

        def show() -> None:  # once the draft of the case left is on disk
            failure[0] = self.drafts.failed(previous) if previous is not None else ""
            if failure[0]:
                s.layers.set_aside(previous)  # the edit stays on screen
            in_turns(s.runner, s.layers.case_steps(files, previous), done)

        self._showing = True  # one layer per event-loop turn (jobs.in_turns)
        self.drafts.after_saved(show)
