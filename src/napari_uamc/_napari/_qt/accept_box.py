"""Accept section: Accept label, Show my changes, earlier labels and the draft, Restore."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_uamc._napari._qt.common import StatusLine, button, button_row
from napari_uamc._napari.session import Session


class AcceptBox(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Accept", parent)
        self.session = session
        layout = QVBoxLayout(self)
        self.accept_button = button("Accept label", session.accept,
                                    "Save the segmentation layer as this case's label (earlier ones are kept)")
        self.changes_button = button("Show my changes", session.show_changes)
        layout.addLayout(button_row(self.accept_button, self.changes_button))
        self.status = StatusLine(session, "accept")
        layout.addWidget(self.status)
        layout.addWidget(QLabel("Earlier labels of this case:"))
        self.history_list = QListWidget()
        self.history_list.setMaximumHeight(90)
        layout.addWidget(self.history_list)
        self.restore_button = QPushButton("Restore selected label")
        self.restore_button.setToolTip("An earlier label becomes the accepted one again; "
                                       "the draft comes back on screen (not accepted)")
        self.restore_button.clicked.connect(self.restore_selected)
        self.restore_button.setEnabled(False)  # enabled while an earlier label or the draft is selected
        layout.addWidget(self.restore_button)
        self.history_list.currentItemChanged.connect(lambda *_: self._enable_restore())
        session.history_changed.connect(self._show)

    def _show(self, rows: list) -> None:
        self.history_list.clear()
        for text, entry in rows:
            item = QListWidgetItem(text)
            item.setData(Qt.UserRole, entry)
            self.history_list.addItem(item)
        self._enable_restore()

    def _enable_restore(self) -> None:
        self.restore_button.setEnabled(self.history_list.currentItem() is not None)

    def restore_selected(self) -> None:
        item = self.history_list.currentItem()
        if item is None or self.session.study is None or self.session.case is None:
            self.session.notice.emit("select an earlier label first", "info")
            return
        self.session.corrections.restore(item.data(Qt.UserRole), item.text())
