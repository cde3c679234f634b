"""A small live loss curve drawn with QPainter (no plotting library needed).

Where everything goes is computed by :func:`curve_layout`, a pure function of the widget's size,
the texts and their widths: the legend on top, the log-scale ticks on the left, the caption
below, and the plot in between, overlapping none of them (a clinician's review found the caption
drawn over the curves, no y scale and legend entries such as "dis").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from napari_uamc._napari.finetune_progress import LOSS_LABELS

#: Colours of the curves, by loss name (others use the last colour).
CURVE_COLOURS = {"total": "#f0f0f0", "seg": "#4fc3f7", "dis": "#81c784", "itc": "#ffb74d", "ctc": "#e57373"}
TEXT, GRID = "#9a9a9a", "#3d414a"
PAD, GAP, SWATCH, INSET = 6.0, 4.0, 12.0, 3.0
#: A rectangle on the widget: x, y, width, height.
Rect = tuple[float, float, float, float]


def intersects(a: Rect, b: Rect) -> bool:
    """Whether two rectangles share any area (touching edges do not count)."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def log_ticks(low: float, high: float) -> list[float]:
    """Labelled values of a log axis from ``low`` to ``high``: the powers of ten between them
    (every other one, or coarser, past five), or the two ends when fewer than two fall inside."""
    first, last = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    if last - first < 1:
        return [low, high]
    step = max(1, math.ceil((last - first + 1) / 5))
    return [10.0 ** k for k in range(first, last + 1, step)]


@dataclass(frozen=True)
class CurveLayout:
    """Where the parts of the loss curve go; see :func:`curve_layout`."""

    plot: Rect
    legend: list[tuple[str, Rect]]  # an entry's text and its rectangle (colour swatch + text)
    ticks: list[tuple[float, str, Rect]]  # value, label, the label's rectangle
    caption: tuple[str, Rect]
    low: float  # the loss at the plot's bottom edge (log scale)
    high: float  # ... and at its top edge

    def y(self, value: float) -> float:
        """The screen height of a loss: ``high`` at the plot's top, ``low`` at its bottom (3 px in)."""
        top, span = self.plot[1] + INSET, self.plot[3] - 2 * INSET
        return top + (math.log10(self.high) - math.log10(value)) / (math.log10(self.high) - math.log10(self.low)) * span


def curve_layout(width: float, height: float, labels: Sequence[str], low: float, high: float,
                 iterations: tuple[int, int], text_width: Callable[[str], float],
                 line_height: float) -> CurveLayout:
    """The loss curve's parts on a ``width`` x ``height`` widget: the legend (``labels``, in rows
    that wrap) at the top, the caption at the bottom, the y ticks of ``low`` .. ``high`` (losses,
    log scale) on the left, and the plot in the rest. No two parts overlap."""
    if high / low < 1.2:  # a flat curve: a little room above and below, ticks that do not collide
        low, high = low / 1.1, high * 1.1
    legend, x, y = [], PAD, PAD
    for label in labels:
        entry = SWATCH + GAP + text_width(label)
        if x > PAD and x + entry > width - PAD:
            x, y = PAD, y + line_height
        legend.append((label, (x, y, entry, line_height)))
        x += entry + 3 * GAP
    top = y + line_height + GAP + line_height / 2  # half a tick label fits above the plot
    caption_rect = (PAD, height - PAD - line_height, width - 2 * PAD, line_height)
    bottom = caption_rect[1] - GAP - line_height / 2
    values = log_ticks(low, high)
    texts = [f"{value:.2g}" for value in values]
    column = max(text_width(text) for text in texts)
    left = PAD + column + GAP
    plot = (left, top, max(1.0, width - PAD - left), max(1.0, bottom - top))
    shape = CurveLayout(plot, legend, [], ("", caption_rect), low, high)
    ticks = [(value, text, (PAD, shape.y(value) - line_height / 2, column, line_height))
             for value, text in zip(values, texts)]
    caption = f"loss (log scale) over iterations {iterations[0]} to {iterations[1]}"
    return CurveLayout(plot, legend, ticks, (caption, caption_rect), low, high)


class LossCurve(QWidget):
    """Loss per iteration on a log scale, one line per loss term, with a legend and a y scale."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(170)
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

    def legend_texts(self) -> list[str]:
        return [LOSS_LABELS.get(name, name) for name in self._series]

    def current_layout(self) -> CurveLayout | None:
        """Where the parts go at the widget's size (None: fewer than two points, nothing to plot)."""
        points = [p for values in self._series.values() for p in values]
        if len(points) < 2:
            return None
        metrics = QFontMetrics(self.font())
        return curve_layout(
            self.width(), self.height(), self.legend_texts(), min(p[1] for p in points), max(p[1] for p in points),
            (min(p[0] for p in points), max(p[0] for p in points)), metrics.horizontalAdvance, metrics.height(),
        )

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), QColor("#262930"))
        shape = self.current_layout()
        if shape is None:
            painter.setPen(QColor(TEXT))
            painter.drawText(self.rect(), Qt.AlignCenter, "loss curve appears while fine-tuning")
            return
        px, py, pw, ph = shape.plot
        for value, text, rect in shape.ticks:  # the y scale: a grid line and a label per tick
            painter.setPen(QColor(GRID))
            painter.drawLine(QPointF(px, shape.y(value)), QPointF(px + pw, shape.y(value)))
            painter.setPen(QColor(TEXT))
            painter.drawText(QRectF(*rect), Qt.AlignRight | Qt.AlignVCenter, text)
        painter.setPen(QColor(GRID))
        painter.drawRect(QRectF(*shape.plot))
        first = min(values[0][0] for values in self._series.values())
        last = max(max(values[-1][0] for values in self._series.values()), first + 1)
        painter.setClipRect(QRectF(*shape.plot))  # nothing drawn outside the plot's rectangle

        def to_screen(iteration: int, value: float) -> QPointF:
            return QPointF(px + (iteration - first) / (last - first) * pw, shape.y(value))

        for name, values in self._series.items():
            painter.setPen(QPen(QColor(CURVE_COLOURS.get(name, "#bdbdbd")), 1.5))
            path = QPainterPath(to_screen(*values[0]))
            for point in values[1:]:
                path.lineTo(to_screen(*point))
            painter.drawPath(path)
        painter.setClipping(False)
        for (label, (x, y, w, h)), name in zip(shape.legend, self._series):
            colour = QColor(CURVE_COLOURS.get(name, "#bdbdbd"))
            painter.setPen(QPen(colour, 2.0))
            painter.drawLine(QPointF(x, y + h / 2), QPointF(x + SWATCH, y + h / 2))
            painter.setPen(colour)
            painter.drawText(QRectF(x + SWATCH + GAP, y, w - SWATCH - GAP, h), Qt.AlignLeft | Qt.AlignVCenter, label)
        caption, rect = shape.caption
        painter.setPen(QColor(TEXT))
        painter.drawText(QRectF(*rect), Qt.AlignLeft | Qt.AlignVCenter, caption)
