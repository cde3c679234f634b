"""Keeping a case's painted segmentation as its draft in the background, without risking it.

Moving to another case writes the draft of the case being left (a compressed NIfTI, plus reading
the image's grid: 0.1-0.5 s on the GUI thread for a real scan) in a background job, while the
next case's files are read. Nothing is lost on the way: the label is copied before the job
starts, the study writes the file atomically (temp file + rename), the layer stops taking paint,
and the next case's layers are not refilled before every draft in flight is on disk
(:meth:`DraftKeeper.after_saved`); a failed draft keeps the painted layer on screen, set aside
(:meth:`DraftKeeper.failed`). Closing napari waits for running jobs (``Session.shutdown``). No Qt.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari_uamc._napari.jobs import Job


class DraftKeeper:
    """Drafts being written in the background for one session, and what waits for them."""

    def __init__(self, session: Any) -> None:
        self._s = session
        self._pending = 0
        self._waiting: list[Callable[[], None]] = []
        self._failed: dict[str, str] = {}  # case -> why its last background draft failed

    def keep_in_background(self, case: str) -> bool:
        """Start writing ``case``'s painted segmentation as its draft; returns whether one is written."""
        s = self._s
        if s.study is None or not s.layers.is_edited(case):
            return False
        label = s.layers.edited_canonical(case).copy()  # the voxels as they are now
        s.layers.mark_saved(case)
        s.layers.segmentation(case).editable = False  # a stroke now would miss the draft
        self._pending += 1
        s.runner.start(Job(
            "keep draft", s.study.save_draft, dict(case=case, label=label),
            on_returned=lambda _path: s.notice.emit(f"{case}: your unaccepted edits are kept as a draft", "info"),
            on_errored=lambda error: self._failure(case, error),
            on_finished=self._finished,
        ))
        return True

    def after_saved(self, then: Callable[[], None]) -> None:
        """Call ``then`` once no draft is being written (at once when none is)."""
        if self._pending:
            self._waiting.append(then)
        else:
            then()

    def failed(self, case: str) -> str:
        """What to tell when ``case``'s last background draft failed, "" when it did not (asked
        once: the answer is forgotten)."""
        return self._failed.pop(case, "")

    def _failure(self, case: str, error: BaseException) -> None:
        message = f"could not keep the draft of {case}: {error}; your edit stays on screen as a layer of its own"
        self._failed[case] = message
        self._s.say("accept", message, "error", notify=True)

    def _finished(self) -> None:
        self._pending -= 1
        if self._pending:
            return
        waiting, self._waiting = self._waiting, []
        for then in waiting:
            then()
