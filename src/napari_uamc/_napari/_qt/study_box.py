"""Study section: open or create a study, the case table (the uncertainty ranking), Open case and
Next case, and whether the ranking is refreshed when the model changes."""

from __future__ import annotations

from pathlib import Path

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QGroupBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_uamc._napari._qt.common import StatusLine, button, button_row
from napari_uamc._napari.session import Session
from napari_uamc._words import counted

NO_STUDY = "No study open: open a study folder or segment any image layer."
#: The case table shows at most this many rows (more scroll, a whole row at a time).
CASE_ROWS_SHOWN = 5


def shown_path(path: Path | str) -> str:
    """A folder as the panel shows it: under the home folder as ``~/...`` (as shells and file
    dialogs write it), elsewhere in full."""
    path, home = Path(path), Path.home()
    if home == Path(home.anchor) or not path.is_relative_to(home):
        return str(path)
    return str(Path("~") / path.relative_to(home))


class StudyBox(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Study", parent)
        self.session = session
        layout = QVBoxLayout(self)
        self.study_label = QLabel(NO_STUDY)
        self.study_label.setWordWrap(True)
        layout.addWidget(self.study_label)
        self.status = StatusLine(session, "study")
        layout.addWidget(self.status)
        self.open_study_button = button("Open study…", self._choose_study)
        self.create_study_button = button("New study from layers…", self._choose_new_study)
        layout.addLayout(button_row(self.open_study_button, self.create_study_button))
        self.case_table = table = QTableWidget(0, 3)
        table.setHorizontalHeaderLabels(["case", "status", "uncertainty"])
        table.horizontalHeaderItem(2).setToolTip(
            "The model's mean MC-dropout uncertainty over the whole volume (entropy in nats: 0 where it is "
            "sure everywhere, 0.69 for a coin toss between two classes everywhere: ln C for C classes). "
            "#1 is the unaccepted case it is least sure about, the one Next case opens first.")
        table.setSelectionBehavior(QAbstractItemView.SelectRows)
        table.setSelectionMode(QAbstractItemView.SingleSelection)
        table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        table.verticalHeader().setVisible(False)
        table.horizontalHeader().setSectionResizeMode(0, QHeaderView.Stretch)
        for column in (1, 2):
            table.horizontalHeader().setSectionResizeMode(column, QHeaderView.ResizeToContents)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # the case column stretches instead
        table.cellDoubleClicked.connect(lambda _row, _col: self.open_selected_case())
        layout.addWidget(table)
        self.open_case_button = button("Open case", self.open_selected_case)
        self.next_case_button = button("Next case", session.open_next_case,
                                       "Open the unaccepted case the model is least sure about (active learning)")
        layout.addLayout(button_row(self.open_case_button, self.next_case_button))
        tuning = session.finetuning  # the ranking Next case follows (it was in the Fine-tune section)
        self.refresh_check = QCheckBox("Refresh the case ranking when the model changes")
        self.refresh_check.setChecked(tuning.refresh_after)
        self.refresh_check.setToolTip("After adopting a version or picking another model, re-segment the "
                                      "unaccepted cases with it so 'Next case' uses its uncertainty scores")
        self.refresh_check.toggled.connect(lambda on: setattr(tuning, "refresh_after", on))
        layout.addWidget(self.refresh_check)
        session.study_changed.connect(self.refresh)
        session.case_changed.connect(self._case_changed)
        self._shown_study = None
        self.refresh()

    def _choose_study(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a study folder (MSD layout)")
        if folder:
            self.session.open_study(folder)

    def _choose_new_study(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for the new study (empty)")
        if folder:
            self.session.create_study_from_layers(folder)

    def open_selected_case(self) -> None:
        model = self.case_table.selectionModel()
        rows = model.selectedRows() if model is not None else []
        if not rows or self.session.study is None:
            self.session.notice.emit("select a case in the list first", "info")
            return
        self.session.open_case(self.case_table.item(rows[0].row(), 0).text())

    def _case_changed(self, case: str | None) -> None:
        """The selected row follows the open case (after Next case it stayed on the case left, so
        Open case reopened that one). Only when the open case changes: a row the person picked
        stays picked while the table refreshes for other reasons (scores, statuses)."""
        if case is None:  # leaving a case: the row picked (or the one left) stays until one opens
            return
        if self._row_of(case) is None:  # the table does not list it yet
            self.refresh()
        row = self._row_of(case)
        if row is not None:
            self.case_table.selectRow(row)
            self.case_table.scrollToItem(self.case_table.item(row, 0))

    def _row_of(self, case: str) -> int | None:
        table = self.case_table
        for row in range(table.rowCount()):
            item = table.item(row, 0)
            if item is not None and item.text() == case:
                return row
        return None

    def _fit_rows(self) -> None:
        """Make the table exactly its header and whole rows high (170 px cut the fifth row)."""
        table = self.case_table
        shown = min(max(table.rowCount(), 1), CASE_ROWS_SHOWN)
        header = table.horizontalHeader().sizeHint().height()
        table.setFixedHeight(header + shown * table.verticalHeader().defaultSectionSize() + 2 * table.frameWidth())

    def refresh(self) -> None:
        if self.session.study is not self._shown_study:  # another study: a row picked meant a case of the last
            self._shown_study = self.session.study
            self.case_table.selectionModel().clear()  # and the current row (Qt selects it when its row goes)
        self._fill()
        self._fit_rows()

    def _fill(self) -> None:
        study = self.session.study
        if study is None:
            self.study_label.setText(NO_STUDY)
            self.case_table.setRowCount(0)
            return
        infos = study.cases_info()
        accepted = sum(1 for info in infos if info.status == "accepted")
        self.study_label.setText(
            f"<b>{study.name}</b>: {counted(len(infos), 'case')}, {accepted} accepted<br>{shown_path(study.root)}")
        self.case_table.setRowCount(len(infos))
        scored = {info.name for info in infos if info.uncertainty is not None}
        rank = {name: index for index, name in enumerate(study.ranked_for_labeling(), start=1) if name in scored}
        for row, info in enumerate(infos):
            score = "" if info.uncertainty is None else f"{info.uncertainty:.3f}"
            if info.name in rank:
                score = f"#{rank[info.name]}  {score}"
            status = str(info.status.value if hasattr(info.status, "value") else info.status)
            if info.has_draft:
                status += " (draft)"
            for column, text in enumerate((info.name, status, score)):
                item = QTableWidgetItem(text)
                if column == 0 and info.name == self.session.case:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                self.case_table.setItem(row, column, item)
