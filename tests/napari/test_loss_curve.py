"""The fine-tune's loss curve: plain-word legend, a log y scale, and no text over the curves."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from napari_uamc._napari.loss_curve import LossCurve, curve_layout, intersects, log_ticks  # noqa: E402

TERMS = ["total", "segmentation", "distance map", "teacher consistency", "head consistency"]


def _parts(shape):
    return [rect for _text, rect in shape.legend] + [rect for _v, _t, rect in shape.ticks] + [shape.caption[1]]


def _assert_nothing_over_the_plot(shape, width, height):
    for rect in _parts(shape):
        assert not intersects(shape.plot, rect), (shape.plot, rect)
    for rect in [shape.plot, *_parts(shape)]:  # all inside the widget
        x, y, w, h = rect
        assert x >= 0 and y >= 0 and x + w <= width + 1e-6 and y + h <= height + 1e-6, rect
    assert shape.plot[2] > 50 and shape.plot[3] > 30  # room left for the curves


def test_intersects():
    assert intersects((0, 0, 10, 10), (5, 5, 10, 10))
    assert not intersects((0, 0, 10, 10), (10, 0, 5, 5))  # touching edges share no area
    assert not intersects((0, 0, 10, 10), (0, 12, 10, 10))


def test_log_ticks_are_the_decades_or_the_ends():
    assert log_ticks(0.005, 0.9) == pytest.approx([0.01, 0.1])
    assert log_ticks(0.033, 0.0876) == [0.033, 0.0876]  # no two decades inside: the ends
    assert log_ticks(1e-6, 10.0) == pytest.approx([1e-6, 1e-4, 1e-2, 1.0])  # at most five labels


@pytest.mark.parametrize("width", [260, 420, 800])
@pytest.mark.parametrize("losses", [(0.033, 0.0876), (0.004, 0.9), (0.2, 0.2)])
def test_the_plot_overlaps_neither_legend_nor_ticks_nor_caption(width, losses):
    """Before: the caption was drawn in the plot's bottom-right corner, over the curves."""
    shape = curve_layout(width, 170, TERMS, *losses, (1, 200), lambda text: 7.0 * len(text), 16.0)
    _assert_nothing_over_the_plot(shape, width, 170)
    assert "log scale" in shape.caption[0] and "1 to 200" in shape.caption[0]
    assert len(shape.ticks) >= 2 and all(text for _v, text, _r in shape.ticks)
    rows = {rect[1] for _text, rect in shape.legend}
    assert len(rows) > 1 if width < 400 else True  # the legend wraps rather than running off
    y_values = [shape.y(value) for value, _t, _r in shape.ticks]
    assert y_values == sorted(y_values, reverse=True)  # larger losses higher up
    assert all(shape.plot[1] - 1e-6 <= y <= shape.plot[1] + shape.plot[3] + 1e-6 for y in y_values)


@pytest.mark.gui
def test_the_widget_speaks_plain_words_and_keeps_its_texts_off_the_curves(qtbot):
    curve = LossCurve()
    qtbot.addWidget(curve)
    curve.resize(420, curve.minimumHeight())
    for iteration in range(1, 6):
        curve.add_point(iteration, {"total": 1.0 / iteration, "seg": 0.5 / iteration, "dis": 0.4 / iteration,
                                    "itc": 0.01 / iteration, "ctc": 0.02})
    assert curve.legend_texts() == TERMS  # before: "total", "seg", "dis", "itc", "ctc"
    shape = curve.current_layout()
    _assert_nothing_over_the_plot(shape, curve.width(), curve.height())
    assert [text for _v, text, _r in shape.ticks] == ["0.01", "0.1", "1"]  # losses 0.002 to 1
    assert not curve.grab().isNull()  # paints without error
    curve.clear()
    assert curve.current_layout() is None
