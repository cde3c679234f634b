"""A small live loss curve drawn with QPainter (no plotting library needed)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

#: Colours of the curves, by loss name (others use the last colour).
CURVE_COLOURS = {"total": "#f0f0f0", "seg": "#4fc3f7", "dis": "#81c784", "itc": "#ffb74d", "ctc": "#e57373"}


class LossCurve(QWidget):
    """Loss per iteration on a log scale, one line per loss term, with a legend."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self._series: dict[str, list[tuple[int, float]]] = {}

    def clear(self) -> None:
        self._series.clear()
        self.update()

    def add_point(self, iteration: int, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            if value is not None and math.isfinite(value) and value > 0:
                self._series.setdefault(name, []).append((iteration, float(value)))
        self.update()

    def series(self, name: str) -> list[tuple[int, float]]:
        return list(self._series.get(name, []))

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), QColor("#262930"))
        points = [p for values in self._series.values() for p in values]
        if len(points) < 2:
            painter.setPen(QColor("#9a9a9a"))
            painter.drawText(self.rect(), Qt.AlignCenter, "loss curve appears while fine-tuning")
            return
        margin = 6
        width = self.width() - 2 * margin
        height = self.height() - 2 * margin - 14
        x_min = min(p[0] for p in points)
        x_max = max(max(p[0] for p in points), x_min + 1)
        logs = [math.log10(p[1]) for p in points]
        y_min, y_max = min(logs), max(max(logs), min(logs) + 1e-3)

        def to_screen(iteration: int, value: float) -> QPointF:
            x = margin + (iteration - x_min) / (x_max - x_min) * width
            y = margin + 14 + (y_max - math.log10(value)) / (y_max - y_min) * height
            return QPointF(x, y)

        legend_x = margin
        for name, values in self._series.items():
            colour = QColor(CURVE_COLOURS.get(name, "#bdbdbd"))
            painter.setPen(QPen(colour, 1.5))
            path = QPainterPath(to_screen(*values[0]))
            for point in values[1:]:
                path.lineTo(to_screen(*point))
            painter.drawPath(path)
            painter.drawText(int(legend_x), margin + 10, name)
            legend_x += 8 * len(name) + 14
        painter.setPen(QColor("#9a9a9a"))
        painter.drawText(self.rect().adjusted(0, 0, -margin, -2), Qt.AlignRight | Qt.AlignBottom,
                         f"it {x_max}  loss {10 ** y_min:.3g}-{10 ** y_max:.3g} (log)")
