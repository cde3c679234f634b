"""Trace one ablation run: test Dice during training, for the student, the EMA teacher and the
student with BatchNorm statistics re-estimated on the training images.

Made to find out why some ablation runs end far below others with the same training loss (rows 3
and 5 of seed 0 in docs/benchmarks.md): is the model bad, or only its BatchNorm statistics, or
does the EMA teacher do better; and when during training does it happen. Same data, config and
seeds as ``bench_ablation.py``, so the traced run repeats the cached one. Prints a table and
writes the trace as JSON beside the ablation cache (``.bench-cache/ablation-trace/``); with
``--write`` also as a section of docs/benchmarks.md.

    python benchmarks/trace_ablation_run.py --row 3 --seed 0 --every 50 --threads 1 --write
    python benchmarks/trace_ablation_run.py --smoke      # seconds; what CI runs
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402
import bench_ablation as ablation  # noqa: E402

BENCH = "ablation-trace"


def _test_dice(model, meta, test_dir: Path, device: str) -> float:
    return float(ablation.evaluate(model, meta, test_dir, device)["mean"]["dice"])


def trace(setup: ablation.Setup, row: str, seed: int, every: int, cache_root: Path) -> list[dict[str, Any]]:
    """Train ``row``/``seed`` as bench_ablation does, scoring the three models every ``every`` steps."""
    from napari_uamc.engine.batchnorm import recalibrate_batchnorm

    trainer, split, unlabeled, train_dir, test_dir = ablation.prepare_run(setup, row, seed, cache_root)
    cfg = trainer.cfg
    meta = trainer.build_meta(spacing=split.spacing, trained_on=str(train_dir), synthetic_only=True)
    images = [case.image for case in split.labeled + unlabeled]
    points: list[dict[str, Any]] = []
    for report in trainer.steps():
        if report.iteration % every and report.iteration != cfg.iterations:
            continue
        recalibrated = copy.deepcopy(trainer.student)
        recalibrate_batchnorm(recalibrated, images, cfg.patch, batch_size=cfg.batch_size, seed=seed,
                              device=trainer.device, dtype=trainer.dtype, channels_last=cfg.channels_last)
        point = {
            "iteration": report.iteration,
            "loss": {k: round(v, 5) for k, v in report.losses.items()},
            "mask_fraction": report.mask_fraction,
            "student": _test_dice(trainer.student, meta, test_dir, setup.device),
            "teacher": _test_dice(trainer.teacher, meta, test_dir, setup.device),
            "student_bn_recalibrated": _test_dice(recalibrated, meta, test_dir, setup.device),
        }
        points.append(point)
        print(f"  {report.iteration:5d}  loss {report.losses.get('total', float('nan')):.4f}  Dice student "
              f"{point['student']:.3f}  teacher {point['teacher']:.3f}  student+BN recal "
              f"{point['student_bn_recalibrated']:.3f}", flush=True)
    return points


def document(row: str, seed: int, every: int, result: dict[str, Any]) -> str:
    """The trace as a markdown section."""
    rows = [[p["iteration"], f"{p['loss'].get('total', float('nan')):.3f}", f"{p['student']:.3f}",
             f"{p['teacher']:.3f}", f"{p['student_bn_recalibrated']:.3f}"] for p in result["points"]]
    return "\n".join([
        f"## Trace of ablation row {row}, seed {seed}",
        "",
        f"Written by `benchmarks/trace_ablation_run.py`, {result['finished']}. Command: "
        f"`{result['command']}`. Machine: {common.describe_machine(result['machine'])}.",
        "",
        f"The same training as the ablation table's run (same data, config and seed; its last row "
        f"repeats the cached result), scored on the test study every {every} steps: mean test Dice "
        "of the student, of the EMA teacher, and of the student with its BatchNorm statistics "
        "re-estimated on the training images. The loss is the training loss of that step.",
        "",
        common.markdown_table(["iteration", "loss", "Dice student", "Dice EMA teacher",
                               "Dice student, BN recalibrated"], rows),
    ]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", default="3", choices=ablation.ROW_NAMES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=50, help="steps between scorings")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes, 2 iterations (seconds)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (use 1 on a busy machine)")
    parser.add_argument("--cache-dir", type=Path, default=common.DEFAULT_CACHE_DIR)
    parser.add_argument("--cached", action="store_true", help="run nothing; report the cached trace")
    parser.add_argument("--write", nargs="?", const=str(common.DEFAULT_DOC), metavar="DOC",
                        help="write the section into DOC (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    common.set_threads(args.threads if args.threads is not None else (1 if args.smoke else None))
    setup = ablation.PRESETS["smoke" if args.smoke else "default"]
    every = 1 if args.smoke else args.every
    cache = common.ResultCache(args.cache_dir, BENCH, setup.to_dict())
    name = f"row{args.row}_seed{args.seed}_every{every}"
    result = cache.get(name)
    if result is None and args.cached:
        raise SystemExit(f"no cached trace {name} in {cache.folder}")
    if not args.cached:
        print(f"trace of ablation row {args.row} seed {args.seed}, scored every {every} steps", flush=True)
        points = trace(setup, args.row, args.seed, every, args.cache_dir)
        result = {"row": args.row, "seed": args.seed, "points": points,
                  "command": common.command_line(argv), "machine": common.machine_info(setup.device),
                  "finished": common.utc_now()}
        cache.put(name, result)
        print(f"written to {cache.path(name)}")
    if args.write:
        section = "ablation-trace-smoke" if args.smoke else "ablation-trace"
        path = common.write_section(args.write, section, document(args.row, args.seed, every, result))
        print(f"wrote section {section!r} of {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
