"""Semi-supervised effectiveness on phantoms: a small replica of the paper's Tables 1 and 3.

Per seed: a training study of domain-A phantoms with 20 % labeled (4 labeled + 16 unlabeled by
default) and a separate test study (8 cases, another phantom seed). Rows: the paper's ablation
rows (1)-(6) as METHOD.md section 3 maps them to loss terms, plus supervised training on all the
training cases labeled (the upper bound). Each model is trained from scratch and scored on the
test study (Dice, Jaccard, HD95 and ASD in mm, deterministic sliding-window prediction); the
table gives the mean over seeds and the standard deviation between seeds.

Results are cached per row and seed (``.bench-cache/ablation/<config key>/``); a rerun resumes.

    python benchmarks/bench_ablation.py                      # the whole table, 5 seeds (about 1.5 h on 2 cores)
    python benchmarks/bench_ablation.py --rows 1,6 --seeds 0 # a subset
    python benchmarks/bench_ablation.py --cached --write     # tables from the cache, into docs/
    python benchmarks/bench_ablation.py --paper-config --device cuda --max-minutes 2
    python benchmarks/bench_ablation.py --smoke              # seconds; what CI runs
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from napari_uamc.engine.config import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

BENCH = "ablation"
UPPER = "upper"
ROW_NAMES = ("1", "2", "3", "4", "5", "6", UPPER)
ROW_LABELS = {
    "1": "(1) seg: supervised, labeled cases only",
    "2": "(2) seg + dis",
    "3": "(3) seg + itc (UA-MT-like)",
    "4": "(4) seg + dis + itc",
    "5": "(5) seg + dis + ctc (DTC)",
    "6": "(6) all terms (UG-MCL)",
    UPPER: "upper bound: seg, all training cases labeled",
}
#: The paper's Table 1 Dice (%) on LA with 16 labeled (row 1 = V-Net; upper = all 80 labeled).
PAPER_DICE = {"1": 86.03, "2": 87.88, "3": 88.68, "4": 89.15, "5": 89.42, "6": 90.16, UPPER: 91.14}
#: The paper's schedule: lr x0.1 every 2500 steps of 6000; a shorter run keeps the absolute step, so
#: a run under 2500 steps stays at lr 0.01 throughout, as the paper's first 2500 steps do (measured:
#: compressing the schedule to 2500/6000 of a 300-step run left row 1 at 73 % and the upper bound at
#: 77 % Dice; 400 steps at a constant 0.01 gave 87 % and 92 %).
PAPER_ITERATIONS, PAPER_LR_STEP = 6000, 2500
#: Phantom seeds of the training and test studies are these plus the run's seed.
TRAIN_DATA_SEED, TEST_DATA_SEED = 1000, 2000
#: Steps between progress lines.
PRINT_EVERY = 50


@dataclass(frozen=True)
class Setup:
    """Everything that changes the results (the cache key)."""

    shape: tuple[int, int, int] = (64, 64, 32)
    patch: tuple[int, int, int] = (48, 48, 32)
    width: int = 8
    iterations: int = 400
    labeled: int = 4
    unlabeled: int = 16
    test_cases: int = 8
    mc_samples: int = 8
    batch_size: int = 4
    labeled_batch_size: int = 2
    consistency: float = 0.1
    consistency_rampup: int | None = None
    lr_step: int = PAPER_LR_STEP
    precision: str = "auto"
    device: str = "cpu"
    max_minutes: float | None = None
    domain: str = "A"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, Setup] = {
    "default": Setup(),
    "smoke": Setup(shape=(32, 32, 32), patch=(32, 32, 16), width=2, iterations=2, labeled=2,
                   unlabeled=2, test_cases=1, mc_samples=2),
    "paper": Setup(shape=(128, 128, 96), patch=(112, 112, 80), width=16, iterations=PAPER_ITERATIONS),
}
SMOKE_SEEDS = (0,)
#: Five seeds: with three, the spread between seeds hid whether any row differs (docs/benchmarks.md).
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


# ----------------------------------------------------------------------------------- one run
def _data(cache_root: Path, setup: Setup, seed: int) -> tuple[Path, Path]:
    """The training and test phantom studies of ``seed`` (written once, shared by all rows)."""
    shape = "x".join(map(str, setup.shape))
    base = cache_root / BENCH / "data" / f"{setup.domain}_{shape}_{setup.labeled + setup.unlabeled}_{setup.test_cases}"
    train = common.phantom_study(base / f"train_seed{seed}", cases=setup.labeled + setup.unlabeled,
                                 seed=TRAIN_DATA_SEED + seed, shape=setup.shape, domain=setup.domain)
    test = common.phantom_study(base / f"test_seed{seed}", cases=setup.test_cases,
                                seed=TEST_DATA_SEED + seed, shape=setup.shape, domain=setup.domain)
    return train, test


def _train_config(setup: Setup, row: str, seed: int) -> TrainConfig:
    from napari_uamc.engine.config import TrainConfig, ablation_terms, method_terms

    upper = row == UPPER
    return TrainConfig(
        terms=method_terms("supervised") if upper else ablation_terms(int(row)),
        iterations=setup.iterations, lr_step=setup.lr_step, patch=setup.patch, width=setup.width,
        batch_size=setup.batch_size,
        # the upper bound fills the whole batch with labeled patches
        labeled_batch_size=setup.batch_size if upper else setup.labeled_batch_size,
        mc_samples=setup.mc_samples, consistency=setup.consistency,
        consistency_rampup=setup.consistency_rampup, precision=setup.precision, seed=seed,
    )


def evaluate(model, meta, test_study: Path, device: str) -> dict[str, Any]:
    """Metrics (mm) of the model's deterministic prediction on every test case."""
    from napari_uamc.data.metrics import compute_metrics, summarize
    from napari_uamc.data.study import Study
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    study = Study.open(test_study)
    config = InferenceConfig(mc_samples=0, device=device)
    per_case = {}
    for name in study.cases():
        volume = study.read_image(name)
        truth = study.read_ground_truth(name)
        label = segment_volume(model, meta, volume, config).label
        per_case[name] = compute_metrics(label, truth.array, volume.spacing)
    summary = summarize(per_case)
    return {
        "mean": summary["mean"],
        "undefined": summary["undefined"],
        "cases": {name: m.as_dict("mm") for name, m in per_case.items()},
    }


class RunParts(NamedTuple):
    """What one run trains and scores with: its trainer, data split and studies."""

    trainer: Any
    split: Any
    unlabeled: list
    train_dir: Path
    test_dir: Path


def prepare_run(setup: Setup, row: str, seed: int, cache_root: Path) -> RunParts:
    """The data and the untrained :class:`Trainer` of row ``row`` with ``seed`` (used by the trace too)."""
    from napari_uamc.engine.dataset import load_cases_from_folder
    from napari_uamc.engine.training import Trainer

    train_dir, test_dir = _data(cache_root, setup, seed)
    split = load_cases_from_folder(train_dir, labeled=None if row == UPPER else setup.labeled)
    unlabeled = [] if row == UPPER else split.unlabeled
    trainer = Trainer(_train_config(setup, row, seed), split.labeled, unlabeled, device=setup.device,
                      time_budget=None if setup.max_minutes is None else 60.0 * setup.max_minutes)
    return RunParts(trainer, split, unlabeled, train_dir, test_dir)


def run_one(setup: Setup, row: str, seed: int, cache_root: Path) -> dict[str, Any]:
    """Train row ``row`` with ``seed`` from scratch and score it on the test study."""
    clock = common.Stopwatch()
    trainer, split, unlabeled, train_dir, test_dir = prepare_run(setup, row, seed, cache_root)
    load_start = common.load_average()
    cfg = trainer.cfg
    tail: list[Any] = []
    for report in trainer.steps():
        tail = (tail + [report])[-PRINT_EVERY:]
        if report.iteration % PRINT_EVERY == 0 or report.iteration == cfg.iterations:
            print(f"    row {row} seed {seed}: {report.iteration}/{cfg.iterations} "
                  f"loss {report.losses.get('total', float('nan')):.4f} "
                  f"{report.seconds_per_iteration:.2f} s/it", flush=True)
    train_seconds = trainer.seconds
    meta = trainer.build_meta(spacing=split.spacing, trained_on=str(train_dir), synthetic_only=True)
    scores = evaluate(trainer.student, meta, test_dir, setup.device)
    last = tail[-1] if tail else None
    return {
        "row": row, "seed": seed, "terms": sorted(trainer.terms),
        "labeled": len(split.labeled), "unlabeled": len(unlabeled),
        "iterations": trainer.iteration, "planned_iterations": cfg.iterations,
        "stopped_early": trainer.stopped_early,
        "train_seconds": round(train_seconds, 1), "seconds": round(clock.seconds, 1),
        "seconds_per_iteration": round(train_seconds / max(trainer.iteration, 1), 3),
        "device": str(trainer.device), "precision": str(trainer.dtype).removeprefix("torch."),
        "load_average": [load_start, common.load_average()],
        "final": None if last is None else {
            "losses_mean_of_last_steps": {
                k: round(sum(r.losses.get(k, 0.0) for r in tail) / len(tail), 5) for k in last.losses
            },
            "consistency_weight": last.consistency_weight, "threshold": last.threshold,
            "mask_fraction": last.mask_fraction, "lr": last.lr,
        },
        "metrics": scores, "finished": common.utc_now(),
    }


# ---------------------------------------------------------------------------------- reporting
def _metric(results: list[dict[str, Any]], name: str) -> list[float | None]:
    return [r["metrics"]["mean"][name] for r in results]


def build_report(setup: Setup, cache: common.ResultCache, rows: list[str], seeds: list[int]) -> tuple[str, str]:
    """(table, findings) in markdown from the cached runs."""
    found = cache.runs()
    by_row = {row: [found[f"row{row}_seed{s}"] for s in seeds if f"row{row}_seed{s}" in found
                    and "metrics" in found[f"row{row}_seed{s}"]] for row in rows}
    table_rows = []
    for row in rows:
        results = by_row[row]
        undefined = sum(r["metrics"]["undefined"]["hd95"] for r in results)
        table_rows.append([
            ROW_LABELS[row],
            len(results),
            common.fmt_mean_sd(_metric(results, "dice"), 100),
            _median(_metric(results, "dice"), 100),
            " ".join(f"{100 * r['metrics']['mean']['dice']:.0f}" for r in results),
            common.fmt_mean_sd(_metric(results, "jaccard"), 100),
            common.fmt_mean_sd(_metric(results, "hd95"), 1, 2) + (f" ({undefined} n/a)" if undefined else ""),
            common.fmt_mean_sd(_metric(results, "asd"), 1, 2),
            f"{PAPER_DICE[row]:.2f}",
            common.fmt_range([r["iterations"] for r in results], 1, 0),
            common.fmt_range([r["seconds_per_iteration"] for r in results], 1, 2),
            common.fmt_range([r["seconds"] / 60 for r in results], 1, 1),
        ])
    table = common.markdown_table(
        ["row", "seeds", "Dice %", "median Dice %", "Dice % per seed", "Jaccard %", "HD95 mm", "ASD mm", "paper Dice %",
         "iterations",
         "s/it", "minutes per run"], table_rows)
    return table, _findings(by_row, seeds, found)


def _median(values: list[float | None], scale: float) -> str:
    known = [v for v in values if v is not None]
    return f"{scale * statistics.median(known):.1f}" if known else "n/a"


def _paired(by_row: dict[str, list[dict]], a: str, b: str) -> list[float]:
    """Per-seed Dice differences a - b (seeds where both ran)."""
    dice_a = {r["seed"]: r["metrics"]["mean"]["dice"] for r in by_row.get(a, [])}
    dice_b = {r["seed"]: r["metrics"]["mean"]["dice"] for r in by_row.get(b, [])}
    return [dice_a[s] - dice_b[s] for s in sorted(set(dice_a) & set(dice_b))
            if dice_a[s] is not None and dice_b[s] is not None]


def _findings(by_row: dict[str, list[dict]], seeds: list[int], found: dict[str, dict]) -> str:
    lines = []
    for row in ("2", "3", "4", "5", "6"):
        diffs = _paired(by_row, row, "1")
        if diffs:
            mean = sum(diffs) / len(diffs)
            wins = sum(d > 0 for d in diffs)
            lines.append(f"- {ROW_LABELS[row]} minus (1), paired by seed: {mean * 100:+.1f} Dice points "
                         f"(per seed {', '.join(f'{d * 100:+.1f}' for d in diffs)}; better in {wins} of "
                         f"{len(diffs)} seeds).")
    low = common.mean_sd(_metric(by_row.get("1", []), "dice"))[0]
    full = common.mean_sd(_metric(by_row.get("6", []), "dice"))[0]
    high = common.mean_sd(_metric(by_row.get(UPPER, []), "dice"))[0]
    if None not in (low, full, high):
        gap = high - low  # type: ignore[operator]
        if gap > 0:
            lines.append(f"- UG-MCL closes {100 * (full - low) / gap:.0f} % of the gap between the "  # type: ignore[operator]
                         f"lower bound (1) and the upper bound ({low * 100:.1f} -> {high * 100:.1f} Dice %).")
        else:
            lines.append(f"- No gap to close: the lower bound ({low * 100:.1f}) is not below the upper "
                         f"bound ({high * 100:.1f} Dice %).")
    masks = [r["final"]["mask_fraction"] for r in by_row.get("6", []) if r.get("final")]
    weights = [r["final"]["consistency_weight"] for r in by_row.get("6", []) if r.get("final")]
    if masks and None not in masks:
        lines.append(f"- UG-MCL at the last step: consistency weight {common.fmt_range(weights, 1, 3)}, "
                     f"uncertainty mask keeps {common.fmt_range(masks, 100, 0)} % of the voxels.")
    failed = [f"{name}: {r['error']}" for name, r in found.items() if "error" in r]
    stopped = [name for name, r in found.items() if r.get("stopped_early")]
    if stopped:
        lines.append(f"- Stopped by the time limit before the planned iterations: {', '.join(stopped)}.")
    if failed:
        lines.append("- Failed runs: " + "; ".join(failed))
    return "\n".join(lines) if lines else "- No finished runs in the cache yet."


def document(setup: Setup, preset: str, cache: common.ResultCache, rows: list[str], seeds: list[int],
             machine: dict[str, Any], command: str) -> str:
    table, findings = build_report(setup, cache, rows, seeds)
    found = cache.runs()
    compute = sum(r.get("seconds", 0.0) for r in found.values())
    loads = [v for r in found.values() for v in r.get("load_average", []) if v is not None]
    precision = sorted({r.get("precision", "?") for r in found.values() if "precision" in r})
    commands = sorted({r["command"] for r in found.values() if r.get("command")}) or [command]
    machines = {common.describe_machine(r["machine"]) for r in found.values() if r.get("machine")}
    machine_text = "; ".join(sorted(machines)) if machines else common.describe_machine(machine)
    shape, patch = "x".join(map(str, setup.shape)), "x".join(map(str, setup.patch))
    n_train = setup.labeled + setup.unlabeled
    schedule = "constant here" if setup.lr_step >= setup.iterations else "the paper's step"
    ramp = "the whole run" if setup.consistency_rampup is None else f"{setup.consistency_rampup} steps"
    limit = "" if setup.max_minutes is None else f", training stopped after {setup.max_minutes:g} min"
    base = dataclasses.replace(PRESETS[preset], device=setup.device)
    changed = {k: v for k, v in setup.to_dict().items() if base.to_dict()[k] != v}
    title = "## Semi-supervised ablation on phantoms (paper Tables 1 and 3)"
    if changed:
        title += ", changed: " + ", ".join(f"{k} {v}" for k, v in changed.items())
    lines = [
        title,
        "",
        f"Written by `benchmarks/bench_ablation.py` ({preset} configuration, cache key `{cache.key}`), "
        f"{common.utc_now()}.",
        "",
        f"- Measured by: {', '.join(f'`{c}`' for c in commands)}. Written by: `{command}`.",
        f"- Machine: {machine_text}. Load average during the runs: {common.fmt_range(loads, 1, 1)} "
        "(other jobs shared the CPU).",
        f"- Data per seed s: a training study of {n_train} domain-{setup.domain} phantoms {shape} "
        f"(phantom seed {TRAIN_DATA_SEED}+s), the first {setup.labeled} labeled "
        f"({100 * setup.labeled / n_train:.0f} %), the rest unlabeled; a test study of "
        f"{setup.test_cases} phantoms (phantom seed {TEST_DATA_SEED}+s). Seeds: "
        f"{', '.join(map(str, seeds))}; s also seeds the training.",
        f"- Training from scratch: width {setup.width}, patch {patch}, {setup.iterations} iterations, "
        f"batch {setup.batch_size} with {setup.labeled_batch_size} labeled (rows 1-2 use only the "
        f"labeled part; the upper bound {setup.batch_size} labeled), SGD lr 0.01 x0.1 every "
        f"{setup.lr_step} steps ({schedule}), T = {setup.mc_samples}, consistency "
        f"{setup.consistency} ramped over {ramp}, precision {', '.join(precision) or setup.precision}, "
        f"device {setup.device}{limit}.",
        "- Scoring: the deterministic sliding-window prediction (overlap 0.5, no largest-component "
        "step) against the test study's ground truth, metrics in mm; the table gives the mean of the "
        "per-seed means ± the standard deviation between seeds.",
        f"- Compute time of the cached runs: {common.fmt_seconds(compute)} (the sum of their wall times).",
        "",
        table,
        "",
        "Findings (computed from the numbers above):",
        "",
        findings,
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ command
def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--smoke", action="store_true", help="tiny shapes, 2 iterations, 1 seed (seconds)")
    preset.add_argument("--paper-config", action="store_true",
                        help="the paper's width 16, patch 112x112x80, 6000 iterations (for a GPU)")
    parser.add_argument("--rows", default=",".join(ROW_NAMES),
                        help=f"rows to run, comma-separated, from {','.join(ROW_NAMES)} (default all)")
    parser.add_argument("--seeds", help="comma-separated seeds (default 0,1,2,3,4; smoke: 0)")
    parser.add_argument("--iterations", type=int, help="override the iterations of the configuration")
    parser.add_argument("--width", type=int, help="override the V-Net width")
    parser.add_argument("--patch", type=int, nargs=3, metavar=("X", "Y", "Z"), help="override the patch")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("X", "Y", "Z"), help="override the phantom shape")
    parser.add_argument("--consistency", type=float, help="override lambda_max (paper 0.1)")
    parser.add_argument("--rampup", type=int, help="consistency ramp length in steps (default: the run)")
    parser.add_argument("--lr-step", type=int,
                        help=f"steps between lr x0.1 decays (default {PAPER_LR_STEP}, the paper's)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (default: torch's, one per core; use 1 on a busy machine)")
    parser.add_argument("--max-minutes", type=float,
                        help="stop each run's training after this many minutes (times a long configuration)")
    parser.add_argument("--cache-dir", type=Path, default=common.DEFAULT_CACHE_DIR)
    parser.add_argument("--cached", action="store_true", help="run nothing; report what the cache holds")
    parser.add_argument("--write", nargs="?", const=common.DEFAULT_DOC, type=Path, metavar="DOC",
                        help=f"write the section into DOC (default {common.DEFAULT_DOC.relative_to(common.REPO_ROOT)})")
    return parser.parse_args(argv)


def _setup_from_args(args: argparse.Namespace) -> tuple[str, Setup]:
    preset = "smoke" if args.smoke else "paper" if args.paper_config else "default"
    changes: dict[str, Any] = {"device": args.device, "precision": args.precision,
                               "max_minutes": args.max_minutes}
    for name in ("iterations", "width", "consistency"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.lr_step is not None:
        changes["lr_step"] = args.lr_step
    if args.rampup is not None:
        changes["consistency_rampup"] = args.rampup
    if args.patch:
        changes["patch"] = tuple(args.patch)
    if args.shape:
        changes["shape"] = tuple(args.shape)
    return preset, dataclasses.replace(PRESETS[preset], **changes)


def _section_name(preset: str, setup: Setup) -> str:
    """``ablation`` for the standard table; other configurations get their own section."""
    if setup == dataclasses.replace(PRESETS[preset], device=setup.device):
        name = BENCH if preset == "default" else f"{BENCH}-{preset}"
        return name if setup.device == "cpu" else f"{name}-{setup.device.split(':')[0]}"
    return f"{BENCH}-{common.config_key(setup.to_dict())}"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    preset, setup = _setup_from_args(args)
    rows = [r.strip().lower() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROW_NAMES]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; choose from {','.join(ROW_NAMES)}")
    seeds = ([int(s) for s in args.seeds.split(",")] if args.seeds
             else list(SMOKE_SEEDS if preset == "smoke" else DEFAULT_SEEDS))
    for row in rows:  # fail on a bad configuration before any run starts
        _train_config(setup, row, seeds[0] if seeds else 0)

    common.set_threads(args.threads if args.threads is not None else (1 if preset == "smoke" else None))
    cache = common.ResultCache(args.cache_dir, BENCH, setup.to_dict())
    machine = common.machine_info(setup.device)
    command = common.command_line([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    clock = common.Stopwatch()
    print(f"ablation ({preset}): cache {cache.folder}", flush=True)
    if not args.cached:
        for seed in seeds:  # seed-major: a finished seed gives a whole comparison
            for row in rows:
                run = f"row{row}_seed{seed}"
                cached = cache.get(run)
                if cached is not None and "metrics" in cached:
                    continue
                print(f"  {run}: training", flush=True)
                try:
                    result = run_one(setup, row, seed, args.cache_dir)
                except KeyboardInterrupt:
                    print("interrupted; finished runs are cached", flush=True)
                    return 130
                except Exception as error:  # recorded so that the report says what failed
                    traceback.print_exc()
                    cache.put(run, {"row": row, "seed": seed, "error": f"{type(error).__name__}: {error}",
                                    "finished": common.utc_now()})
                    continue
                result["machine"] = machine
                result["command"] = command
                cache.put(run, result)
                mean = result["metrics"]["mean"]
                print(f"  {run}: Dice {mean['dice']:.4f}, {result['iterations']} its, "
                      f"{result['seconds'] / 60:.1f} min", flush=True)
    text = document(setup, preset, cache, rows, seeds, machine, command)
    print(text)
    print(f"(this invocation: {common.fmt_seconds(clock.seconds)})")
    if args.write:
        path = common.write_section(args.write, _section_name(preset, setup), text)
        print(f"wrote section {_section_name(preset, setup)!r} of {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
