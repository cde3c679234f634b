"""Fine-tune section: starting model, budget, method, replay, Fine-tune / Stop, progress, loss curve
(the offered version has its own box, :mod:`~napari_uamc._napari._qt.offer_box`; whether the ranking
is refreshed when the model changes is asked beside Next case, :mod:`~napari_uamc._napari._qt.study_box`)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_uamc._napari._qt.common import StatusLine, button, button_row
from napari_uamc._napari._qt.study_box import shown_path
from napari_uamc._napari.finetuning import BUDGET_UNITS, FINETUNE_METHODS, REPLAY_AUTO, Offer, default_budget
from napari_uamc._napari.loss_curve import LossCurve
from napari_uamc._napari.session import Session

#: The budget is training time; the run as a whole takes longer (measured in the clinician
#: try-out on a 2-core CPU: a 1-minute budget took 89 s from Fine-tune to the offer).
BUDGET_TIP = ("How long the model trains: minutes of training, or a number of iterations. The whole run "
              "takes longer: reading the cases before training, and BatchNorm recalibration, scoring, "
              "writing the version and comparing it with the model in use after it (on a 2-core CPU a "
              "1-minute budget took about 1.5 minutes in all).")
#: What replay is, and what each choice does (engine/replay.py; measured in docs/benchmarks.md).
REPLAY_TIP = ("Replay against forgetting: 2 labeled cases of the model's own training data are trained beside "
              "your accepted cases, so the model keeps what it did well (on real scans, held-out scans stayed "
              "within 3 Dice points of the starting model).\n"
              "automatic: the model's training folder, when its record names one on this computer, in warm "
              "starts only (the packaged model's record names no folder: choose its data to replay it; a "
              "version fine-tuned in this study replays nothing: its accepted cases are trained on anyway).\n"
              "Folder…: a study (imagesTr/ + labelsTr/), LA .h5 files, or images with a labels/ sub-folder; "
              "replayed in every fine-tune of this session.\n"
              "none: your accepted cases only.")
#: The replay list's fixed entries: what it shows -> Finetuning.replay ("none" stands for None).
REPLAY_CHOICES = (("automatic", REPLAY_AUTO), ("none", "none"))
#: What the Fine-tune button does.
FINETUNE_TIP = "Fine-tune on the study: accepted cases are labeled, the other study cases unlabeled"
#: Colour of the grey line under the Replay choice.
NOTE_COLOUR = "#9e9e9e"


class FinetuneBox(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Fine-tune", parent)
        tuning = self.finetuning = session.finetuning
        self.session = session
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.start_model = QLabel("")
        self.start_model.setWordWrap(True)
        self.start_model.setToolTip("The fine-tune starts from the model picked in Segment (one choice for both; "
                                    "Model versions > Use selected version changes it too)")
        form.addRow("Starts from", self.start_model)
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(list(BUDGET_UNITS))
        self.budget_unit.setCurrentText(tuning.budget_unit)
        self.budget_unit.currentTextChanged.connect(self._unit_changed)
        self.budget_spin = QSpinBox()
        self.budget_spin.setRange(1, 100000)
        self.budget_spin.setValue(tuning.budget)
        self.budget_spin.valueChanged.connect(lambda value: setattr(tuning, "budget", value))
        budget_row = QHBoxLayout()
        budget_row.addWidget(self.budget_spin)
        budget_row.addWidget(self.budget_unit)
        for widget in (self.budget_spin, self.budget_unit):
            widget.setToolTip(BUDGET_TIP)
        self.budget_label = QLabel("Training budget")
        self.budget_label.setToolTip(BUDGET_TIP)
        form.addRow(self.budget_label, budget_row)
        self.method = QComboBox()
        self.method.addItems(list(FINETUNE_METHODS))
        self.method.setCurrentText(tuning.method)
        self.method.currentTextChanged.connect(lambda text: setattr(tuning, "method", text))
        self.method.setToolTip(
            "Automatic (default, measured best on real scans): when the model already agrees with your "
            "accepted labels, the other study cases also train the model through UG-MCL's consistency "
            "with its own whole-case predictions where they are plausible (steps cost 1.5-1.7x); when it "
            "does not (images new to it), supervised on the accepted cases only.\n"
            "Supervised + BatchNorm recalibration: accepted cases train both heads; the other study "
            "cases only re-estimate the normalisation statistics.\n"
            "UG-MCL consistency: the paper's teacher passes on every patch; each step costs 3-6x more "
            "(docs/benchmarks.md)."
        )
        form.addRow("Method", self.method)
        self.replay = QComboBox()
        self.replay.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.replay.setMinimumContentsLength(10)  # a long folder never widens the panel
        for text, value in REPLAY_CHOICES:
            self.replay.addItem(text, value)
        self.replay.activated.connect(self._replay_picked)  # a person's pick, not the box's own updates
        self.replay_button = button("Folder…", self._choose_replay_folder, REPLAY_TIP)
        replay_row = QHBoxLayout()
        replay_row.addWidget(self.replay, 1)
        replay_row.addWidget(self.replay_button)
        self.replay_label = QLabel("Replay")
        for widget in (self.replay, self.replay_label):
            widget.setToolTip(REPLAY_TIP)
        form.addRow(self.replay_label, replay_row)
        self.replay_note = QLabel("")  # what automatic does for the model in use, before the run
        self.replay_note.setWordWrap(True)
        self.replay_note.setStyleSheet(f"color: {NOTE_COLOUR}")
        form.addRow("", self.replay_note)
        self._folder: str | None = None  # the last replay folder taken
        self._show_replay()
        layout.addLayout(form)
        self.finetune_button = button("Fine-tune", tuning.start, FINETUNE_TIP)
        self.stop_button = button("Stop", tuning.stop, enabled=False)
        layout.addLayout(button_row(self.finetune_button, self.stop_button))
        self.progress = QProgressBar()
        layout.addWidget(self.progress)
        self.status = StatusLine(session, "finetune")
        layout.addWidget(self.status)
        self.stage = QLabel("")
        self.stage.setWordWrap(True)
        self.stage.setVisible(False)
        layout.addWidget(self.stage)
        self.loss_curve = LossCurve()
        layout.addWidget(self.loss_curve)
        tuning.stopping.connect(self._stopping)
        session.models_changed.connect(self._show_start_model)
        session.models_changed.connect(self._show_replay_note)
        tuning.replay_changed.connect(self._show_replay)
        self._show_start_model()
        tuning.running.connect(self._running)
        tuning.progress.connect(self._progress)
        tuning.started.connect(self.loss_curve.clear)
        tuning.curve_cleared.connect(self.loss_curve.clear)
        tuning.offered.connect(self._show_offered)
        self._show_offered(tuning.offer)
        tuning.stepped.connect(self.loss_curve.add_point)
        tuning.stage.connect(self._show_stage)

    def _show_offered(self, offer: Offer | None) -> None:
        """While a version is offered, Fine-tune says it starts nothing until that one is decided."""
        first = f"Adopt or Discard {offer.version} first (the offer at the top of the panel). " if offer else ""
        self.finetune_button.setToolTip(first + FINETUNE_TIP)

    def _show_stage(self, text: str) -> None:
        self.stage.setText(text)
        self.stage.setVisible(bool(text))  # an empty line takes no room (it left a gap over the curve)

    def _unit_changed(self, unit: str) -> None:
        self.finetuning.budget_unit = unit
        self.budget_spin.setValue(default_budget(unit))

    def _running(self, running: bool) -> None:
        self.finetune_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.stop_button.setText("Stop")

    def _stopping(self) -> None:
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stopping…")

    # ------------------------------------------------------------------ replay
    def ask_folder(self) -> str:
        """The replay folder a person picks in a dialog ("": cancelled); a test replaces it."""
        current = self.finetuning.replay
        start = current if current not in (REPLAY_AUTO, None) else ""
        return QFileDialog.getExistingDirectory(self, "Replay folder: labeled cases the model trained on", start)

    def _choose_replay_folder(self) -> None:
        folder = self.ask_folder()
        if folder:
            self.choose_replay(folder)

    def choose_replay(self, choice: str | None) -> bool:
        """Replay from ``choice`` (REPLAY_AUTO, None or a folder) in the next fine-tunes; a folder
        is checked first, and one that gives no labeled case leaves the choice as it was (the
        status says why). Returns whether it was taken."""
        taken = self.finetuning.set_replay(choice)  # taken: replay_changed shows it
        if not taken:
            self._show_replay()  # the list goes back to the choice that holds
        return taken

    def _replay_picked(self, index: int) -> None:
        value = self.replay.itemData(index)
        self.choose_replay(None if value == "none" else value)

    def _show_replay(self) -> None:
        """The list shows the session's replay choice; the last folder taken stays its third entry,
        so a person can go back to it after trying automatic or none."""
        current = self.finetuning.replay
        if current not in (REPLAY_AUTO, None):
            self._folder = current
        while self.replay.count() > len(REPLAY_CHOICES):
            self.replay.removeItem(self.replay.count() - 1)
        if self._folder is not None:
            self.replay.addItem(shown_path(self._folder), self._folder)
            self.replay.setItemData(self.replay.count() - 1, self._folder, Qt.ItemDataRole.ToolTipRole)
        self.replay.setCurrentIndex({REPLAY_AUTO: 0, None: 1}.get(current, len(REPLAY_CHOICES)))
        self._show_replay_note()

    def _show_replay_note(self) -> None:
        """Under the Replay choice, in grey: what *automatic* will do for the model in use."""
        automatic = self.finetuning.replay == REPLAY_AUTO
        self.replay_note.setText("automatic: " + self.finetuning.auto_replay_note if automatic else "")
        self.replay_note.setVisible(automatic)

    def _show_start_model(self) -> None:
        self.start_model.setText(self.session.models.selected.label + ", the Segment model")

    def _progress(self, value: int, maximum: int) -> None:
        """``maximum`` 0: busy (Qt's moving bar), for work with no honest fraction done."""
        self.progress.setRange(0, max(0, maximum))
        self.progress.setValue(value if maximum > 0 else 0)
