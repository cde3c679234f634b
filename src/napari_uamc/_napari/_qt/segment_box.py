"""Segment section: image, model, MC samples, device, Segment / Stop, progress, result."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QProgressBar,
    QSpinBox,
    QWidget,
)

from napari_uamc._napari._qt.common import StatusLine, button, button_row
from napari_uamc._napari.session import Session

DEVICES = ("auto", "cpu", "cuda", "mps")


class SegmentBox(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Segment", parent)
        self.session = session
        form = QFormLayout(self)
        self.image_combo = QComboBox()
        self.image_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.image_combo.currentTextChanged.connect(session.select_image)
        form.addRow("Image", self.image_combo)
        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setToolTip(
            "The packaged default segments the left atrium in LGE MRI (trained on 64 real LA 2018 "
            "scans); for other structures, fine-tune it on your study"
        )
        self.model_combo.currentIndexChanged.connect(session.select_model)
        form.addRow("Model", self.model_combo)
        self.mc_spin = QSpinBox()
        self.mc_spin.setRange(0, 64)
        self.mc_spin.setValue(session.mc_samples)
        self.mc_spin.setToolTip("Monte-Carlo dropout samples for the uncertainty map (0: no uncertainty)")
        self.mc_spin.valueChanged.connect(lambda value: setattr(session, "mc_samples", value))
        form.addRow("MC samples", self.mc_spin)
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICES))
        self.device_combo.setCurrentText(session.device)
        self.device_combo.currentTextChanged.connect(lambda text: setattr(session, "device", text))
        form.addRow("Device", self.device_combo)
        self.segment_button = button("Segment", session.segment)
        self.stop_button = button("Stop", session.stop_segment, enabled=False)
        form.addRow(button_row(self.segment_button, self.stop_button))
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setValue(0)
        form.addRow(self.progress)
        self.status = StatusLine(session, "segment")
        form.addRow(self.status)
        session.images_changed.connect(self._show_images)
        session.models_changed.connect(self._show_models)
        session.segment_running.connect(self._running)
        session.segment_progress.connect(self._progress)
        self._show_images([layer.name for layer in session.layers.image_layers()], session.image_name)
        self._show_models()

    def _show_images(self, names: list[str], selected: str) -> None:
        self.image_combo.blockSignals(True)
        if [self.image_combo.itemText(i) for i in range(self.image_combo.count())] != names:
            self.image_combo.clear()
            self.image_combo.addItems(names)
        self.image_combo.setCurrentText(selected)
        self.image_combo.blockSignals(False)

    def _show_models(self) -> None:
        models = self.session.models
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItems([choice.label for choice in models.choices])
        self.model_combo.setCurrentIndex(models.index)
        self.model_combo.blockSignals(False)

    def _running(self, running: bool) -> None:
        self.segment_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def _progress(self, done: int, total: int) -> None:
        self.progress.setMaximum(max(1, total))
        self.progress.setValue(done)
