"""Model versions section: each version's parent and scores, Use selected version (says what it did;
a version nobody adopted or discarded is offered instead)."""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtWidgets import (
    QGroupBox,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_uamc._napari._qt.common import StatusLine
from napari_uamc._napari.session import Session
from napari_uamc._napari.versions import version_rows

#: The version list grows to show this many rows whole (wrapped); more scroll.
ROWS_SHOWN = 5


class VersionsBox(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Model versions", parent)
        self.session = session
        layout = QVBoxLayout(self)
        hint = QLabel("Honest score = Dice against labels accepted later; training Dice is on the version's own "
                      "training cases.")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.versions_list = QListWidget()  # rows wrap, nothing is cut off on the right
        self.versions_list.setWordWrap(True)
        self.versions_list.setTextElideMode(Qt.ElideNone)
        self.versions_list.setResizeMode(QListView.Adjust)
        self.versions_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.versions_list.installEventFilter(self)
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
            item.setToolTip(text)
            self.versions_list.addItem(item)
        self._fit_rows()

    def _fit_rows(self) -> None:
        """As tall as its first :data:`ROWS_SHOWN` rows, wrapped at the list's width."""
        view = self.versions_list
        view.doItemsLayout()
        rows = sum(view.visualItemRect(view.item(i)).height() for i in range(min(view.count(), ROWS_SHOWN)))
        height = max(rows, view.fontMetrics().height()) + 2 * view.frameWidth() + 2
        if view.height() != height:
            view.setFixedHeight(height)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        if obj is self.versions_list and event.type() == QEvent.Resize:
            self._fit_rows()  # a new width wraps the rows differently
        return False

    def use_selected_version(self) -> None:
        item = self.versions_list.currentItem()
        if item is None or self.session.study is None:
            self.session.notice.emit("select a version first", "info")
            return
        self.session.finetuning.pick(item.data(Qt.UserRole))  # an unreviewed version is offered
