"""Where-to-correct section: the ranked uncertain regions (a click goes there), head disagreement."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_uamc._napari.session import Session
from napari_uamc._words import counted, format_ml

NO_REGION = "no uncertain region above the threshold"
#: The list shows at most this many rows (more scroll, a whole row at a time).
ROWS_SHOWN = 8


class RegionsBox(QGroupBox):
    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Where to correct", parent)
        self.session = session
        layout = QVBoxLayout(self)
        hint = QLabel(
            "Regions where the model is least sure, most uncertain first (summed uncertainty; the band "
            "around the structure comes in pieces of 2 cm). Click one to go to its slice. The position is "
            "the region's most uncertain voxel in mm, as napari's status bar shows it under the pointer "
            "(slice, row, column axes)."
        )
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.regions_list = QListWidget()
        self.regions_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # it would cover a row
        self.regions_list.setVerticalScrollMode(QAbstractItemView.ScrollPerItem)
        self.regions_list.setUniformItemSizes(True)
        self.regions_list.itemClicked.connect(self._jump)
        layout.addWidget(self.regions_list)
        self.disagreement_check = QCheckBox("Show head disagreement layer")
        self.disagreement_check.setToolTip("Where the segmentation head and the SDF head disagree (no sampling needed)")
        self.disagreement_check.toggled.connect(session.set_disagreement)
        layout.addWidget(self.disagreement_check)
        self.disagreement_note = QLabel()  # why the layer cannot be shown, in plain words
        self.disagreement_note.setWordWrap(True)
        layout.addWidget(self.disagreement_note)
        session.regions_changed.connect(self._show)
        session.case_changed.connect(lambda _case: self._show([]))
        self._show([])

    def row_height(self) -> int:
        """The height of one row of the list (its items are single lines of the same font)."""
        rows = self.regions_list
        return rows.sizeHintForRow(0) if rows.count() else rows.fontMetrics().height() + 2

    def _fit_rows(self) -> None:
        """Make the list exactly whole rows high (a fixed 150 px cut the last row mid-height)."""
        rows = self.regions_list
        shown = min(max(rows.count(), 1), ROWS_SHOWN)
        rows.setFixedHeight(shown * self.row_height() + 2 * rows.frameWidth())

    def _show(self, regions: list) -> None:
        self._fill(regions)
        self._fit_rows()

    def _fill(self, regions: list) -> None:
        self.regions_list.clear()
        note = self.session.disagreement_note()
        self.disagreement_note.setText(f"<i>{note}</i>" if note else "")
        self.disagreement_note.setVisible(bool(note))
        outcome = self.session.outcomes.get(self.session.image_name)
        if not regions:
            if outcome is not None:
                self.regions_list.addItem(NO_REGION)
            return
        for region in regions:
            where = self.session.displayed_focus(region)
            world = self.session.focus_world(region)
            at = (f"slice {where[0]}  at {', '.join(f'{v:.1f}' for v in world)} mm"
                  if where and world else "")
            mean = region.summed_uncertainty / max(1, region.voxels)
            item = QListWidgetItem(f"#{region.rank}  {format_ml(region.volume_ml)}  mean {mean:.2f} nats  {at}")
            item.setToolTip(
                f"{counted(region.voxels, 'voxel')}, {format_ml(region.volume_ml)}; uncertainty mean {mean:.3f}, "
                f"peak {region.peak_uncertainty:.3f} nats; ranked by summed uncertainty "
                f"({region.summed_uncertainty:.0f} nats over its voxels)"
                + (f"; voxel [slice, row, column] {list(where)}" if where else "")
            )
            item.setData(Qt.UserRole, region)
            self.regions_list.addItem(item)

    def _jump(self, item: QListWidgetItem) -> None:
        region = item.data(Qt.UserRole)
        if region is not None:
            self.session.jump_to_region(region)
