"""The CLI's progress bar: its own estimate, or the caller's when the caller knows better."""

from __future__ import annotations

import io

from napari_uamc.cli import _progress
from napari_uamc.cli._progress import ProgressBar


def test_the_bar_shows_the_callers_time_left_when_given(monkeypatch):
    monkeypatch.setattr(_progress.time, "perf_counter", lambda: 1000.0)  # a clock that stands still
    stream = io.StringIO()
    bar = ProgressBar(180, "finetune", stream=stream, log_interval=0.0)
    bar.start -= 60.0  # a minute went on reading and the teacher's targets before the first step
    bar.update(10, "iter 1", eta=170.0)
    line = stream.getvalue().splitlines()[-1]
    assert "10/180" in line and "2:50 left" in line  # not 0:00: the budget counts the steps only
    bar.update(10, "iter 1")  # without it: its own estimate from the time since it was made
    assert "17:00 left" in stream.getvalue().splitlines()[-1]
