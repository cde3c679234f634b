"""bench_uncertainty_level: pooled precision, recall and F1 per level from per-scan counts."""

from __future__ import annotations

from _helpers import load_benchmark


def test_pooled_scores_per_level():
    bench = load_benchmark("bench_uncertainty_level")
    levels = {f"{f:.2f}": {"marked": 0, "wrong": 0} for f in bench.FRACTIONS}
    levels["0.25"] = {"marked": 100, "wrong": 10}  # precision 0.10, recall 10/40
    levels["0.65"] = {"marked": 20, "wrong": 15}
    scans = {"a": {"errors": 20, "segmented": 50, "levels": levels},
             "b": {"errors": 20, "segmented": 50, "levels": levels}}
    text = bench.table(scans)
    assert "| 0.25 ln C = 0.173 nats | 0.10 | 0.50 | 0.17 | 2.00 |" in text  # pooled: 20 of 200 marked, 20 of 40 errors
    assert "| 0.65 ln C = 0.451 nats | 0.75 | 0.75 | 0.75 | 0.40 |" in text
