"""bench_gui_latency: its step driver measures stalls where they happen, and its report reads."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from _helpers import load_benchmark

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_gui_latency")


def test_steps_are_timed_and_a_planted_stall_lands_in_its_step(bench, qapp):
    state = {"done": False}

    def quick() -> None:
        state["done"] = True

    def stall() -> None:
        time.sleep(0.35)  # the GUI thread blocked: napari would not answer for 350 ms
        state["stalled"] = True

    rows = bench.run_steps([("quick", quick, lambda: state["done"]),
                            ("stall", stall, lambda: state.get("stalled", False))])
    quick_row, stall_row, total = rows
    assert [r["step"] for r in rows] == ["quick", "stall", "all"]
    assert quick_row["worst_gap_ms"] < 300
    assert stall_row["worst_gap_ms"] >= 340
    assert total["stalls"] >= 1 and total["worst_gap_ms"] >= 340


def test_report_names_each_step_and_the_goal(bench):
    rows = [{"step": "open another case", "seconds": 1.2, "worst_gap_ms": 150.0},
            {"step": "all", "seconds": 1.2, "worst_gap_ms": 150.0, "median_gap_ms": 10.0, "stalls": 0, "ticks": 99}]
    text = bench.render({"study": "s", "napari_start_s": 3.0, "load": "1.00", "loop": rows})
    assert "| open another case | 1.2 | 150 |" in text
    assert "0 gaps over 200 ms of 99 ticks" in text


def test_napari_alone_is_measured_step_by_step_and_reported(bench, tmp_path):
    import json
    import subprocess

    out = tmp_path / "floor.json"  # in a child process, as the benchmark runs it: a bare napari
    # viewer registers napari's plugins, which must not leak into this test session
    subprocess.run([sys.executable, str(BENCHMARKS / "bench_gui_latency.py"), "--floor-child", str(out),
                    "--floor-shape", "4", "16", "16"], check=True, timeout=300)

    rows = json.loads(out.read_text())["rows"]
    steps = [row["step"] for row in rows]
    assert steps[:4] == ["first image layer", "second image layer", "third image layer", "first labels layer"]
    assert steps[-1] == "all" and "remove one layer" in steps
    assert all(row["worst_gap_ms"] > 0 for row in rows)  # a gap between two timer ticks
    loop = [{"step": "all", "seconds": 1.0, "worst_gap_ms": 50.0, "median_gap_ms": 10.0, "stalls": 0, "ticks": 9}]
    text = bench.render({"study": "s", "napari_start_s": 3.0, "load": "1.00", "loop": loop, "floor": rows})
    assert "napari alone, no plugin" in text and "| first labels layer |" in text
