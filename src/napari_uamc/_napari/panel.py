"""The napari-uamc dock widget: study, Segment, where to correct, Accept, Fine-tune, versions.

:class:`UamcPanel` only puts the section widgets of :mod:`napari_uamc._napari._qt` together
around one :class:`~napari_uamc._napari.session.Session`, which holds the loop's state and
decisions (no Qt), and watches the main window so closing napari stops running work cleanly and
keeps unaccepted edits as a draft. Its methods (``open_study``, ``segment``, ``accept``,
``finetune``...) are the buttons, for scripts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import QMainWindow, QScrollArea, QVBoxLayout, QWidget

from napari_uamc._napari._qt.accept_box import AcceptBox
from napari_uamc._napari._qt.finetune_box import FinetuneBox
from napari_uamc._napari._qt.offer_box import OfferBox
from napari_uamc._napari._qt.regions_box import RegionsBox
from napari_uamc._napari._qt.runner import QtRunner
from napari_uamc._napari._qt.segment_box import SegmentBox
from napari_uamc._napari._qt.study_box import StudyBox
from napari_uamc._napari._qt.toasts import close_toasts_on_view_switch
from napari_uamc._napari._qt.versions_box import VersionsBox
from napari_uamc._napari.finetuning import (
    DEFAULT_FINETUNE_ITERATIONS,
    DEFAULT_FINETUNE_MINUTES,
    FINETUNE_METHODS,
)
from napari_uamc._napari.session import Session
from napari_uamc._napari.styling import (
    CHANGES_SUFFIX,
    DISAGREEMENT_SUFFIX,
    SDF_SUFFIX,
    SEGMENTATION_SUFFIX,
    UNCERTAINTY_DISPLAY_FLOOR,
    UNCERTAINTY_SUFFIX,
)
from napari_uamc._napari.tasks import ModelChoice
from napari_uamc._napari.versions import ACCEPT_DICE_PREFIX, DEFAULT_VERSION_KEY, honest_scores

#: Names importable from here (the panel's module was their home before the session existed).
__all__ = [
    "ACCEPT_DICE_PREFIX", "CHANGES_SUFFIX", "DEFAULT_FINETUNE_ITERATIONS", "DEFAULT_FINETUNE_MINUTES",
    "DEFAULT_VERSION_KEY", "DISAGREEMENT_SUFFIX", "FINETUNE_METHODS", "SDF_SUFFIX", "SEGMENTATION_SUFFIX",
    "UNCERTAINTY_DISPLAY_FLOOR", "UNCERTAINTY_SUFFIX", "UamcPanel", "honest_scores",
]


#: Pixels between the dock's top edge and the pinned offer box.
OFFER_MARGIN = 6


class UamcPanel(QWidget):
    """Segment, see uncertainty, correct, accept, fine-tune in the background, repeat."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        runner = QtRunner()
        self.session = session = Session(napari_viewer, runner)
        runner.widgets_gone = session.close  # a late report found this panel's widgets deleted
        session.notice.connect(_notify)
        self.destroyed.connect(lambda *_: session.close())
        close_toasts_on_view_switch(napari_viewer, self)  # toasts about the 2D view go with it
        self.study_box = StudyBox(session)
        self.segment_box = SegmentBox(session)
        self.regions_box = RegionsBox(session)
        self.accept_box = AcceptBox(session)
        self.finetune_box = FinetuneBox(session)
        self.offer_box = OfferBox(session)  # pinned above the sections: the decision stays in view
        self.versions_box = VersionsBox(session)
        self._layout()
        self._alias_controls()
        self._watched: list[QObject] = []
        self._watch_window_close()
        session.refresh_models()
        session._images_changed()
        self._claim_reader_patterns()

    def _layout(self) -> None:
        content = QWidget()
        column = QVBoxLayout(content)
        for box in (self.study_box, self.segment_box, self.regions_box, self.accept_box,
                    self.finetune_box, self.versions_box):
            column.addWidget(box)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, OFFER_MARGIN, 0, 0)  # the offer box's title clear of the dock's top edge
        outer.addWidget(self.offer_box)
        outer.addWidget(scroll, 1)
        self.setMinimumWidth(420)

    def _alias_controls(self) -> None:
        """The controls under the names scripts and tests have used (``panel.segment_status``...)."""
        study, seg, regions = self.study_box, self.segment_box, self.regions_box
        accept, tune, versions = self.accept_box, self.finetune_box, self.versions_box
        self.study_label, self.case_table = study.study_label, study.case_table
        self.open_case_button, self.next_case_button = study.open_case_button, study.next_case_button
        self.image_combo, self.model_combo, self.mc_spin = seg.image_combo, seg.model_combo, seg.mc_spin
        self.device_combo, self.segment_button = seg.device_combo, seg.segment_button
        self.segment_progress, self.segment_status = seg.progress, seg.status
        self.regions_list, self.disagreement_check = regions.regions_list, regions.disagreement_check
        self.accept_status, self.history_list = accept.status, accept.history_list
        self.budget_unit, self.budget_spin, self.finetune_method = tune.budget_unit, tune.budget_spin, tune.method
        self.refresh_check, self.finetune_progress = study.refresh_check, tune.progress
        self.finetune_status, self.finetune_stage, self.loss_curve = tune.status, tune.stage, tune.loss_curve
        self.finetune_button, self.versions_list = tune.finetune_button, versions.versions_list

    # ------------------------------------------------------------------ the session's state
    @property
    def study(self) -> Any:
        return self.session.study

    @property
    def case(self) -> str | None:
        return self.session.case

    @property
    def _segment_worker(self) -> Any:  # kept for scripts that wait on it; prefer session.segmenting
        return self.session._segment_job

    @property
    def _finetune_worker(self) -> Any:  # kept for scripts that wait on it; prefer session.finetuning.job
        return self.session.finetuning.job

    def selected_model(self) -> ModelChoice:
        return self.session.models.selected

    def selected_image_layer(self) -> Any:
        return self.session.selected_image_layer()

    # ------------------------------------------------------------------ the buttons, for scripts
    def open_study(self, path: str | Path, *, open_first_case: bool = True) -> None:
        self.session.open_study(path, open_first_case=open_first_case)
        self.wait_for_case()

    def create_study_from_layers(self, folder: str | Path) -> None:
        self.session.create_study_from_layers(folder)

    def open_case(self, case: str) -> None:
        self.session.open_case(case)
        self.wait_for_case()

    def open_next_case(self) -> None:
        self.session.open_next_case()
        self.wait_for_case()

    def wait_for_case(self, timeout_s: float = 120.0) -> None:
        """For scripts: return once the case being opened is on screen. The buttons do not wait
        (a case's files are read in a worker, napari stays responsive), the script methods do."""
        import time

        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout_s
        while self.session.opening and time.monotonic() < end:
            QApplication.processEvents()
            time.sleep(0.005)

    def segment(self) -> None:
        self.session.segment()

    def accept(self) -> None:
        self.session.accept()

    def show_changes(self) -> None:
        self.session.show_changes()

    def restore_selected(self) -> None:
        self.accept_box.restore_selected()

    def finetune(self) -> None:
        self.session.finetuning.start()

    def refresh_uncertainty_ranking(self) -> None:
        self.session.finetuning.refresh_ranking()

    def use_selected_version(self) -> None:
        self.versions_box.use_selected_version()

    def jump_to(self, world: list[float]) -> None:
        self.session.jump_to(world)

    # ------------------------------------------------------------------ reader preference
    def _claim_reader_patterns(self) -> None:
        """First use: napari-uamc opens MRI files without napari asking which reader (undoable)."""
        from napari.utils.notifications import Notification, NotificationSeverity, notification_manager

        from napari_uamc._napari import reader_preference

        try:
            claimed = reader_preference.claim_reader_patterns()
        except (OSError, ValueError) as error:  # never in the way of the panel
            self.session.say("study", f"could not set napari's reader preference: {error}")
            return
        if not claimed:
            return
        message = reader_preference.claim_message(claimed)
        self.session.say("study", message)
        # napari keeps notifications: the action must not hold the panel (nor, through it, the viewer)
        notification_manager.dispatch(
            Notification(message, NotificationSeverity.INFO, actions=[("Undo", _undo_reader_preference)])
        )

    # ------------------------------------------------------------------ shutdown
    def _watch_window_close(self) -> None:
        """Watch every Qt ancestor: a re-parenting re-watches, the main window's Close shuts down.

        Plain Qt (QWidget.parentWidget, event filters): no private napari attribute.
        """
        for obj in self._watched:
            obj.removeEventFilter(self)
        self._watched = []
        widget: QWidget | None = self
        while widget is not None:
            widget.installEventFilter(self)
            self._watched.append(widget)
            widget = widget.parentWidget()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        kind = event.type()
        if kind == QEvent.ParentChange:
            self._watch_window_close()
        elif kind == QEvent.Close and isinstance(obj, QMainWindow):
            self.shutdown()
        return False

    def shutdown(self, timeout_ms: int = 60000) -> None:
        """Stop running work and wait for it, so no model or label is left half-written; keep drafts."""
        self.session.shutdown(timeout_ms / 1000.0)


def _undo_reader_preference(*_args: Any) -> None:
    from napari.utils.notifications import show_info

    from napari_uamc._napari import reader_preference

    removed = [pattern.lstrip("*") for pattern in reader_preference.undo_claim()]
    if removed:
        show_info(f"napari asks again which reader opens {', '.join(removed)} files")


def _notify(text: str, level: str) -> None:
    from napari.utils.notifications import show_error, show_info

    (show_error if level == "error" else show_info)(text)
