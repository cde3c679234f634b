"""``uamc finetune``: the annotation loop's fine-tune on a study folder (same code as the plugin)."""

from __future__ import annotations

import argparse
import sys

from napari_uamc.cli._options import add_device_option, add_precision_option

DESCRIPTION = """\
Fine-tune the study's current model (or --model, or the packaged default) on the study: every
case with an accepted label in labelsTr/ is labeled, every other case unlabeled. The method is
chosen by the start, as measured best in docs/benchmarks.md: a model that already agrees with
the accepted labels (Dice >= 0.5, a warm start) learns gently (learning rate 0.001) from the
accepted cases and, through UG-MCL's consistency (lambda 1), from its own whole-case predictions
of the other cases wherever a target gate finds them plausible (2 accepted + 1 other patch a step,
1.5-1.7x the price of a supervised step on a 2-core CPU); a model new to the images (a cold
start) trains seg + dis on the accepted cases alone at its training learning rate. Either way
the other cases re-estimate the BatchNorm statistics after training. --method ugmcl is the
paper's per-patch teacher instead (each step costs 4-8x more on a CPU: T + 1 teacher passes on
every patch); --teacher-refresh N replaces those passes by whole-case targets refreshed one case
every N steps. The warm default with a supervised step's price (1 + 1 patches; measured 0.003
Dice below it in the same time): --method ugmcl --teacher-refresh 25 --target-gate --consistency 1
--batch-size 2 --labeled-batch-size 1. Writes a new model version
STUDY/.uamc/models/vNNN.pt + vNNN.json (parent, cases used, settings, training Dice on the
accepted cases) and makes it the study's current model (--no-adopt: writes it only, and prints how
much it changes the other cases' predictions; adopt it later in the panel's Model versions).
Ctrl-C stops early and still writes the version, marked stopped_early (once training has taken a
step; before that nothing is written)."""


#: What ``--copy-paste`` implies unless given: targets refreshed every 25 steps, 1 + 1 patches a step
#: (the price of a supervised step: docs/benchmarks.md).
COPY_PASTE_DEFAULTS = {"teacher_refresh": 25, "batch_size": 2, "labeled_batch_size": 1}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune", help="fine-tune a model on a study's accepted labels and other images",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("study", metavar="STUDY", help="study folder (MSD layout)")
    parser.add_argument("--model", metavar="MODEL.pt",
                        help="start from this model (default: the study's current model, else the packaged default)")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--iterations", type=int, metavar="K", help="train for K steps")
    budget.add_argument("--minutes", type=float, metavar="M",
                        help="train for M minutes (default 3 when neither is given); training time only: "
                             "reading the cases before, and BatchNorm recalibration, scoring and writing "
                             "after, come on top")
    add_device_option(parser)
    add_precision_option(parser)
    parser.add_argument("--method", choices=("ugmcl", "supervised"),
                        help="ugmcl: all loss terms (UG-MCL consistency on the other cases, the teacher's passes "
                             "on every patch); supervised: CE + Dice of the segmentation head only (default: "
                             "chosen by the start: a model that agrees with the accepted labels (Dice >= 0.5) "
                             "also learns from the other cases through UG-MCL consistency with gated whole-case "
                             "teacher targets; one new to the images trains seg,dis on the accepted cases)")
    parser.add_argument("--teacher-refresh", type=int, metavar="N",
                        help="with the itc term: whole-case teacher targets of the other cases, one case "
                             "refreshed every N steps, instead of the teacher's passes on every patch")
    parser.add_argument("--target-gate", action="store_true",
                        help="with --teacher-refresh: trust a case's teacher targets only while they look like a "
                             "segmentation of the accepted structures (volume within 2x of the accepted labels', "
                             "segmentation and SDF heads agreeing); see docs/training.md")
    parser.add_argument("--copy-paste", action="store_true",
                        help="train on bidirectional copy-paste mixes of accepted and other patches, supervised "
                             "by the accepted labels and the teacher's pseudo-labels (Bai et al., CVPR 2023); "
                             "implies --teacher-refresh 25 and 1 accepted + 1 other patch a step unless given. "
                             "Measured on real scans: below the default from a cold start, within noise from a "
                             "warm one (docs/benchmarks.md)")
    parser.add_argument("--terms", metavar="LIST", help="loss terms, e.g. seg,dis,itc,ctc (overrides --method)")
    parser.add_argument("--consistency", type=float, metavar="W",
                        help="weight lambda of UG-MCL's consistency terms (the warm default: 1; --method "
                             "ugmcl: 0.1, METHOD.md); no effect without them")
    parser.add_argument("--lr", type=float,
                        help="learning rate of the fine-tune (default: the model's training rate, 0.01, "
                             "when its predictions of the accepted cases score Dice < 0.5, else 0.001)")
    parser.add_argument("--batch-size", type=int, metavar="B", help="patches per step")
    parser.add_argument("--labeled-batch-size", type=int, metavar="B", help="labeled patches per step")
    parser.add_argument("--seed", type=int, metavar="S", help="random seed")
    recal = parser.add_mutually_exclusive_group()
    recal.add_argument("--bn-recalibration", dest="bn_recalibration", action="store_true", default=None,
                       help="re-estimate BatchNorm statistics on all the study's images after training (default)")
    recal.add_argument("--no-bn-recalibration", dest="bn_recalibration", action="store_false",
                       help="keep the BatchNorm statistics of training")
    result = parser.add_mutually_exclusive_group()
    result.add_argument("--keep-ema", dest="keep_ema", action="store_true", default=None,
                        help="keep the EMA teacher as the new model (default; measured best, docs/benchmarks.md)")
    result.add_argument("--keep-student", dest="keep_ema", action="store_false",
                        help="keep the student as the new model")
    parser.add_argument("--replay", metavar="DIR|auto|none", default="auto",
                        help="labeled cases to replay against forgetting (2, the first by name): 'auto' "
                             "(default) in a warm start, the starting model's training data if its record names a "
                             "folder that is here (the packaged model's names none: give its LA 2018 folder "
                             "to replay it; a version fine-tuned in the study replays nothing), a folder (a "
                             "study, LA .h5 files, or images with labels/), or 'none'")
    parser.add_argument("--no-score", action="store_true",
                        help="skip the training Dice on the accepted cases")
    parser.add_argument("--no-adopt", action="store_true",
                        help="write the new version without making it the study's current model, and print how "
                             "much it changes the other cases' predictions (the panel always does this)")
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict:
    from napari_uamc.engine.config import method_terms, parse_terms

    overrides: dict = {}
    if args.terms:
        overrides["terms"] = parse_terms(args.terms)
    elif args.method:
        overrides["terms"] = method_terms(args.method)
    values = {
        "precision": args.precision, "finetune_lr": args.lr, "batch_size": args.batch_size,
        "labeled_batch_size": args.labeled_batch_size, "seed": args.seed,
        "bn_recalibration": args.bn_recalibration, "keep_ema": args.keep_ema,
        "teacher_refresh": args.teacher_refresh, "consistency": args.consistency,
    }
    overrides.update({k: v for k, v in values.items() if v is not None})
    if args.target_gate:
        overrides["target_gate"] = True
    if args.copy_paste:
        overrides["copy_paste"] = True
        for name, value in COPY_PASTE_DEFAULTS.items():
            overrides.setdefault(name, value)
    return overrides


def run(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from napari_uamc._words import counted, dice_text, duration_text
    from napari_uamc.cli._progress import ProgressBar
    from napari_uamc.engine.finetune import DEFAULT_MINUTES, compare_with_parent, finetune_study
    from napari_uamc.engine.inference import Cancelled

    stop = threading.Event()
    by_time = args.iterations is None
    budget_seconds = 60.0 * (args.minutes if args.minutes is not None else DEFAULT_MINUTES)
    bar = ProgressBar(int(budget_seconds) if by_time else args.iterations, "finetune")
    started = time.perf_counter()

    def on_step(report) -> None:
        loss = report.losses.get("total", float("nan"))
        message = f"iter {report.iteration} loss {loss:.4f}"
        if by_time:  # the budget counts the training steps' time only (not reading, not the targets)
            done = bar.total if report.last else int(budget_seconds - report.eta_seconds)
            bar.update(done, message, eta=report.eta_seconds)
        else:
            bar.update(report.iteration, message, eta=report.eta_seconds)

    def on_message(text: str) -> None:
        print(text, file=sys.stderr)

    def on_interrupt(signum, frame) -> None:  # first Ctrl-C: stop after this step, keep the result
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("\nstopping after this step (Ctrl-C again to abort)", file=sys.stderr)

    on_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, on_interrupt) if on_main_thread else None
    try:
        result = finetune_study(
            args.study, model_path=args.model, iterations=args.iterations, minutes=args.minutes,
            device=args.device, overrides=_overrides(args), should_stop=stop.is_set,
            on_step=on_step, on_message=on_message, score=not args.no_score, adopt=not args.no_adopt,
            replay=None if args.replay.lower() == "none" else args.replay,
        )
        change = None
        if args.no_adopt and result.unlabeled and not stop.is_set():
            change = compare_with_parent(args.study, result, device=args.device, should_stop=stop.is_set)
    except Cancelled as stopped:
        bar.close("stopped")
        print(stopped, file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    iterations = counted(result.iterations, "iteration")
    bar.close(iterations)
    mean = result.mean_training_dice
    print(
        f"new model {result.version} (parent {result.parent}): {iterations}"
        + (", stopped early" if result.stopped_early else "")
        + (f", training Dice on the accepted cases {dice_text(mean)} (cases it trained on)" if mean is not None else "")
        + f"\n{result.path}"
    )
    before = [v for v in result.starting_agreement.values()]
    if before and mean is not None:
        print(f"accepted cases: Dice with the labels {result.parent} {dice_text(sum(before) / len(before))} -> "
              f"{result.version} {dice_text(mean)} (training score)")
    if result.replay.get("cases"):
        print(f"replayed against forgetting: {', '.join(result.replay['cases'])} from {result.replay['source']} "
              f"({result.replay['why']})")
    elif result.replay.get("why"):
        print(f"{result.replay['why']} (--replay DIR)")
    if result.method:
        print(result.method)
    if change is not None and change.mean is not None:
        print(f"other cases: Dice between {result.parent}'s and {result.version}'s predictions {change.mean:.3f} "
              f"on {len(change.cases)} of {change.of} (1 = unchanged)")
    print(f"took {duration_text(time.perf_counter() - started)} in all, {duration_text(result.training_seconds)} "
          "of them training (the rest: comparing the model with your labels, reading the cases, the teacher's "
          "targets, recalibrating, scoring, writing" + (", comparing with the parent)" if change is not None else ")"))
    print(f"{result.version} is now the study's current model" if result.adopted else
          f"{result.version} is not adopted: the study's model stays as it was "
          "(adopt it in the panel: Model versions > Use selected version)")
    for warning in _warnings(result):
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _warnings(result) -> list[str]:
    """What the panel's offer flags (barely trained, agrees less with the accepted labels), said
    after a fine-tune, with the way back when the version was adopted."""
    from napari_uamc._words import counted, dice_text
    from napari_uamc.engine.progress_messages import FEW_ITERATIONS, agrees_less, barely_trained, scored_means

    said = []
    if barely_trained(result.iterations):
        said.append(f"{result.version} is barely trained ({counted(result.iterations, 'iteration')}, under "
                    f"{FEW_ITERATIONS}): give a larger --minutes or --iterations budget")
    if agrees_less(result.starting_agreement, result.training_dice):
        before, after = scored_means(result.starting_agreement, result.training_dice)
        said.append(f"{result.version} agrees less with your accepted labels than {result.parent} "
                    f"({dice_text(before)} -> {dice_text(after)})")
    if said and result.adopted:
        said.append(f"{result.version} was adopted all the same; to go back to {result.parent}, pick it in the "
                    "panel's Model versions (Use selected version), or fine-tune with --no-adopt to decide after")
    return said
