"""The benchmark scripts' smoke modes run, cache per run, resume, and write only their sections."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _helpers import load_benchmark, requires_la2018, save_tiny_model
from napari_uamc.engine.config import TrainConfig

OTHER_SECTION = "<!-- BEGIN inference -->\nkept as it is\n<!-- END inference -->"


@pytest.fixture(scope="module")
def common():
    return load_benchmark("_common")


def _run_files(cache: Path, bench: str) -> dict[str, float]:
    """Cached run files of ``bench`` and their modification times."""
    return {p.name: p.stat().st_mtime_ns for p in (cache / bench).glob("*/*.json")
            if p.name != "config.json"}


# ------------------------------------------------------------------------------- _common
def test_write_section_replaces_its_own_section_and_keeps_others(common, tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Title\n\n{OTHER_SECTION}\n")
    common.write_section(doc, "loop", "first")
    common.write_section(doc, "loop", "second")
    text = doc.read_text()
    assert OTHER_SECTION in text and text.startswith("# Title")
    assert "second" in text and "first" not in text
    assert text.count("<!-- BEGIN loop -->") == 1


def test_write_section_creates_the_file_and_refuses_a_broken_section(common, tmp_path):
    doc = tmp_path / "new" / "benchmarks.md"
    common.write_section(doc, "ablation", "table")
    assert "<!-- BEGIN ablation -->\ntable\n<!-- END ablation -->" in doc.read_text()
    doc.write_text("<!-- BEGIN ablation -->\nno end marker\n")
    with pytest.raises(ValueError, match="no <!-- END ablation -->"):
        common.write_section(doc, "ablation", "table")
    with pytest.raises(ValueError, match="section name"):
        common.write_section(doc, "bad name", "table")


def test_result_cache_keys_by_config_and_ignores_damaged_files(common, tmp_path):
    cache = common.ResultCache(tmp_path, "bench", {"iterations": 300})
    other = common.ResultCache(tmp_path, "bench", {"iterations": 301})
    assert cache.folder != other.folder
    assert cache.get("row1_seed0") is None
    cache.put("row1_seed0", {"dice": 0.9})
    assert cache.get("row1_seed0") == {"dice": 0.9}
    assert json.loads((cache.folder / "config.json").read_text()) == {"iterations": 300}
    cache.path("row2_seed0").write_text("{half a fi")
    assert cache.get("row2_seed0") is None
    assert set(cache.runs()) == {"row1_seed0"}
    with pytest.raises(ValueError, match="run name"):
        cache.put("../escape", {})


def test_built_once_builds_once_when_two_benchmarks_ask_at_the_same_time(common, tmp_path):
    import threading

    folder, calls, threads = tmp_path / "study", [], []

    def build(target: Path) -> None:  # while the first build runs, a second benchmark asks
        calls.append(target)
        target.mkdir()
        if not threads:
            threads.append(threading.Thread(target=common.built_once, args=(folder, {"n": 1}, build)))
            threads[0].start()
            threads[0].join(timeout=0.5)  # it waits on the lock (without one it would build now)
        (target / "case.txt").write_text("whole")

    common.built_once(folder, {"n": 1}, build)
    threads[0].join(timeout=60)
    assert not threads[0].is_alive()
    assert len(calls) == 1 and (folder / "case.txt").read_text() == "whole"
    assert json.loads((tmp_path / "study.complete.json").read_text()) == {"n": 1}


def test_numbers_and_tables(common):
    assert common.mean_sd([1.0, 3.0, None]) == (2.0, pytest.approx(2 ** 0.5), 2)
    assert common.mean_sd([None]) == (None, None, 0)
    assert common.fmt_mean_sd([0.5, 0.7], 100) == "60.0 ± 14.1"
    assert common.fmt_mean_sd([0.5], 100) == "50.0"
    assert common.fmt_mean_sd([], 100) == "n/a"
    assert common.fmt_range([3, 1, 2], 1, 0) == "1-3"
    table = common.markdown_table(["a", "b"], [[1, "x|y"]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| 1 | x\\|y |"]
    assert common.fmt_seconds(3725) == "1 h 02 min"


# ---------------------------------------------------------------------------- the scripts
def test_ablation_smoke_runs_caches_resumes_and_writes(tmp_path):
    ablation = load_benchmark("bench_ablation")
    cache, doc = tmp_path / "cache", tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{OTHER_SECTION}\n")
    assert ablation.main(["--smoke", "--cache-dir", str(cache), "--write", str(doc)]) == 0
    runs = _run_files(cache, "ablation")
    assert set(runs) == {f"row{r}_seed0.json" for r in ablation.ROW_NAMES}
    result = json.loads(next((cache / "ablation").glob("*/row6_seed0.json")).read_text())
    assert result["terms"] == ["ctc", "dis", "itc", "seg"] and result["iterations"] == 2
    assert set(result["metrics"]["mean"]) == {"dice", "jaccard", "hd95", "asd"}
    text = doc.read_text()
    assert OTHER_SECTION in text and "<!-- BEGIN ablation-smoke -->" in text
    assert "(6) all terms (UG-MCL)" in text and "--smoke" in text

    assert ablation.main(["--smoke", "--cache-dir", str(cache), "--rows", "1,6"]) == 0
    assert _run_files(cache, "ablation") == runs  # resumed: nothing retrained

    # another configuration gets its own section, whose title says what changed
    assert ablation.main(["--smoke", "--cache-dir", str(cache), "--rows", "1", "--lr-step", "5",
                          "--write", str(doc)]) == 0
    text = doc.read_text()
    assert "<!-- BEGIN ablation-smoke -->" in text
    assert "(paper Tables 1 and 3), changed: lr_step 5" in text


def test_trace_repeats_the_ablation_run_and_scores_three_models(tmp_path):
    ablation, trace = load_benchmark("bench_ablation"), load_benchmark("trace_ablation_run")
    cache = tmp_path / "cache"
    assert ablation.main(["--smoke", "--cache-dir", str(cache), "--rows", "3"]) == 0
    assert trace.main(["--smoke", "--cache-dir", str(cache), "--row", "3", "--seed", "0"]) == 0
    cached = json.loads(next((cache / "ablation").glob("*/row3_seed0.json")).read_text())
    traced = json.loads(next((cache / "ablation-trace").glob("*/row3_seed0_every1.json")).read_text())
    points = traced["points"]
    assert [p["iteration"] for p in points] == [1, 2]
    for point in points:
        for model in ("student", "teacher", "student_bn_recalibrated"):
            assert 0.0 <= point[model] <= 1.0
    # same data, config and seed: the traced student is the cached run's model. Not bit for bit:
    # bfloat16 convolutions on a CPU are not bitwise reproducible across runs (oneDNN's reduction
    # order follows the thread schedule; the 4th digit of the Dice differs between processes), so
    # the check is the same model up to that noise, far below what a different run would give.
    assert points[-1]["student"] == pytest.approx(cached["metrics"]["mean"]["dice"], abs=0.02)
    assert cached["iterations"] == points[-1]["iteration"]

    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{OTHER_SECTION}\n")
    assert trace.main(["--smoke", "--cache-dir", str(cache), "--cached", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert OTHER_SECTION in text and "<!-- BEGIN ablation-trace-smoke -->" in text
    assert f"| 2 | {points[-1]['loss']['total']:.3f} | {points[-1]['student']:.3f} |" in text
    with pytest.raises(SystemExit, match="no cached trace"):
        trace.main(["--smoke", "--cache-dir", str(cache), "--cached", "--row", "6"])


def test_ablation_rejects_unknown_rows(tmp_path):
    ablation = load_benchmark("bench_ablation")
    with pytest.raises(SystemExit, match="unknown row"):
        ablation.main(["--smoke", "--cache-dir", str(tmp_path), "--rows", "1,7"])


def test_loop_smoke_runs_caches_resumes_and_writes(tmp_path):
    loop = load_benchmark("bench_loop")
    cache, doc = tmp_path / "cache", tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\n{OTHER_SECTION}\n")
    assert loop.main(["--smoke", "--cache-dir", str(cache), "--write", str(doc)]) == 0
    runs = _run_files(cache, "loop")
    assert "before_seed0.json" in runs
    assert "ugmcl-ema-bn_k1_random_noreplay_seed0.json" in runs
    replayed = json.loads(next((cache / "loop").glob("*/sup-ema-bn_k1_uncertainty_replay_seed0.json")).read_text())
    assert len(replayed["replay"]) == 1 and len(replayed["corrected"]) == 1
    assert set(replayed["dice_after"]) == set(replayed["dice_before"])
    assert replayed["corrected"][0] not in replayed["dice_after"]  # scored only uncorrected cases
    before = json.loads(next((cache / "loop").glob("*/before_seed0.json")).read_text())
    ranked = sorted(before["uncertainty_B"], key=lambda n: -before["uncertainty_B"][n])
    assert replayed["corrected"] == ranked[:1]  # the most uncertain case is corrected first
    text = doc.read_text()
    assert OTHER_SECTION in text and "<!-- BEGIN loop-smoke -->" in text
    assert "supervised + EMA + BN recalibration (baseline; a cold start's default)" in text

    assert loop.main(["--smoke", "--cache-dir", str(cache), "--cached"]) == 0
    assert _run_files(cache, "loop") == runs

    # a replaced starting model: --cached reports the runs of the model they were measured with
    measured = json.loads(next((cache / "loop").glob("*/config.json")).read_text())
    now = loop.Setup(**{**measured, "shape": tuple(measured["shape"]), "model_sha": "replaced"})
    assert loop._latest_cached_setup(cache, now).model_sha == measured["model_sha"]


def test_loop_rejects_k_that_leaves_nothing_to_score(tmp_path):
    loop = load_benchmark("bench_loop")
    with pytest.raises(SystemExit, match="no uncorrected case"):
        loop.main(["--smoke", "--cache-dir", str(tmp_path), "--k", "3"])
    with pytest.raises(SystemExit, match="unknown variant"):
        loop.main(["--smoke", "--cache-dir", str(tmp_path), "--variants", "nope"])


def test_loop_real_studies_never_touch_the_warm_start_scans_nor_the_forgetting_scans(tmp_path):
    loop = load_benchmark("bench_loop")
    names = [f"case{i:02d}" for i in range(80)]
    (tmp_path / "train.list").write_text("\n".join(names) + "\n")
    taken: set[str] = set()
    for seed in range(6):
        study = loop.real_study_cases(seed, 10, data=tmp_path)
        assert len(study) == 10 and not set(study) & (set(names[:16]) | set(names[-4:]) | taken)
        taken |= set(study)
    with pytest.raises(SystemExit, match="not enough LA 2018 scans"):
        loop.real_study_cases(6, 10, data=tmp_path)


def test_loop_held_out_studies_come_from_the_packaged_models_validation_split_only(tmp_path):
    loop = load_benchmark("bench_loop")
    names = [f"case{i:02d}" for i in range(80)]
    (tmp_path / "train.list").write_text("\n".join(names) + "\n")
    held_out = names[-16:]  # la2018-val16: the packaged model trained on the first 64
    for seed in range(3):
        study, rest = loop.held_out_split(seed, 10, data=tmp_path)
        assert len(study) == 10 and len(set(study)) == 10 and sorted(study + rest) == held_out
        assert study[0] == held_out[6 * seed]  # each seed's study starts 6 scans later, wrapping round
    assert loop.held_out_split(0, 10, data=tmp_path)[0] != loop.held_out_split(1, 10, data=tmp_path)[0]
    with pytest.raises(SystemExit, match="leaves none of the 16 held-out scans"):
        loop.held_out_split(0, 16, data=tmp_path)
    with pytest.raises(SystemExit, match="--studies applies to --real"):
        loop.main(["--smoke", "--studies", "held-out", "--cache-dir", str(tmp_path / "cache")])


@requires_la2018
def test_loop_on_real_scans_runs_a_cold_start_and_writes_its_section(tmp_path):
    loop = load_benchmark("bench_loop")
    model = save_tiny_model(tmp_path / "tiny.pt", spacing=(2.0, 2.0, 2.0), synthetic_only=True,
                            config=TrainConfig(width=2, patch=(16, 16, 16), mc_samples=2).to_dict())
    cache, doc = tmp_path / "cache", tmp_path / "benchmarks.md"
    argv = ["--real", "--model", str(model), "--iterations", "2", "--cases", "3", "--k", "1",
            "--seeds", "0", "--variants", "sup-ema-bn,sup-ema-bn-lr001", "--cache-dir", str(cache), "--threads", "1"]
    assert loop.main([*argv, "--write", str(doc)]) == 0
    run = json.loads(next((cache / "loop").glob("*/sup-ema-bn_k1_uncertainty_noreplay_seed0.json")).read_text())
    fixed = json.loads(next((cache / "loop").glob("*/sup-ema-bn-lr001_k1_uncertainty_noreplay_seed0.json")).read_text())
    assert fixed["learning_rate"] == 0.001 and run["learning_rate"] == 0.01  # a random tiny model: cold
    study = loop.real_study_cases(0, 3)
    assert sorted([*run["corrected"], *run["dice_after"]]) == sorted(study)
    # a cold start's forgetting: its own domain, phantoms (no real scan)
    assert len(run["dice_A_after"]) == 4 and not set(run["dice_A_after"]) & set(loop.real_case_names())
    assert run["seconds_outside_steps"] >= 0 and run["load_average"]
    text = doc.read_text()
    assert "<!-- BEGIN loop-la2018-cold-2its -->" in text and "real LA 2018 scans" in text  # a budget of its own
    with pytest.raises(SystemExit, match="with the experiment real-replay, not replay"):
        loop.main([*argv, "--experiments", "replay"])
    # the engine's replay: a cold start replays labeled phantoms of its own domain, given as a folder
    assert loop.main([*argv, "--experiments", "real-replay", "--variants", "sup-ema-bn"]) == 0
    replayed = json.loads(next((cache / "loop").glob("*/sup-ema-bn_k*_uncertainty_replay_seed0.json")).read_text())
    assert len(replayed["replay"]) == 2 and all(name.startswith("phantom_A_") for name in replayed["replay"])
    with pytest.raises(SystemExit, match="no run planned"):
        loop.main([*argv, "--experiments", "order", "--variants", "sup-ema-bn-nocold"])
    # the null control: no study case accepted, 2 cases of the model's own domain accepted instead,
    # every study case scored; the findings report it apart from the runs that corrected cases
    assert loop.main([*argv, "--experiments", "real-null", "--variants", "sup-ema-bn", "--write", str(doc)]) == 0
    null = json.loads(next((cache / "loop").glob("*/sup-ema-bn_k0_uncertainty_replay_seed0.json")).read_text())
    assert null["corrected"] == [] and sorted(null["dice_after"]) == sorted(study)
    assert len(null["replay"]) == 2 and all(name.startswith("phantom_A_") for name in null["replay"])
    assert "the null control (k = 0), every study case one by one: 3 case scores over 1 runs" in doc.read_text()


# ------------------------------------------------------------------------ report_table3_la
def _table3_run(folder: Path, row: str, seed: int, dice: float, consistency: float = 0.1, **config) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    result = {"row": row, "seconds_this_run": 120.0, "spacing": [1.25] * 3,
              "config": {**TrainConfig(seed=seed, consistency=consistency, **config).to_dict(), "width": 8},
              "validation": {"mean": {"dice": dice, "jaccard": dice - 0.1, "hd95_mm": 9.0, "asd_mm": 2.0}}}
    (folder / f"{row}.json").write_text(json.dumps(result))


def test_table3_report_pairs_rows_by_seed_and_writes_its_section(tmp_path):
    report = load_benchmark("report_table3_la")
    runs = tmp_path / "runs"
    for seed, (low, semi, high) in {0: (0.70, 0.76, 0.80), 1: (0.80, 0.79, 0.90)}.items():
        for row, dice in (("lower", low), ("ugmcl", semi), ("upper", high)):
            _table3_run(runs / f"seed{seed}", row, seed, dice)
    doc = tmp_path / "benchmarks.md"
    doc.write_text(OTHER_SECTION + "\n")
    assert report.main([str(runs), "--name", "test", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert OTHER_SECTION in text
    assert "<!-- BEGIN table3-la2018-test -->" in text
    # gains +6.0 and -1.0 points: mean +2.5, better in 1 of 2; means 0.75 / 0.775 / 0.85: 25 %
    assert "+2.5 Dice points (+6.0, -1.0; better in 1 of 2)" in text
    assert "seeds 0, 1): 25 %" in text
    assert report.main([str(tmp_path / "empty")]) == 2
    # another UG-MCL row (lambda_max 1), paired with the same bounds: named by its lambda_max
    variant = tmp_path / "l1"
    _table3_run(variant / "seed0", "ugmcl", 0, 0.78, consistency=1.0)
    _table3_run(variant / "seed1", "ugmcl", 1, 0.86, consistency=1.0)
    assert report.main([str(runs), "--variant", str(variant), "--name", "test", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert "| UG-MCL, 16 labeled + 48 unlabeled, lambda_max 1 | 2 | 82.0 ± 5.7 | 78.0, 86.0 |" in text
    assert "lambda_max 1 minus the lower bound, paired by seed: +7.0 Dice points (+8.0, +6.0" in text
    assert text.count("seeds 0, 1): ") == 2 and "seeds 0, 1): 70 %" in text  # (0.82 - 0.75) / (0.85 - 0.75)
    # a row trained against whole-case teacher targets says so
    cached = tmp_path / "cached"
    _table3_run(cached / "seed0", "ugmcl", 0, 0.74, consistency=1.0, teacher_refresh=25, teacher_start=300,
                target_gate=True)
    assert report.main([str(runs), "--variant", str(cached), "--name", "test", "--write", str(doc)]) == 0
    assert ("| UG-MCL, 16 labeled + 48 unlabeled, lambda_max 1, whole-case teacher targets from step 300, one "
            "scan refreshed every 25 steps, gated | 1 | 74.0 |") in doc.read_text()


def test_step_cost_reports_each_fine_tune_against_the_supervised_step(tmp_path, capsys):
    bench = load_benchmark("bench_step_cost")
    config = TrainConfig(width=2, patch=(16, 16, 16), mc_samples=2, precision="float32").to_dict()
    model = save_tiny_model(tmp_path / "tiny.pt", config=config)
    assert bench.main(["--model", str(model), "--shape", "20", "18", "16", "--steps", "1", "--threads", "1",
                       "--variants", "sup-ema-bn,ugmcl-cached-l1-ema-bn"]) == 0
    out = capsys.readouterr().out
    assert "| supervised + EMA + BN recalibration (baseline; a cold start's default) |" in out and "| 1.00x |" in out
    cached = next(line for line in out.splitlines() if "whole-case teacher targets" in line)
    supervised = next(line for line in out.splitlines() if "(baseline; a cold start's default)" in line)
    # the targets' own seconds are reported (a number; rounded to 0.1 s a tiny model's may read 0.0)
    assert float(cached.split("|")[4]) >= 0 and supervised.split("|")[4].strip() == "-"
    with pytest.raises(SystemExit):
        bench.main(["--model", str(model), "--shape", "20", "18", "16", "--variants", "nonsense"])


def test_step_cost_times_the_network_alone_per_batch_size(tmp_path, capsys):
    bench = load_benchmark("bench_step_cost")
    config = TrainConfig(width=2, patch=(16, 16, 16), mc_samples=2, precision="float32").to_dict()
    model = save_tiny_model(tmp_path / "tiny.pt", config=config)
    assert bench.main(["--model", str(model), "--shape", "20", "18", "16", "--threads", "1",
                       "--variants", "", "--batch-sizes", "2,4"]) == 0
    out = capsys.readouterr().out
    assert "whole-case" not in out  # no fine-tune was asked for
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| 2 |") or line.startswith("| 4 |")]
    assert [row[1].strip() for row in rows] == ["2", "4"] and rows[0][4].strip() == "1.00x"
    assert float(rows[1][2]) > 0 and float(rows[1][3]) == pytest.approx(float(rows[1][2]) / 4, abs=1e-3)


def test_semi_finetune_report_pairs_each_budget_with_the_default_by_seed(tmp_path):
    report = load_benchmark("report_semi_finetune")
    cases = {"a": 0.5, "b": 0.7}

    def cache(name: str, iterations: int, variant: str, after: dict[int, float], corrected=("c", "d"),
              **setup) -> None:
        folder = tmp_path / "loop" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"data": "la2018", "start": "warm", "iterations": iterations,
                                                        **setup}))
        for seed, gain in after.items():
            run = {"variant": variant, "seed": seed, "corrected": list(corrected), "dice_before": cases,
                   "dice_after": {c: v + gain for c, v in cases.items()}, "dice_A_before": {"x": 0.8},
                   "dice_A_after": {"x": 0.78}, "seconds_per_iteration": 0.5}
            (folder / f"{variant}_k2_uncertainty_noreplay_seed{seed}.json").write_text(json.dumps(run))

    cache("one", 280, "sup-ema-bn", {0: 0.0, 1: 0.01, 2: -0.01})
    cache("two", 216, "ugmcl-cached-l1-ema-bn", {0: 0.05, 1: 0.0, 2: 0.03})
    cache("three", 40, "ugmcl-cached-l1-ema-bn", {0: -0.5})  # another budget: never mixed in
    cache("four", 216, "ugmcl-cached-l1-ema-bn", {0: -0.5}, studies="held-out")  # other studies: never mixed in
    replayed = {"variant": "ugmcl-cached-l1-ema-bn", "seed": 0, "corrected": ["c", "d"], "replay": ["r1", "r2"],
                "dice_before": cases, "dice_after": {c: v - 0.5 for c, v in cases.items()},
                "dice_A_before": {"x": 0.8}, "dice_A_after": {"x": 0.8}, "seconds_per_iteration": 0.5}
    (tmp_path / "loop" / "two" / "ugmcl-cached-l1-ema-bn_k2_uncertainty_replay_seed0.json").write_text(
        json.dumps(replayed))  # a replay run: a start of its own (warm-replay), never mixed in
    doc = tmp_path / "benchmarks.md"
    assert report.main(["--cache-dir", str(tmp_path / "loop"), "--budget", "warm:sup-ema-bn=280",
                        "--budget", "warm:ugmcl-cached-l1-ema-bn=216", "--write", str(doc)]) == 0
    text = doc.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| UG-MCL, whole-case"))
    assert "| 216 iterations | 0, 1, 2 |" in row and "+0.027 (2 of 3)" in row  # (0.05 - 0) + (0 - 0.01) + (0.03 + 0.01)
    assert "goal (+0.03, 2 of 3 seeds) NOT met" in text and "source domain moved -0.020" in text
    # another section of the same document, with its own heading; the first one stays
    assert report.main(["--cache-dir", str(tmp_path / "loop"), "--budget", "warm:sup-ema-bn=280",
                        "--section", "levers", "--title", "Levers", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert "<!-- BEGIN levers -->\n## Levers" in text and f"<!-- BEGIN {report.SECTION} -->" in text
    with pytest.raises(SystemExit):
        report.main(["--cache-dir", str(tmp_path / "loop"), "--budget", "warm:nonsense=3"])
    # a run that corrected other cases than the default's (its ranking moved) is not paired with it
    cache("five", 230, "copypaste-ema-bn", {0: 0.1, 1: 0.02}, corrected=("c", "e"))
    assert report.main(["--cache-dir", str(tmp_path / "loop"), "--budget", "warm:sup-ema-bn=280",
                        "--budget", "warm:copypaste-ema-bn=230", "--write", str(doc)]) == 0
    text = doc.read_text()
    assert "Not paired with the default in seed(s) 0, 1: the runs corrected different cases" in text
    assert "| copy-paste" in text and "Against the default, paired by seed" not in text.split("## Levers")[0]


def test_teacher_target_trace_scores_a_target_against_the_expert_label():
    import math
    from types import SimpleNamespace

    import numpy as np

    trace = load_benchmark("trace_teacher_targets")
    truth = np.zeros((4, 4, 2), np.uint8)
    truth[:2] = 1  # 16 foreground voxels
    foreground = truth.astype(np.float16).copy()
    foreground[0, 0, 0] = 0  # the target misses one voxel ...
    headroom = np.full(truth.shape, math.log(2), np.float16)
    headroom[0, 0, 0] = 0  # ... where it is unsure
    maps = SimpleNamespace(probabilities=np.stack([1 - foreground, foreground]), headroom=headroom, trusted=True)
    targets = SimpleNamespace(maps=[maps], cfg=TrainConfig())
    quality = trace.target_quality(targets, 0, truth)
    assert quality["trusted"] == pytest.approx(31 / 32)
    assert quality["dice"] == pytest.approx(2 * 15 / (15 + 16))
    assert quality["trusted_accuracy"] == 1.0 and quality["trusted_foreground_recall"] == pytest.approx(15 / 16)
    assert quality["gate_kept"] is True
    # the table says how many targets the gate kept and refused, and how good each kind was
    refused = {**quality, "case": "b", "dice": 0.0, "gate_kept": False}
    text = trace.render({"start": "cold", "variant": "v", "seed": 0, "iterations": 9,
                         "refreshes": [{**quality, "step": 150, "case": "a"}, {**refused, "step": 150}]})
    row = next(line for line in text.splitlines() if line.startswith("| all |"))
    assert f"| 1: {quality['dice']:.3f} | 1: 0.000 |" in row
