"""``uamc train``: UG-MCL (or supervised) training of a dual-task V-Net on a folder of cases.

Parses the arguments, reads the cases and builds the config; the run itself (the model
``--out MODEL.pt``, its log ``MODEL.log``, the resumable state ``MODEL.resume.pt``, Ctrl-C and
NaN stops, rank-0-only writing under ``torchrun``) is
:func:`napari_uamc.engine.training_run.run_training`. Only rank 0 prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from napari_uamc.cli._options import XYZ, add_device_option, add_precision_option
from napari_uamc.data.study.layout import DATASET_FILE
from napari_uamc.engine.training_run import DEFAULT_CHECKPOINT_EVERY, RESUME_SUFFIX

DESCRIPTION = """\
Train a dual-task V-Net with UG-MCL (uncertainty-guided mutual consistency learning) or
supervised only. DATA is an MSD study folder (imagesTr/ + labelsTr/; groundTruth/ is never used),
a folder of LA .h5 files (image + label datasets; flat or one sub-folder per case), or a folder of
NIfTI/NRRD images with a labels/ sub-folder. Labeled cases: the first N in sorted name order
(--labeled N), those listed in a file (--labeled-cases), or by default every case with a label;
all other cases are unlabeled. Defaults are the paper's left-atrium settings (6000 iterations,
batch 4 with 2 labeled, patch 112 112 80, SGD lr 0.01 x0.1 every 2500 steps, seed 1337)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model (UG-MCL or supervised) on a folder of cases",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data", metavar="DATA", help="study folder, .h5 folder, or image folder")
    parser.add_argument("--out", required=True, metavar="MODEL.pt", help="model file to write")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--labeled", type=int, metavar="N",
                       help="label the first N cases in sorted name order (the rest are unlabeled)")
    which.add_argument("--labeled-cases", metavar="FILE",
                       help="text file naming the labeled cases, one per line")
    parser.add_argument("--method", choices=("ugmcl", "supervised"), default="ugmcl",
                        help="ugmcl: all loss terms (default); supervised: CE + Dice on labeled cases")
    parser.add_argument("--terms", metavar="LIST",
                        help="loss terms instead of --method, e.g. seg,dis,ctc (any of seg, dis, itc, ctc; "
                             "the paper's ablation rows)")
    parser.add_argument("--iterations", type=int, metavar="K", help="optimiser steps (default 6000)")
    parser.add_argument("--patch", type=int, nargs=3, metavar=XYZ,
                        help="training patch in voxels, multiples of 16 (default 112 112 80)")
    parser.add_argument("--width", type=int, metavar="F", help="V-Net width F (default 16)")
    parser.add_argument("--batch-size", type=int, metavar="B", help="patches per step (default 4)")
    parser.add_argument("--labeled-batch-size", type=int, metavar="B",
                        help="labeled patches per step (default 2)")
    parser.add_argument("--lr", type=float, help="initial learning rate (default 0.01)")
    parser.add_argument("--mc-samples", type=int, metavar="T",
                        help="teacher MC-dropout passes for the uncertainty (default 8)")
    parser.add_argument("--seed", type=int, metavar="S", help="random seed (default 1337)")
    add_device_option(parser)
    add_precision_option(parser)
    parser.add_argument("--workers", type=int, metavar="N",
                        help="processes building batches (default: 0 on CPU, up to 8 on CUDA)")
    parser.add_argument("--spacing", type=float, nargs="+", metavar="MM",
                        help="voxel spacing of .h5 files (one or three numbers, default 1 mm)")
    parser.add_argument("--target-spacing", type=float, nargs="+", metavar="MM",
                        help="resample every case to this spacing before training (one or three numbers, "
                             "mm); the model records it, and segment resamples inputs to it")
    parser.add_argument("--lr-step", type=int, metavar="K",
                        help="multiply the learning rate by 0.1 every K steps (default 2500)")
    parser.add_argument("--init", metavar="MODEL.pt", help="start from this model's weights")
    parser.add_argument("--resume", metavar="CKPT",
                        help="continue an interrupted run from its MODEL.resume.pt (same DATA and split)")
    parser.add_argument("--checkpoint-every", type=int, default=DEFAULT_CHECKPOINT_EVERY, metavar="K",
                        help=f"write MODEL{RESUME_SUFFIX} every K steps "
                             f"(default {DEFAULT_CHECKPOINT_EVERY}; 0: only at the end)")
    parser.add_argument("--log-every", type=int, metavar="K",
                        help="steps between log lines (default 10; on CUDA also how often losses are read)")
    parser.add_argument("--half", action="store_true", help="store the weights as float16 (half the size)")
    parser.add_argument("--synthetic-only", action="store_true",
                        help="mark the model as trained on synthetic data only")
    parser.set_defaults(func=run)


# ------------------------------------------------------------------------------------------
def _config_changes(args: argparse.Namespace) -> dict[str, Any]:
    from napari_uamc.engine.config import method_terms, parse_terms

    changes: dict[str, Any] = {}
    if args.terms:
        changes["terms"] = parse_terms(args.terms)
    elif args.method != "ugmcl" or not args.resume:
        changes["terms"] = method_terms(args.method)
    simple = {
        "iterations": args.iterations, "width": args.width, "batch_size": args.batch_size,
        "labeled_batch_size": args.labeled_batch_size, "lr": args.lr, "mc_samples": args.mc_samples,
        "seed": args.seed, "precision": args.precision, "data_workers": args.workers,
        "log_interval": args.log_every, "lr_step": args.lr_step,
    }
    changes.update({k: v for k, v in simple.items() if v is not None})
    if args.patch:
        changes["patch"] = tuple(args.patch)
    return changes


def _spacing_option(values: list[float] | None, option: str = "--spacing"):
    from napari_uamc.errors import InputError

    if values is None:
        return None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"{option} takes one or three numbers, not {len(values)}")
    if not all(v > 0 for v in values):
        raise InputError(f"{option} must be positive (mm), not {' '.join(map(str, values))}")
    return tuple(values)


def _class_names(data: Path, n_classes: int) -> list[str] | None:
    """Class names from an MSD ``dataset.json`` when it names every class."""
    try:
        labels = json.loads((data / DATASET_FILE).read_text()).get("labels", {})
        names = [str(labels[str(c)]) for c in range(n_classes)]
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None
    return names


def run(args: argparse.Namespace) -> int:
    from napari_uamc._words import counted
    from napari_uamc.cli._progress import ProgressBar
    from napari_uamc.engine import distributed
    from napari_uamc.engine.checkpoint import load_checkpoint
    from napari_uamc.engine.config import TrainConfig
    from napari_uamc.engine.dataset import load_cases_from_folder
    from napari_uamc.engine.device import resolve_device
    from napari_uamc.engine.preprocess import needs_resampling
    from napari_uamc.engine.training_run import RunPaths, check_checkpoint_every, run_training
    from napari_uamc.engine.training_state import read_training_state, state_config
    from napari_uamc.errors import InputError

    paths = RunPaths.for_model(args.out)
    check_checkpoint_every(args.checkpoint_every)
    data = Path(args.data)

    device = resolve_device(args.device)
    ctx = distributed.init_from_env(device.type)
    main = ctx.is_main
    say = (lambda text: print(text, file=sys.stderr)) if main else (lambda text: None)
    try:
        split = load_cases_from_folder(
            data, labeled=args.labeled, labeled_names=args.labeled_cases, h5_spacing=_spacing_option(args.spacing),
            target_spacing=_spacing_option(args.target_spacing, "--target-spacing"),
        )
        say(f"{len(split.labeled)} labeled and {len(split.unlabeled)} unlabeled cases from {data}")
        odd = [c.name for c in split.labeled + split.unlabeled if needs_resampling(c.spacing, split.spacing)]
        if odd:
            median = " x ".join(f"{v:.3g}" for v in split.spacing)
            say(f"note: {len(odd)} case(s) differ from the median spacing {median} mm by more than "
                f"10% ({', '.join(odd[:5])}); training uses each case at its own spacing")

        resume_state = read_training_state(args.resume) if args.resume else None
        base = state_config(resume_state) if resume_state is not None else TrainConfig(n_classes=split.n_classes())
        model = None
        parent = None
        if args.init:
            model, init_meta = load_checkpoint(args.init, "cpu")
            base = base.replace(n_classes=init_meta.n_classes, width=init_meta.width,
                                norm=init_meta.norm, dropout=init_meta.dropout)
            parent = str(args.init)
            say(f"starting from {args.init} (width {init_meta.width}, {init_meta.n_classes} classes)")
        changes = _config_changes(args)
        if args.init and "width" in changes and changes["width"] != base.width:
            raise InputError(f"--width {changes['width']} differs from the --init model's width {base.width}")
        cfg = base.replace(**changes)

        names = _class_names(data, cfg.n_classes)
        bar = ProgressBar(cfg.iterations, "train") if main else None

        def on_step(report) -> None:
            bar.update(report.iteration, f"loss {report.losses.get('total', float('nan')):.4f}")  # type: ignore[union-attr]

        result = run_training(
            cfg, split.labeled, split.unlabeled, paths.model,
            spacing=split.spacing, model=model, resume_state=resume_state, device=device, dist_context=ctx,
            checkpoint_every=args.checkpoint_every, half=args.half, log_title=f"uamc train {data}",
            state_extra={"data_json": json.dumps({"data": str(data), "labeled": args.labeled,
                                                  "labeled_cases": args.labeled_cases})},
            export_fields={"trained_on": str(data), "synthetic_only": args.synthetic_only, "parent": parent,
                           **({"class_names": names} if names else {})},
            on_step=on_step, on_message=say,
        )
        if main and result.meta is not None:
            bar.close(counted(result.iterations, "iteration"))  # type: ignore[union-attr]
            meta = result.meta
            print(f"wrote {paths.model} (width {meta.width}, {meta.n_classes} classes, spacing "
                  f"{' x '.join(f'{s:g}' for s in meta.spacing)} mm)")
    finally:
        distributed.shutdown()
    return 0
