"""Model versions section: each version's parent and scores, Use selected version (says what it did;
a version nobody adopted or discarded is offered instead)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGroupBox, QLabel, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

from napari_uamc._napari._qt.common import StatusLine
from napari_uamc._napari.session import Session
from napari_uamc._napari.versions import version_rows


class VersionsBox(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Model versions", parent)
        self.session = session
        layout = QVBoxLayout(self)
        hint = QLabel("Honest score = Dice against labels accepted later; training Dice is on the version's own "
                      "training cases.")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.versions_list = QListWidget()
        self.versions_list.setMaximumHeight(110)
        layout.addWidget(self.versions_list)
        self.use_button = QPushButton("Use selected version")
        self.use_button.setToolTip("Segment and fine-tune from this version from now on (roll back or forward); "
                                   "the same choice as the Segment box's Model")
        self.use_button.clicked.connect(self.use_selected_version)
        layout.addWidget(self.use_button)
        self.status = StatusLine(session, "versions")
        layout.addWidget(self.status)
        session.models_changed.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        self.versions_list.clear()
        for text, version in version_rows(self.session.study):
            item = QListWidgetItem(text)
            item.setData(Qt.UserRole, version)
            self.versions_list.addItem(item)

    def use_selected_version(self) -> None:
        item = self.versions_list.currentItem()
        if item is None or self.session.study is None:
            self.session.notice.emit("select a version first", "info")
            return
        self.session.finetuning.pick(item.data(Qt.UserRole))  # an unreviewed version is offered
