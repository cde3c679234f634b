"""Train the paper's left-atrium configuration on a CUDA GPU, on the real LA 2018 scans.

Needs only torch, numpy and h5py (the GPU machine has no nibabel, napari or maybe scipy). Two
rows, each trained from scratch with the engine's ``Trainer`` and scored on the held-out split:

- ``ugmcl``: UG-MCL, the first 16 cases of ``train.list`` labeled, cases 17-64 unlabeled
  (paper: 16 labeled of 80; here the last 16 of the 80 are held out for validation);
- ``upper``: all 64 training cases labeled, supervised (seg + dis, so the SDF head is trained);
- ``lower``: the first 16 cases labeled, supervised (seg + dis), the unlabeled cases unused: the
  paper's labeled-only lower bound (Table 3, first row).

Paper configuration (METHOD.md section 4): width 16, patch 112 x 112 x 80, batch 4 (UG-MCL: 2
labeled + 2 unlabeled; upper: 4 labeled), SGD lr 0.01 x 0.1 every 2500 steps, 6000 steps,
seed 1337, scans at their own 0.625 mm (``--target-spacing`` trains coarser). Validation:
``la2018-val16`` = the last 16 of ``train.list``, Dice per case on the scan's own grid (HD95 and
ASD too where scipy is importable). Each row writes ``<out>/<row>.pt`` (float16 weights),
``<row>.resume.pt`` every ``--checkpoint-every`` steps (a rerun resumes from it),
``<row>.log`` and ``<row>.json`` (settings, seconds, device, per-case scores).

    python benchmarks/gpu_train_la.py                       # both rows, CUDA, paper settings
    python benchmarks/gpu_train_la.py --rows upper --max-minutes 5
    python benchmarks/gpu_train_la.py --device cpu --smoke  # seconds; what the test runs

``--teacher-refresh N [--teacher-start K] [--target-gate]`` trains the ``ugmcl`` row against
whole-case teacher targets (the fine-tune's cheaper UG-MCL, docs/training.md) instead of the
teacher's passes on every patch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))
from gpu_bench import dice  # noqa: E402  (numpy only: data.metrics needs scipy)

DEFAULT_DATA = REPO.parent / "shared" / "data" / "la2018"
LA_SPACING_MM = 0.625
TRAIN_CASES, LABELED_CASES = 64, 16  # first 64 of train.list train; the last 16 validate
ROWS = ("ugmcl", "upper", "lower")


def read_case(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as handle:
        return np.asarray(handle["image"][()], np.float32), np.asarray(handle["label"][()], np.uint8)


def training_case(name: str, image: np.ndarray, label: np.ndarray | None, target_spacing):
    """A ``TrainingCase`` (z-scored), resampled to ``target_spacing`` mm when given."""
    from napari_uamc.engine.dataset import TrainingCase
    from napari_uamc.engine.preprocess import resample_to_spacing

    spacing = (LA_SPACING_MM,) * 3
    if target_spacing is not None:
        image, label, spacing = resample_to_spacing(image, label, spacing, target_spacing, name)
    return TrainingCase.from_arrays(name, image, label, spacing)


def row_config(row: str, args: argparse.Namespace):
    from napari_uamc.engine.config import TrainConfig, method_terms, parse_terms

    base = dict(width=args.width, patch=tuple(args.patch), iterations=args.iterations, lr_step=args.lr_step,
                seed=args.seed, log_interval=50)
    if row == "ugmcl":  # the paper's teacher passes on every patch, or (--teacher-refresh) whole-case targets
        return TrainConfig(**base, terms=method_terms("ugmcl"), batch_size=4, labeled_batch_size=2,
                           consistency=args.consistency, teacher_refresh=args.teacher_refresh,
                           teacher_start=args.teacher_start, target_gate=args.target_gate)
    if row == "lower":  # the paper's lower bound: the labeled half of UG-MCL's batch, nothing else
        return TrainConfig(**base, terms=parse_terms("seg,dis"), batch_size=2, labeled_batch_size=2)
    return TrainConfig(**base, terms=parse_terms("seg,dis"), batch_size=4, labeled_batch_size=4)


def validate(model_path: Path, val: dict[str, tuple[np.ndarray, np.ndarray]], device: str) -> dict[str, Any]:
    """Per-case Dice (and HD95/ASD in mm with scipy) of ``model_path`` on the validation scans."""
    from napari_uamc.data.volume import Volume
    from napari_uamc.engine.checkpoint import load_checkpoint
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    try:
        from napari_uamc.data.metrics import compute_metrics
    except ImportError:  # no scipy on this machine: Dice only
        compute_metrics = None
    model, meta = load_checkpoint(model_path, device=device)
    cfg = InferenceConfig(mc_samples=0, device=device)
    scores: dict[str, Any] = {}
    for name, (image, label) in val.items():
        volume = Volume(image, np.diag([LA_SPACING_MM] * 3 + [1.0]), name=name)
        predicted = segment_volume(model, meta, volume, cfg).label
        if compute_metrics is not None:
            scores[name] = compute_metrics(predicted, label, volume.spacing).as_dict("mm")
        else:
            scores[name] = {"dice": dice(predicted, label)}
    mean = {key: float(np.mean([s[key] for s in scores.values() if s.get(key) is not None]))
            for key in next(iter(scores.values()))}
    return {"cases": scores, "mean": mean}


def train_row(row: str, args: argparse.Namespace, cases: dict[str, tuple[np.ndarray, np.ndarray]],
              order: list[str], val) -> dict[str, Any]:
    from napari_uamc.engine.training import Trainer

    out = args.out
    cfg = row_config(row, args)
    labeled_count = TRAIN_CASES if row == "upper" else args.labeled
    train_names = order[: min(TRAIN_CASES, len(order) - len(val))]
    labeled = [training_case(n, *cases[n], args.target_spacing) for n in train_names[:labeled_count]]
    unlabeled = [] if row != "ugmcl" else [
        training_case(n, cases[n][0], None, args.target_spacing) for n in train_names[labeled_count:]]
    budget = None if args.max_minutes is None else 60.0 * args.max_minutes
    trainer = Trainer(cfg, labeled, unlabeled, device=args.device, time_budget=budget)
    resume = out / f"{row}.resume.pt"
    if resume.is_file():
        trainer.load_state(resume)
        print(f"{row}: resuming at iteration {trainer.iteration}", flush=True)
    started = time.perf_counter()
    with open(out / f"{row}.log", "a") as log:
        for report in trainer.steps():
            if report.iteration % cfg.log_interval == 0 or report.iteration == cfg.iterations:
                line = (f"{row} iter {report.iteration}/{cfg.iterations} "
                        + " ".join(f"{k} {v:.4f}" for k, v in report.losses.items())
                        + f" lr {report.lr:.2g} s/it {report.seconds_per_iteration:.3f}")
                print(line, flush=True)
                log.write(line + "\n")
            if args.checkpoint_every and report.iteration % args.checkpoint_every == 0:
                trainer.save_state(resume)
    seconds = time.perf_counter() - started
    trainer.save_state(resume)
    spacing = args.target_spacing or (LA_SPACING_MM,) * 3
    model_path = out / f"{row}.pt"
    trainer.export(model_path, spacing=spacing, half=True, trained_on=f"LA 2018, first {len(train_names)} of "
                   f"train.list ({len(labeled)} labeled)", class_names=["background", "left atrium"])
    result = {"row": row, "iterations": trainer.iteration, "seconds_this_run": round(seconds, 1),
              "config": cfg.to_dict(), "labeled": len(labeled), "unlabeled": len(unlabeled),
              "spacing": list(spacing), "device": describe_device(args.device),
              "validation": validate(model_path, val, args.device)}
    (out / f"{row}.json").write_text(json.dumps(result, indent=2))
    print(f"{row}: validation mean {result['validation']['mean']}", flush=True)
    return result


def describe_device(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores), torch {torch.__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-la-runs")))
    parser.add_argument("--rows", default="ugmcl,upper", help="comma-separated: ugmcl, upper, lower")
    parser.add_argument("--seed", type=int, default=1337, help="training seed (paper: 1337)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--lr-step", type=int, default=2500)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--patch", type=int, nargs=3, default=[112, 112, 80])
    parser.add_argument("--labeled", type=int, default=LABELED_CASES)
    parser.add_argument("--target-spacing", type=float, nargs=3, help="train at this spacing (mm)")
    parser.add_argument("--consistency", type=float, default=0.1,
                        help="UG-MCL's lambda_max (METHOD.md: 0.1, ramped over the whole run)")
    parser.add_argument("--teacher-refresh", type=int, default=0, metavar="N",
                        help="ugmcl row: whole-case teacher targets of the unlabeled scans, computed at "
                             "--teacher-start and one scan refreshed every N steps, instead of the teacher's "
                             "T + 1 passes on every patch (the fine-tune's option; docs/training.md)")
    parser.add_argument("--teacher-start", type=int, default=0, metavar="K",
                        help="with --teacher-refresh: the step of the first targets (no consistency on the "
                             "unlabeled scans before it)")
    parser.add_argument("--target-gate", action="store_true",
                        help="with --teacher-refresh: trust a scan's targets only while they are plausible")
    parser.add_argument("--max-minutes", type=float, help="time budget per row")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--smoke", action="store_true", help="4 + 2 cases, width 2, 2 steps (a test)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here; use --device cpu (slow) or run on the GPU machine", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown row(s): {', '.join(unknown)} (choose from {', '.join(ROWS)})")
    order = [line.strip() for line in (args.data / "train.list").read_text().splitlines() if line.strip()]
    val_names = order[-16:]
    if args.smoke:
        order, val_names = order[:4] + order[-1:], order[-1:]
        args.iterations, args.width, args.patch, args.labeled = 2, 2, [32, 32, 16], 2
        args.checkpoint_every = 0
    args.out.mkdir(parents=True, exist_ok=True)
    cases = {name: read_case(args.data / name / "mri_norm2.h5") for name in order}
    val = {name: cases[name] for name in val_names}
    if args.smoke:  # a crop keeps the check fast
        val = {n: (i[:64, :64, :32], lbl[:64, :64, :32]) for n, (i, lbl) in val.items()}
    results = [train_row(row, args, cases, order, val) for row in rows]
    (args.out / "summary.json").write_text(json.dumps(
        {r["row"]: {"dice": r["validation"]["mean"]["dice"], "iterations": r["iterations"]} for r in results},
        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
