"""bench_uncertainty_level: pooled precision, recall and F1 per level from per-scan counts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _bench():
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("_bench_uncertainty_level", BENCHMARKS / "bench_uncertainty_level.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pooled_scores_per_level():
    bench = _bench()
    levels = {f"{f:.2f}": {"marked": 0, "wrong": 0} for f in bench.FRACTIONS}
    levels["0.25"] = {"marked": 100, "wrong": 10}  # precision 0.10, recall 10/40
    levels["0.65"] = {"marked": 20, "wrong": 15}
    scans = {"a": {"errors": 20, "segmented": 50, "levels": levels},
             "b": {"errors": 20, "segmented": 50, "levels": levels}}
    text = bench.table(scans)
    assert "| 0.25 ln C = 0.173 nats | 0.10 | 0.50 | 0.17 | 2.00 |" in text  # pooled: 20 of 200 marked, 20 of 40 errors
    assert "| 0.65 ln C = 0.451 nats | 0.75 | 0.75 | 0.75 | 0.40 |" in text
