"""The napari-uamc dock widget: study, Segment, where to correct, Accept, Fine-tune, versions.

The panel only wires buttons and layers to core calls (``data/``, ``engine/`` and the plain
functions of :mod:`napari_uamc._napari.tasks`). Long work runs in napari thread workers that
report progress through Qt signals and stop on request between steps.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_uamc._napari import layers as layer_io
from napari_uamc._napari.loss_curve import LossCurve
from napari_uamc._napari.tasks import (
    DEFAULT_MODEL_LABEL,
    ModelChoice,
    finetune_in_child,
    SegmentOutcome,
    label_changes,
    refresh_ranking,
    segment_image,
)
from napari_uamc.data.study.versions import DEFAULT_MODEL_NAME
from napari_uamc.engine.config import method_terms
from napari_uamc.errors import UamcError

if TYPE_CHECKING:
    from napari_uamc.data.study.versions import ModelVersionInfo

#: Suffixes of the layers the panel makes for an image called ``<image>``.
SEGMENTATION_SUFFIX = " segmentation"
SDF_SUFFIX = " SDF"
UNCERTAINTY_SUFFIX = " uncertainty"
DISAGREEMENT_SUFFIX = " disagreement"
CHANGES_SUFFIX = " changes"
#: Uncertainty below this fraction of ln 2 shows black, so the MRI is not tinted where the model is sure.
UNCERTAINTY_DISPLAY_FLOOR = 0.05
#: Fine-tune budget defaults (CPU-sized; the engine's defaults decide the rest).
DEFAULT_FINETUNE_MINUTES = 3
DEFAULT_FINETUNE_ITERATIONS = 200
#: Fine-tune methods offered: label -> engine overrides (None: the engine's measured defaults).
FINETUNE_METHODS: dict[str, dict | None] = {
    "Supervised + BatchNorm recalibration": None,
    "UG-MCL consistency (slower steps)": {"terms": sorted(method_terms("ugmcl"))},
}
#: Score key under which the honest accept Dice of a model version is stored per case.
ACCEPT_DICE_PREFIX = "accept_dice:"
DEFAULT_VERSION_KEY = DEFAULT_MODEL_NAME


class _Relay(QObject):
    """Carries progress from worker threads to the GUI thread (queued signal delivery)."""

    segment_progress = Signal(int, int)
    finetune_step = Signal(object)
    finetune_message = Signal(str)


def _sdf_colormap():
    from napari.utils.colormaps import Colormap

    return Colormap(
        [[0.13, 0.40, 0.67, 1.0], [0.97, 0.97, 0.97, 1.0], [0.70, 0.09, 0.17, 1.0]],
        name="uamc_sdf_diverging",
    )


class UamcPanel(QWidget):
    """Segment, see uncertainty, correct, accept, fine-tune in the background, repeat."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.study: Any = None  # data.study.Study
        self.case: str | None = None
        self._baselines: dict[str, np.ndarray] = {}  # segmentation layer -> model prediction
        self._outcomes: dict[str, SegmentOutcome] = {}  # image layer name -> last result
        self._segment_worker: Any = None
        self._finetune_worker: Any = None
        self._segment_stop = threading.Event()
        self._finetune_stop = threading.Event()
        self._pending_refresh = False
        self._relay = _Relay()
        self._relay.segment_progress.connect(self._on_segment_progress)
        self._relay.finetune_step.connect(self._on_finetune_step)
        self._relay.finetune_message.connect(self._on_finetune_message)
        self._finetune_budget_seconds: float | None = None  # a minutes budget, in seconds
        self._finetune_first_step_at: float | None = None  # time.monotonic() of its first step
        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_image_choices)
        self.viewer.layers.events.inserted.connect(self._adopt_study_of_new_layer)
        self.viewer.layers.events.removed.connect(self._refresh_image_choices)
        self._refresh_image_choices()
        self._refresh_models()
        self._watch_window_close()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        content = QWidget()
        column = QVBoxLayout(content)
        column.addWidget(self._build_study_box())
        column.addWidget(self._build_segment_box())
        column.addWidget(self._build_regions_box())
        column.addWidget(self._build_accept_box())
        column.addWidget(self._build_finetune_box())
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setMinimumWidth(420)

    def _build_study_box(self) -> QGroupBox:
        box = QGroupBox("Study")
        layout = QVBoxLayout(box)
        self.study_label = QLabel("No study open: open a study folder or segment any image layer.")
        self.study_label.setWordWrap(True)
        layout.addWidget(self.study_label)
        row = QHBoxLayout()
        self.open_study_button = QPushButton("Open study…")
        self.open_study_button.clicked.connect(self._choose_study)
        self.create_study_button = QPushButton("New study from layers…")
        self.create_study_button.clicked.connect(self._choose_new_study)
        row.addWidget(self.open_study_button)
        row.addWidget(self.create_study_button)
        layout.addLayout(row)
        self.case_table = QTableWidget(0, 3)
        self.case_table.setHorizontalHeaderLabels(["case", "status", "uncertainty"])
        self.case_table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.case_table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.case_table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.case_table.verticalHeader().setVisible(False)
        self.case_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        for column in (1, 2):
            self.case_table.horizontalHeader().setSectionResizeMode(column, QHeaderView.ResizeToContents)
        self.case_table.setMaximumHeight(170)
        self.case_table.cellDoubleClicked.connect(lambda row, _col: self._open_selected_case())
        layout.addWidget(self.case_table)
        row = QHBoxLayout()
        self.open_case_button = QPushButton("Open case")
        self.open_case_button.clicked.connect(self._open_selected_case)
        self.next_case_button = QPushButton("Next case")
        self.next_case_button.setToolTip("Open the unaccepted case the model is least sure about (active learning)")
        self.next_case_button.clicked.connect(self.open_next_case)
        row.addWidget(self.open_case_button)
        row.addWidget(self.next_case_button)
        layout.addLayout(row)
        return box

    def _build_segment_box(self) -> QGroupBox:
        box = QGroupBox("Segment")
        form = QFormLayout(box)
        self.image_combo = QComboBox()
        self.image_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        form.addRow("Image", self.image_combo)
        self.model_combo = QComboBox()
        self.model_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setToolTip(
            "The packaged default segments the left atrium in LGE MRI (trained on 64 real LA 2018 "
            "scans); for other structures, fine-tune it on your study"
        )
        form.addRow("Model", self.model_combo)
        self.mc_spin = QSpinBox()
        self.mc_spin.setRange(0, 64)
        self.mc_spin.setValue(8)
        self.mc_spin.setToolTip("Monte-Carlo dropout samples for the uncertainty map (0: no uncertainty)")
        form.addRow("MC samples", self.mc_spin)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cpu", "cuda", "mps"])
        form.addRow("Device", self.device_combo)
        row = QHBoxLayout()
        self.segment_button = QPushButton("Segment")
        self.segment_button.clicked.connect(self.segment)
        self.segment_stop_button = QPushButton("Stop")
        self.segment_stop_button.setEnabled(False)
        self.segment_stop_button.clicked.connect(self._segment_stop.set)
        row.addWidget(self.segment_button)
        row.addWidget(self.segment_stop_button)
        form.addRow(row)
        self.segment_progress = QProgressBar()
        self.segment_progress.setTextVisible(True)
        self.segment_progress.setValue(0)
        form.addRow(self.segment_progress)
        self.segment_status = QLabel("")
        self.segment_status.setWordWrap(True)
        form.addRow(self.segment_status)
        return box

    def _build_regions_box(self) -> QGroupBox:
        box = QGroupBox("Where to correct")
        layout = QVBoxLayout(box)
        hint = QLabel("Regions where the model is least sure, most uncertain first. Click one to go there.")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.regions_list = QListWidget()
        self.regions_list.setMaximumHeight(150)
        self.regions_list.itemClicked.connect(self._jump_to_region)
        layout.addWidget(self.regions_list)
        self.disagreement_check = QCheckBox("Show head disagreement layer")
        self.disagreement_check.setToolTip("Where the segmentation head and the SDF head disagree (no sampling needed)")
        self.disagreement_check.toggled.connect(self._toggle_disagreement)
        layout.addWidget(self.disagreement_check)
        return box

    def _build_accept_box(self) -> QGroupBox:
        box = QGroupBox("Accept")
        layout = QVBoxLayout(box)
        row = QHBoxLayout()
        self.accept_button = QPushButton("Accept label")
        self.accept_button.setToolTip("Save the segmentation layer as this case's label (earlier ones are kept)")
        self.accept_button.clicked.connect(self.accept)
        self.changes_button = QPushButton("Show my changes")
        self.changes_button.clicked.connect(self.show_changes)
        row.addWidget(self.accept_button)
        row.addWidget(self.changes_button)
        layout.addLayout(row)
        self.accept_status = QLabel("")
        self.accept_status.setWordWrap(True)
        layout.addWidget(self.accept_status)
        layout.addWidget(QLabel("Earlier labels of this case:"))
        self.history_list = QListWidget()
        self.history_list.setMaximumHeight(90)
        layout.addWidget(self.history_list)
        self.restore_button = QPushButton("Restore selected label")
        self.restore_button.clicked.connect(self.restore_selected)
        layout.addWidget(self.restore_button)
        return box

    def _build_finetune_box(self) -> QGroupBox:
        box = QGroupBox("Fine-tune")
        layout = QVBoxLayout(box)
        form = QFormLayout()
        self.budget_unit = QComboBox()
        self.budget_unit.addItems(["minutes", "iterations"])
        self.budget_unit.currentTextChanged.connect(self._budget_unit_changed)
        self.budget_spin = QSpinBox()
        self.budget_spin.setRange(1, 100000)
        self.budget_spin.setValue(DEFAULT_FINETUNE_MINUTES)
        budget_row = QHBoxLayout()
        budget_row.addWidget(self.budget_spin)
        budget_row.addWidget(self.budget_unit)
        form.addRow("Budget", budget_row)
        self.finetune_method = QComboBox()
        self.finetune_method.addItems(list(FINETUNE_METHODS))
        self.finetune_method.setToolTip(
            "Supervised + BatchNorm recalibration (default): accepted cases train both heads; the other "
            "study cases re-estimate the normalisation statistics. Measured best on a CPU budget.\n"
            "UG-MCL consistency: the other cases also train through the mean-teacher and cross-task "
            "consistency; each step costs 5-8x more (docs/benchmarks.md)."
        )
        form.addRow("Method", self.finetune_method)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.finetune_button = QPushButton("Fine-tune")
        self.finetune_button.setToolTip(
            "Fine-tune on the study: accepted cases are labeled, the other study cases unlabeled"
        )
        self.finetune_button.clicked.connect(self.finetune)
        self.finetune_stop_button = QPushButton("Stop")
        self.finetune_stop_button.setEnabled(False)
        self.finetune_stop_button.clicked.connect(self._finetune_stop.set)
        row.addWidget(self.finetune_button)
        row.addWidget(self.finetune_stop_button)
        layout.addLayout(row)
        self.refresh_check = QCheckBox("Then refresh the case ranking")
        self.refresh_check.setChecked(True)
        self.refresh_check.setToolTip("After a fine-tune, re-segment the unaccepted cases with the new "
                                      "version so 'Next case' uses current uncertainty scores")
        layout.addWidget(self.refresh_check)
        self.finetune_progress = QProgressBar()
        layout.addWidget(self.finetune_progress)
        self.finetune_status = QLabel("")
        self.finetune_status.setWordWrap(True)
        layout.addWidget(self.finetune_status)
        #: the fine-tune's latest stage (comparing, the learning rate and why, recalibrating, writing)
        self.finetune_stage = QLabel("")
        self.finetune_stage.setWordWrap(True)
        layout.addWidget(self.finetune_stage)
        self.loss_curve = LossCurve()
        layout.addWidget(self.loss_curve)
        versions_label = QLabel("Model versions (honest score = Dice against labels accepted later):")
        versions_label.setWordWrap(True)
        layout.addWidget(versions_label)
        self.versions_list = QListWidget()
        self.versions_list.setMaximumHeight(110)
        layout.addWidget(self.versions_list)
        self.use_version_button = QPushButton("Use selected version")
        self.use_version_button.setToolTip("Segment with this version from now on (roll back or forward)")
        self.use_version_button.clicked.connect(self.use_selected_version)
        layout.addWidget(self.use_version_button)
        return box

    # ------------------------------------------------------------------ messages
    def _info(self, message: str) -> None:
        from napari.utils.notifications import show_info

        show_info(message)

    def _error(self, message: str, label: QLabel | None = None) -> None:
        from napari.utils.notifications import show_error

        if label is not None:
            label.setText(f"<span style='color:#ff8a80'>{message}</span>")
        show_error(message)

    # ------------------------------------------------------------------ images and models
    def _image_layers(self) -> list[Any]:
        from napari.layers import Image

        suffixes = (SDF_SUFFIX, UNCERTAINTY_SUFFIX, DISAGREEMENT_SUFFIX)
        return [
            layer for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.name.endswith(suffixes)
        ]

    def _refresh_image_choices(self, event: Any = None) -> None:
        current = self.image_combo.currentText()
        names = [layer.name for layer in self._image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)

    def _adopt_study_of_new_layer(self, event: Any) -> None:
        """A layer from the "Phantom study" sample (or any study image) opens its study."""
        layer = getattr(event, "value", None)
        meta = layer_io.uamc_metadata(layer) if layer is not None else None
        folder = (meta or {}).get(layer_io.KEY_STUDY)
        if not folder or self.study is not None:
            return
        self.open_study(folder, open_first_case=False)
        case = meta.get(layer_io.KEY_CASE)
        if self.study is not None and case in self.study.cases():
            self.case = case
            self.image_combo.setCurrentText(layer.name)
            self._refresh_study()
            self._refresh_history()

    def selected_image_layer(self) -> Any:
        name = self.image_combo.currentText()
        if not name or name not in self.viewer.layers:
            raise UamcError("no image layer to segment: open an MRI (File > Open) or a study case")
        return self.viewer.layers[name]

    def _model_choices(self) -> list[ModelChoice]:
        choices = [ModelChoice(DEFAULT_MODEL_LABEL, None, None)]
        if self.study is not None:
            for version in self.study.model_versions():
                info = _read_version_info(self.study, version)
                marks = []
                if info.stopped_early:
                    marks.append("stopped early")
                parent = info.parent
                if parent:
                    marks.append(f"from {parent}")
                label = version + (f" ({', '.join(marks)})" if marks else "")
                choices.append(ModelChoice(label, self.study.model_path(version), version))
        return choices

    def _refresh_models(self) -> None:
        self._choices = self._model_choices()
        self.model_combo.clear()
        self.model_combo.addItems([choice.label for choice in self._choices])
        current = self.study.current_model if self.study is not None else None
        for index, choice in enumerate(self._choices):
            if choice.version is not None and choice.version == current:
                self.model_combo.setCurrentIndex(index)
        self._refresh_versions()

    def selected_model(self) -> ModelChoice:
        return self._choices[max(0, self.model_combo.currentIndex())]

    # ------------------------------------------------------------------ study
    def _choose_study(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a study folder (MSD layout)")
        if folder:
            self.open_study(folder)

    def _choose_new_study(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the new study (empty)")
        if folder:
            self.create_study_from_layers(folder)

    def open_study(self, path: str | Path, *, open_first_case: bool = True) -> None:
        """Open a study folder and show its cases; opens the first unaccepted case."""
        from napari_uamc.data.study import Study

        try:
            study = Study.open(path)
        except UamcError as error:
            self._error(str(error), self.study_label)
            return
        self._close_case()
        self.study = study
        self._refresh_study()
        self._refresh_models()
        if open_first_case and self.study.cases():
            self.open_case(self.study.suggest_next_case() or self.study.cases()[0])

    def create_study_from_layers(self, folder: str | Path) -> None:
        """Create a study from the image layers open in napari, then open it."""
        from napari_uamc.data.study import Study

        try:
            volumes = [
                layer_io.volume_from_layer(layer, name=layer.name) for layer in self._image_layers()
            ]
            if not volumes:
                raise UamcError("no image layers to put in a study: open some MRIs first")
            Study.create(folder, volumes)
        except UamcError as error:
            self._error(str(error), self.study_label)
            return
        self.open_study(folder, open_first_case=False)

    def _refresh_study(self) -> None:
        study = self.study
        if study is None:
            return
        infos = study.cases_info()
        accepted = sum(1 for info in infos if info.status == "accepted")
        self.study_label.setText(
            f"<b>{study.name}</b>: {len(infos)} cases, {accepted} accepted<br>{study.root}"
        )
        self.case_table.setRowCount(len(infos))
        for row, info in enumerate(infos):
            score = "" if info.uncertainty is None else f"{info.uncertainty:.4f}"
            status = str(info.status.value if hasattr(info.status, "value") else info.status)
            if info.has_draft:
                status += " (draft)"
            for column, text in enumerate((info.name, status, score)):
                item = QTableWidgetItem(text)
                if column == 0 and info.name == self.case:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.case_table.setItem(row, column, item)

    def _open_selected_case(self) -> None:
        rows = self.case_table.selectionModel().selectedRows() if self.case_table.selectionModel() else []
        if not rows or self.study is None:
            self._info("select a case in the list first")
            return
        self.open_case(self.case_table.item(rows[0].row(), 0).text())

    def open_next_case(self) -> None:
        """Open the unaccepted case with the highest uncertainty score (active learning)."""
        if self.study is None:
            self._info("open a study first")
            return
        case = self.study.suggest_next_case()
        if case is None:
            self._info("every case of the study is accepted")
            return
        self.open_case(case)

    def open_case(self, case: str) -> None:
        """Show a study case: its image and its draft, accepted label or prediction.

        Unaccepted edits of the case on screen are kept as a draft first (never lost silently).
        """
        study = self.study
        if study is None:
            return
        self._close_case()
        try:
            volume = study.read_image(case)
            prediction = study.read_prediction(case)
            draft = study.read_draft(case)
            accepted = study.read_label(case)
        except UamcError as error:
            self._error(str(error), self.study_label)
            return
        self.case = case
        data, kwargs, _ = layer_io.image_layer_tuple(
            volume, name=case, case=case, metadata={layer_io.META_KEY: {layer_io.KEY_STUDY: str(study.root)}}
        )
        self.viewer.add_image(data, **kwargs)
        baseline = prediction["seg"].array if prediction else None
        shown = draft or accepted or (prediction["seg"] if prediction else None)
        if prediction:
            self._add_map_layers(case, volume, prediction["sdf"].array, prediction["uncertainty"].array)
        if shown is not None:
            self._set_segmentation(case, volume, shown.array, baseline=baseline)
        if draft is not None:
            self._info(f"{case}: restored your unaccepted edits (draft)")
        self.image_combo.setCurrentText(case)
        self.regions_list.clear()
        self._refresh_history()
        self._refresh_study()
        self.viewer.reset_view()

    def _close_case(self) -> None:
        """Keep unaccepted edits of the case on screen as a draft, then remove its layers."""
        if self.case is None:
            return
        self._keep_draft()
        for name in [layer.name for layer in self.viewer.layers]:
            if name == self.case or name.startswith(self.case + " "):
                self.viewer.layers.remove(name)
        self.case = None

    def _keep_draft(self) -> None:
        """Save the on-screen edits of the current case as a draft if they differ from what was saved."""
        if self.study is None or self.case is None:
            return
        name = self.case + SEGMENTATION_SUFFIX
        if name not in self.viewer.layers:
            return
        current = layer_io.layer_data_to_canonical(self.viewer.layers[name].data)
        saved = self.study.read_label(self.case)
        reference = saved.array if saved is not None else self._baselines.get(name)
        if reference is not None and np.array_equal(current, reference):
            return
        try:
            self.study.save_draft(self.case, np.ascontiguousarray(current))
            self._info(f"{self.case}: your unaccepted edits are kept as a draft")
        except UamcError as error:
            self._error(f"could not keep the draft of {self.case}: {error}")

    # ------------------------------------------------------------------ segment
    def segment(self) -> None:
        """Run Segment on the selected image in a background worker."""
        from napari.qt.threading import create_worker

        if self._segment_worker is not None:
            self._info("a segmentation is already running")
            return
        try:
            layer = self.selected_image_layer()
            volume = layer_io.volume_from_layer(layer)
            model = self.selected_model()
            model.resolve()
        except UamcError as error:
            self._error(str(error), self.segment_status)
            return
        case = self._study_case_of(layer)
        self._segment_stop.clear()
        self.segment_progress.setValue(0)
        self.segment_status.setText(f"segmenting {layer.name} with {model.label}…")
        worker = create_worker(
            segment_image,
            volume,
            model,
            mc_samples=self.mc_spin.value(),
            device=self.device_combo.currentText(),
            progress=self._relay.segment_progress.emit,
            should_stop=self._segment_stop.is_set,
            study=self.study if case else None,
            case=case,
            _start_thread=False,
            _ignore_errors=True,  # errors are shown by _on_worker_error
        )
        worker.returned.connect(lambda outcome: self._on_segmented(layer.name, volume, outcome))
        worker.errored.connect(lambda error: self._on_worker_error(error, self.segment_status))
        worker.finished.connect(self._on_segment_finished)
        self._segment_worker = worker
        self.segment_button.setEnabled(False)
        self.segment_stop_button.setEnabled(True)
        worker.start()

    def _study_case_of(self, layer: Any) -> str | None:
        if self.study is None:
            return None
        meta = layer_io.uamc_metadata(layer) or {}
        case = meta.get(layer_io.KEY_CASE) or layer.name
        return case if case in self.study.cases() else None

    def _on_segment_progress(self, done: int, total: int) -> None:
        self.segment_progress.setMaximum(max(1, total))
        self.segment_progress.setValue(done)

    def _on_segment_finished(self) -> None:
        self._segment_worker = None
        self.segment_button.setEnabled(True)
        self.segment_stop_button.setEnabled(False)

    def _on_worker_error(self, error: BaseException, label: QLabel) -> None:
        from napari_uamc.engine.inference import Cancelled

        if isinstance(error, Cancelled):
            label.setText("stopped")
            return
        message = str(error) if isinstance(error, UamcError) else f"{type(error).__name__}: {error}"
        self._error(message, label)

    def _on_segmented(self, image_name: str, volume: Any, outcome: SegmentOutcome) -> None:
        result = outcome.result
        self._outcomes[image_name] = outcome
        sdf = result.sdf if result.sdf.ndim == 3 else result.sdf[0]
        self._add_map_layers(image_name, volume, sdf, result.uncertainty)
        self._set_segmentation(image_name, volume, result.label, baseline=result.label)
        if self.disagreement_check.isChecked():
            self._toggle_disagreement(True)
        self._show_regions(outcome)
        self.segment_progress.setValue(self.segment_progress.maximum())
        self.segment_status.setText(
            f"{image_name}: segmented volume <b>{outcome.volume_ml:.1f} mL</b>, "
            f"uncertainty score {outcome.uncertainty_score:.4f} nats (mean over the whole volume, "
            f"which ranks the cases; <code>uamc segment</code> reports the mean inside the segmentation), "
            f"{outcome.seconds:.1f} s "
            f"({outcome.model_label})"
        )
        if outcome.saved_to_study:
            self._refresh_study()

    def _layer_kwargs(self, volume: Any, name: str, case: str) -> dict[str, Any]:
        return {
            "name": name,
            "scale": layer_io.display_scale(volume.spacing),
            "metadata": {layer_io.META_KEY: layer_io.volume_metadata(volume, case=case)},
        }

    def _set_layer(self, name: str, data: np.ndarray, kind: str, kwargs: dict[str, Any]) -> Any:
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            for key in ("scale", "metadata"):
                setattr(layer, key, kwargs[key])
            return layer
        adder = self.viewer.add_labels if kind == "labels" else self.viewer.add_image
        return adder(data, **kwargs)

    def _add_map_layers(self, image: str, volume: Any, sdf: np.ndarray, uncertainty: np.ndarray) -> None:
        import math

        limit = float(np.max(np.abs(sdf))) or 1.0
        kwargs = self._layer_kwargs(volume, image + SDF_SUFFIX, image)
        sdf_layer = self._set_layer(image + SDF_SUFFIX, layer_io.volume_to_layer_data(sdf), "image", kwargs)
        sdf_layer.colormap = _sdf_colormap()
        sdf_layer.contrast_limits = (-limit, limit)
        sdf_layer.visible = False
        kwargs = self._layer_kwargs(volume, image + UNCERTAINTY_SUFFIX, image)
        u_layer = self._set_layer(
            image + UNCERTAINTY_SUFFIX, layer_io.volume_to_layer_data(uncertainty), "image", kwargs
        )
        u_layer.colormap = "inferno"
        u_layer.blending = "additive"
        u_layer.opacity = 0.8
        top = float(np.percentile(uncertainty, 99.9)) if uncertainty.size else 0.0
        floor = UNCERTAINTY_DISPLAY_FLOOR * math.log(2)  # near-certain voxels stay black (no tint)
        u_layer.contrast_limits = (floor, max(top, 2 * floor))

    def _set_segmentation(
        self, image: str, volume: Any, label: np.ndarray, *, baseline: np.ndarray | None
    ) -> None:
        name = image + SEGMENTATION_SUFFIX
        kwargs = self._layer_kwargs(volume, name, image)
        data = np.ascontiguousarray(layer_io.volume_to_layer_data(np.asarray(label, dtype=np.uint8)))
        layer = self._set_layer(name, data, "labels", kwargs)
        layer.opacity = 0.5
        if baseline is not None:
            self._baselines[name] = np.array(baseline, dtype=np.uint8, copy=True)
        self.viewer.layers.selection.active = layer

    def _toggle_disagreement(self, on: bool) -> None:
        try:
            layer = self.selected_image_layer()
        except UamcError:
            return
        name = layer.name + DISAGREEMENT_SUFFIX
        outcome = self._outcomes.get(layer.name)
        if not on:
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            return
        if outcome is None:
            self._info("segment the image first to see where the two heads disagree")
            return
        volume = layer_io.volume_from_layer(layer)
        kwargs = self._layer_kwargs(volume, name, layer.name)
        dis = self._set_layer(
            name, layer_io.volume_to_layer_data(outcome.result.disagreement), "image", kwargs
        )
        dis.colormap = "magma"
        dis.blending = "additive"
        dis.contrast_limits = (0.0, 1.0)

    # ------------------------------------------------------------------ regions
    def _show_regions(self, outcome: SegmentOutcome) -> None:
        self.regions_list.clear()
        if not outcome.regions:
            self.regions_list.addItem("no uncertain region above the threshold")
            return
        for region in outcome.regions:
            x, y, z = region.focus
            item = QListWidgetItem(
                f"#{region.rank}  {region.volume_ml * 1000:.0f} mm³  "
                f"Σu {region.summed_uncertainty:.1f}  slice {z}  (x {x}, y {y})"
            )
            item.setData(Qt.UserRole, region)
            self.regions_list.addItem(item)

    def _jump_to_region(self, item: QListWidgetItem) -> None:
        region = item.data(Qt.UserRole)
        if region is None:
            return
        try:
            layer = self.selected_image_layer()
        except UamcError:
            return
        shape = layer_io.layer_data_to_canonical(layer.data).shape
        displayed = layer_io.displayed_index(region.focus, shape)
        world = [index * scale + offset for index, scale, offset in zip(displayed, layer.scale, layer.translate)]
        self.jump_to(world)

    def jump_to(self, world: list[float]) -> None:
        """Move the slider to a world point's slice and centre the camera on it."""
        step = list(self.viewer.dims.point)
        step[-3:] = world
        self.viewer.dims.point = step
        camera = _camera(self.viewer)
        camera.center = tuple(world[-2:]) if self.viewer.dims.ndisplay == 2 else tuple(world)

    # ------------------------------------------------------------------ accept
    def _segmentation_layer(self) -> Any:
        layer = self.selected_image_layer()
        name = layer.name + SEGMENTATION_SUFFIX
        if name not in self.viewer.layers:
            raise UamcError(f"no '{name}' layer: segment {layer.name} first, or open a study case")
        return layer, self.viewer.layers[name]

    def accept(self) -> None:
        """Save the segmentation layer as the case's accepted label (through the study API)."""
        from napari_uamc.data.metrics import dice

        try:
            image_layer, seg_layer = self._segmentation_layer()
            if self.study is None:
                raise UamcError(
                    f"{image_layer.name} is not part of an open study: open a study, or create one "
                    "from the open layers (New study from layers…), then accept"
                )
            case = self._study_case_of(image_layer)
            if case is None:
                raise UamcError(f"{image_layer.name} is not an image of the study {self.study.root}")
            label = np.ascontiguousarray(layer_io.layer_data_to_canonical(seg_layer.data))
            path = self.study.accept(case, label)
        except UamcError as error:
            self._error(str(error), self.accept_status)
            return
        except OSError as error:  # pragma: no cover - the study turns these into StudyError
            self._error(f"could not save the label: {error}", self.accept_status)
            return
        message = f"accepted {case}: {path.name}"
        baseline = self._baselines.get(seg_layer.name)
        outcome = self._outcomes.get(image_layer.name)
        version = outcome.model_version if outcome else None
        if baseline is not None:
            score = dice(baseline != 0, label != 0)
            key = ACCEPT_DICE_PREFIX + (version or DEFAULT_VERSION_KEY)
            self.study.record_score(case, key, score)
            message += f"; the model's prediction had Dice {score:.3f} against it (honest score)"
        self.accept_status.setText(message)
        self._refresh_history()
        self._refresh_study()
        self._refresh_versions()

    def show_changes(self) -> None:
        """Add a layer showing what the person changed against the model's prediction."""
        try:
            image_layer, seg_layer = self._segmentation_layer()
        except UamcError as error:
            self._error(str(error), self.accept_status)
            return
        baseline = self._baselines.get(seg_layer.name)
        if baseline is None:
            self._info("no model prediction to compare with: segment first")
            return
        volume = layer_io.volume_from_layer(image_layer)
        current = layer_io.layer_data_to_canonical(seg_layer.data)
        changes = label_changes(baseline, current)
        name = image_layer.name + CHANGES_SUFFIX
        kwargs = self._layer_kwargs(volume, name, image_layer.name)
        shown = self._set_layer(name, np.ascontiguousarray(layer_io.volume_to_layer_data(changes)), "labels", kwargs)
        # a view, never a painting target: painting stays on the segmentation, which Accept saves
        shown.editable = False
        self.viewer.layers.selection.active = seg_layer
        added, removed = int((changes == 1).sum()), int((changes == 2).sum())
        self.accept_status.setText(f"changes: {added} voxels added (1), {removed} removed (2)")

    def _refresh_history(self) -> None:
        self.history_list.clear()
        if self.study is None or self.case is None:
            return
        for entry in reversed(self.study.history(self.case)):
            item = QListWidgetItem(f"{entry.time:%Y-%m-%d %H:%M:%S} UTC" + (f"  {entry.note}" if entry.note else ""))
            item.setData(Qt.UserRole, entry)
            self.history_list.addItem(item)

    def restore_selected(self) -> None:
        """Make the selected earlier label the accepted one again and show it."""
        item = self.history_list.currentItem()
        if item is None or self.study is None or self.case is None:
            self._info("select an earlier label first")
            return
        try:
            self.study.restore(self.case, item.data(Qt.UserRole))
            volume = self.study.read_image(self.case)
            restored = self.study.read_label(self.case)
        except UamcError as error:
            self._error(str(error), self.accept_status)
            return
        self._set_segmentation(self.case, volume, restored.array, baseline=None)
        self.accept_status.setText(f"restored the label of {self.case} from {item.text()}")
        self._refresh_history()

    # ------------------------------------------------------------------ fine-tune
    def _budget_unit_changed(self, unit: str) -> None:
        self.budget_spin.setValue(DEFAULT_FINETUNE_MINUTES if unit == "minutes" else DEFAULT_FINETUNE_ITERATIONS)

    def finetune(self) -> None:
        """Fine-tune the selected model on the study in a background worker."""
        from napari.qt.threading import create_worker

        if self._finetune_worker is not None:
            self._info("a fine-tune is already running")
            return
        if self.study is None:
            self._error("open a study first: fine-tuning uses its accepted and unaccepted cases", self.finetune_status)
            return
        if not self.study.labeled_cases():
            self._error("accept at least one label before fine-tuning", self.finetune_status)
            return
        model = self.selected_model()
        options: dict = {self.budget_unit.currentText(): self.budget_spin.value()}
        overrides = FINETUNE_METHODS[self.finetune_method.currentText()]
        if overrides is not None:
            options["overrides"] = dict(overrides)
        self._finetune_stop.clear()
        self.loss_curve.clear()
        self.finetune_progress.setValue(0)
        self.finetune_stage.setText("")
        minutes = options.get("minutes")
        self._finetune_budget_seconds = 60.0 * minutes if minutes else None
        self._finetune_first_step_at = None
        self.finetune_status.setText(f"fine-tuning {model.label} on {len(self.study.labeled_cases())} accepted cases…")
        try:
            model_path = model.resolve()
        except UamcError as error:
            self._error(str(error), self.finetune_status)
            return
        worker = create_worker(
            finetune_in_child,  # trains in a child process: see its docstring
            self.study.root,
            model_path=model_path,
            device=self.device_combo.currentText(),
            should_stop=self._finetune_stop.is_set,
            on_step=self._relay.finetune_step.emit,
            on_message=self._relay.finetune_message.emit,
            _start_thread=False,
            _ignore_errors=True,  # errors are shown by _on_worker_error
            **options,
        )
        worker.returned.connect(self._on_finetuned)
        worker.errored.connect(lambda error: self._on_worker_error(error, self.finetune_status))
        worker.finished.connect(self._on_finetune_finished)
        self._finetune_worker = worker
        self.finetune_button.setEnabled(False)
        self.finetune_stop_button.setEnabled(True)
        worker.start()

    def _on_finetune_step(self, report: Any) -> None:
        import time

        total = max(1, int(getattr(report, "total", 0) or 0))
        iteration = int(getattr(report, "iteration", 0))
        budget = self._finetune_budget_seconds
        eta = getattr(report, "eta_seconds", None)
        if budget:  # a minutes budget: the bar and the text follow the clock, not an iteration cap
            now = time.monotonic()
            if self._finetune_first_step_at is None:
                self._finetune_first_step_at = now
            elapsed = now - self._finetune_first_step_at
            self.finetune_progress.setMaximum(int(budget))
            self.finetune_progress.setValue(min(int(elapsed), int(budget)))
            left = eta if eta is not None else max(budget - elapsed, 0.0)
            progress = f"iteration {iteration}, {elapsed:.0f} s of {budget:.0f} s, about {left:.0f} s left"
        else:
            self.finetune_progress.setMaximum(total)
            self.finetune_progress.setValue(min(iteration, total))
            progress = f"iteration {iteration}/{total}" + (f", about {eta:.0f} s left" if eta is not None else "")
        losses = dict(getattr(report, "losses", {}) or {})
        self.loss_curve.add_point(iteration, losses)
        terms = "  ".join(f"{k} {v:.3f}" for k, v in losses.items() if v is not None)
        self.finetune_status.setText(f"{progress}<br>{terms}")

    def _on_finetune_message(self, text: str) -> None:
        self.finetune_stage.setText(text)

    def _on_finetuned(self, result: Any) -> None:
        state = "stopped early" if getattr(result, "stopped_early", False) else "done"
        self.finetune_status.setText(
            f"fine-tune {state}: new version <b>{result.version}</b> is now used for Segment"
        )
        if self.study is not None:
            self.study.refresh()
        self._refresh_models()
        self._refresh_study()
        if self.refresh_check.isChecked() and not getattr(result, "stopped_early", False):
            self._pending_refresh = True

    def refresh_uncertainty_ranking(self) -> None:
        """Re-segment the unaccepted cases with the current model to refresh "Next case"."""
        from napari.qt.threading import create_worker

        if self.study is None or self._finetune_worker is not None:
            return
        model = self.selected_model()
        self._finetune_stop.clear()
        self.finetune_status.setText(f"refreshing the uncertainty ranking with {model.label}…")
        worker = create_worker(
            refresh_ranking,
            self.study,
            model,
            mc_samples=self.mc_spin.value(),
            device=self.device_combo.currentText(),
            progress=self._relay.segment_progress.emit,
            should_stop=self._finetune_stop.is_set,
            _start_thread=False,
            _ignore_errors=True,  # errors are shown by _on_worker_error
        )
        worker.returned.connect(
            lambda cases: self.finetune_status.setText(
                f"uncertainty ranking refreshed on {len(cases)} cases with {model.label}"
            )
        )
        worker.errored.connect(lambda error: self._on_worker_error(error, self.finetune_status))
        worker.finished.connect(self._on_finetune_finished)
        worker.finished.connect(self._refresh_study)
        self._finetune_worker = worker
        self.finetune_button.setEnabled(False)
        self.finetune_stop_button.setEnabled(True)
        worker.start()

    def _on_finetune_finished(self) -> None:
        self._finetune_worker = None
        self.finetune_button.setEnabled(True)
        self.finetune_stop_button.setEnabled(False)
        if self._pending_refresh:
            self._pending_refresh = False
            self.refresh_uncertainty_ranking()

    def _refresh_versions(self) -> None:
        self.versions_list.clear()
        if self.study is None:
            return
        honest = honest_scores(self.study)
        current = self.study.current_model
        for version in reversed(self.study.model_versions()):
            info = _read_version_info(self.study, version)
            parts = [version + ("  (in use)" if version == current else "")]
            if info.parent:
                parts.append(f"from {info.parent}")
            if info.stopped_early:
                parts.append("stopped early")
            training = info.training_dice_mean
            if training is not None:
                parts.append(f"training Dice {training:.3f} (on its own training cases)")
            scores = honest.get(version, [])
            if scores:
                parts.append(f"honest Dice {np.mean(scores):.3f} on {len(scores)} later accepts")
            item = QListWidgetItem(", ".join(parts))
            item.setData(Qt.UserRole, version)
            self.versions_list.addItem(item)
        default_scores = honest.get(DEFAULT_VERSION_KEY, [])
        text = DEFAULT_MODEL_LABEL
        if default_scores:
            text += f", honest Dice {np.mean(default_scores):.3f} on {len(default_scores)} accepts"
        item = QListWidgetItem(text)
        item.setData(Qt.UserRole, None)
        self.versions_list.addItem(item)

    def use_selected_version(self) -> None:
        """Make the selected version the study's current model (rollback or forward)."""
        item = self.versions_list.currentItem()
        if item is None or self.study is None:
            self._info("select a version first")
            return
        self.study.current_model = item.data(Qt.UserRole)
        self._refresh_models()

    # ------------------------------------------------------------------ shutdown
    def _watch_window_close(self) -> None:
        window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        if window is not None:
            window.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        if event.type() == QEvent.Close:
            self.shutdown()
        return False

    def shutdown(self, timeout_ms: int = 60000) -> None:
        """Stop running work and wait for it, so no model or label is left half-written."""
        self._segment_stop.set()
        self._finetune_stop.set()
        workers = [w for w in (self._segment_worker, self._finetune_worker) if w is not None]
        for worker in workers:
            worker.quit()
        if workers:  # a class method of napari's workers: waits for every running one
            type(workers[0]).await_workers(msecs=timeout_ms)


def _camera(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def _read_version_info(study: Any, version: str) -> ModelVersionInfo:
    """The record of a model version (an empty one if its file is missing or unreadable)."""
    import json

    from napari_uamc.data.study.versions import ModelVersionInfo

    try:
        return ModelVersionInfo.from_json(json.loads(study.model_info_path(version).read_text()))
    except (OSError, ValueError):
        return ModelVersionInfo()


def honest_scores(study: Any) -> dict[str, list[float]]:
    """Per model version, the Dice of its predictions against labels accepted afterwards."""
    scores: dict[str, list[float]] = {}
    for case in study.cases():
        for key, value in study.scores(case).items():
            if key.startswith(ACCEPT_DICE_PREFIX) and isinstance(value, (int, float)):
                scores.setdefault(key[len(ACCEPT_DICE_PREFIX):], []).append(float(value))
    return scores
