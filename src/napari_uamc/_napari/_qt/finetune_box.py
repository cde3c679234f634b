"""Fine-tune section: starting model, budget, method, Fine-tune / Stop, progress, loss curve (the
offered version has its own box, :mod:`~napari_uamc._napari._qt.offer_box`; whether the ranking is
refreshed when the model changes is asked beside Next case, :mod:`~napari_uamc._napari._qt.study_box`)."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QComboBox,
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
from napari_uamc._napari.finetuning import BUDGET_UNITS, FINETUNE_METHODS, default_budget
from napari_uamc._napari.loss_curve import LossCurve
from napari_uamc._napari.session import Session

#: The budget is training time; the run as a whole takes longer (measured in the clinician
#: try-out on a 2-core CPU: a 1-minute budget took 89 s from Fine-tune to the offer).
BUDGET_TIP = ("How long the model trains: minutes of training, or a number of iterations. The whole run "
              "takes longer: reading the cases before training, and BatchNorm recalibration, scoring, "
              "writing the version and comparing it with the model in use after it (on a 2-core CPU a "
              "1-minute budget took about 1.5 minutes in all).")


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
            "Supervised + BatchNorm recalibration (default): accepted cases train both heads; the other "
            "study cases re-estimate the normalisation statistics. Measured best on a CPU budget.\n"
            "UG-MCL consistency: the other cases also train through the mean-teacher and cross-task "
            "consistency; each step costs 5-8x more (docs/benchmarks.md)."
        )
        form.addRow("Method", self.method)
        layout.addLayout(form)
        self.finetune_button = button(
            "Fine-tune", tuning.start,
            "Fine-tune on the study: accepted cases are labeled, the other study cases unlabeled")
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
        self._show_start_model()
        tuning.running.connect(self._running)
        tuning.progress.connect(self._progress)
        tuning.started.connect(self.loss_curve.clear)
        tuning.stepped.connect(self.loss_curve.add_point)
        tuning.stage.connect(self._show_stage)

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

    def _show_start_model(self) -> None:
        self.start_model.setText(self.session.models.selected.label + ", the Segment model")

    def _progress(self, value: int, maximum: int) -> None:
        """``maximum`` 0: busy (Qt's moving bar), for work with no honest fraction done."""
        self.progress.setRange(0, max(0, maximum))
        self.progress.setValue(value if maximum > 0 else 0)
