"""`uamc evaluate PRED_DIR GT_DIR`: Dice, Jaccard, HD95 and ASD of predictions per case.

Predictions ``<case>_seg.nii.gz`` or ``<case>.nii.gz`` match the ground truth ``<case>.nii.gz``
by case name; the uncertainty and SDF maps written beside predictions are ignored. Conventions
and the JSON format: docs/metrics.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from napari_uamc import _atomic
from napari_uamc.data.io import VOLUME_FILE_SUFFIXES
from napari_uamc.data.study.layout import OPTIONAL_PREDICTION_KINDS, PREDICTION_KINDS, SEGMENTATION_SUFFIX
from napari_uamc.errors import GridMismatchError, InputError, UamcError

if TYPE_CHECKING:
    from napari_uamc.data.metrics import CaseMetrics

__all__ = [
    "CaseMatching", "build_report", "evaluate_case", "evaluate_pairs", "format_table",
    "match_cases", "report_unmatched", "write_json_atomic",
]

#: File types compared: the one-volume-per-file formats (not ``.h5``, which holds image and label
#: together, nor DICOM, which holds no label maps).
EVALUATED_SUFFIXES = VOLUME_FILE_SUFFIXES
#: Endings of the per-case maps `uamc segment` writes beside a prediction; never compared.
IGNORED_MAP_SUFFIXES = tuple(
    f"_{kind}" for kind in PREDICTION_KINDS + OPTIONAL_PREDICTION_KINDS if f"_{kind}" != SEGMENTATION_SUFFIX
)
#: Show a progress bar from this many cases on.
PROGRESS_MIN_CASES = 5
#: Column headers and their number formats in the printed table.
CASE_COLUMN = "case"
TABLE_COLUMNS = (("dice", "Dice", "{:.4f}"), ("jaccard", "Jaccard", "{:.4f}"),
                 ("hd95", "HD95", "{:.2f}"), ("asd", "ASD", "{:.2f}"))
UNDEFINED_TEXT = "n/a"


@dataclass(frozen=True)
class CaseMatching:
    """Cases found in both folders, and those found in one only (all sorted by name)."""

    pairs: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # case -> (pred, truth)
    missing_predictions: list[str] = field(default_factory=list)
    unmatched_predictions: list[str] = field(default_factory=list)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Dice, Jaccard, HD95 and ASD of predictions against ground truth",
        description="Compare predictions (<case>_seg.nii.gz or <case>.nii.gz in PRED_DIR) with "
        "the ground truth (<case>.nii.gz in GT_DIR): Dice, Jaccard, 95% Hausdorff distance and "
        "average surface distance per case, and their mean. See docs/metrics.md.",
    )
    parser.add_argument("pred_dir", type=Path, metavar="PRED_DIR", help="folder of predictions")
    parser.add_argument("gt_dir", type=Path, metavar="GT_DIR", help="folder of ground-truth labels")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    parser.add_argument(
        "--unit", choices=("mm", "voxel"), default="mm",
        help="unit of HD95 and ASD: mm from the ground truth's spacing (default) or voxels",
    )
    parser.add_argument(
        "--label", type=int, metavar="N",
        help="evaluate class N only (default: every nonzero voxel is foreground)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.label is not None and args.label < 1:
        raise InputError(f"--label must be a class id of 1 or more, not {args.label}")
    matching = match_cases(args.pred_dir, args.gt_dir)
    report_unmatched(matching)
    results = evaluate_pairs(matching.pairs, unit=args.unit, label=args.label)
    print(format_table(results, args.unit))
    report = build_report(results, matching, unit=args.unit, label=args.label)
    if args.json is not None:
        write_json_atomic(args.json, report)
        print(f"wrote {args.json}")
    return 0


# --------------------------------------------------------------------------- matching


def match_cases(pred_dir: Path, gt_dir: Path) -> CaseMatching:
    """Pair each ground-truth case with its prediction; raise when no case matches."""
    from napari_uamc.data.io import case_name

    def prediction_case(path: Path) -> str | None:
        name = case_name(path)
        return None if name.endswith(IGNORED_MAP_SUFFIXES) else case_name(path, strip_seg=True)

    truths = _files_by_case(gt_dir, "ground-truth", case_name)
    predictions = _files_by_case(pred_dir, "prediction", prediction_case)
    if not truths:
        raise InputError(f"{gt_dir}: no ground-truth files ({', '.join(EVALUATED_SUFFIXES)})")
    common = sorted(set(truths) & set(predictions))
    if not common:
        raise InputError(
            f"no prediction in {pred_dir} matches a ground-truth case in {gt_dir} "
            f"(ground truth: {_preview(sorted(truths))}; predictions: "
            f"{_preview(sorted(predictions)) or 'none'}); a prediction of <case> is named "
            "<case>_seg.nii.gz or <case>.nii.gz"
        )
    return CaseMatching(
        pairs={case: (predictions[case], truths[case]) for case in common},
        missing_predictions=sorted(set(truths) - set(predictions)),
        unmatched_predictions=sorted(set(predictions) - set(truths)),
    )


def _files_by_case(folder: Path, role: str, case_of: Any) -> dict[str, Path]:
    """``{case: path}`` of the evaluated files in ``folder``; two files for a case are an error."""
    if not folder.is_dir():
        raise InputError(f"{folder}: {role} folder not found (or not a folder)")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if not path.name.lower().endswith(EVALUATED_SUFFIXES):
            continue
        case = case_of(path)
        if case is None:
            continue
        if case in found:
            raise InputError(
                f"two {role} files for case '{case}': {found[case]} and {path}; keep one"
            )
        found[case] = path
    return found


def _preview(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def report_unmatched(matching: CaseMatching, stream: TextIO | None = None) -> None:
    """Warn about ground truth without prediction and predictions without ground truth."""
    stream = stream if stream is not None else sys.stderr
    if matching.missing_predictions:
        print(
            f"warning: {len(matching.missing_predictions)} ground-truth case(s) have no "
            f"prediction: {', '.join(matching.missing_predictions)}",
            file=stream,
        )
    if matching.unmatched_predictions:
        print(
            f"warning: {len(matching.unmatched_predictions)} prediction(s) have no ground "
            f"truth: {', '.join(matching.unmatched_predictions)}",
            file=stream,
        )


# --------------------------------------------------------------------------- evaluation


def evaluate_case(
    pred_path: Path, truth_path: Path, *, unit: str = "mm", label: int | None = None
) -> CaseMetrics:
    """Metrics of one prediction file against its ground-truth file (same grid required)."""
    from napari_uamc.data.io import read_label, read_volume
    from napari_uamc.data.metrics import compute_metrics

    truth = read_volume(truth_path)
    try:
        pred = read_label(pred_path, like=truth)
    except GridMismatchError as error:
        raise GridMismatchError(
            f"prediction {pred_path} is not on the grid of ground truth {truth_path}: {error}"
        ) from error
    return compute_metrics(pred.array, truth.array, truth.spacing, unit=unit, label=label)


def evaluate_pairs(
    pairs: Mapping[str, tuple[Path, Path]], *, unit: str = "mm", label: int | None = None
) -> dict[str, CaseMetrics]:
    """``{case: CaseMetrics}`` for every ``(prediction, ground truth)`` pair, in order."""
    from napari_uamc.cli._progress import ProgressBar

    progress = ProgressBar(len(pairs), "evaluate") if len(pairs) >= PROGRESS_MIN_CASES else None
    results: dict[str, CaseMetrics] = {}
    for done, (case, (pred_path, truth_path)) in enumerate(pairs.items(), start=1):
        results[case] = evaluate_case(pred_path, truth_path, unit=unit, label=label)
        if progress is not None:
            progress.update(done, case)
    if progress is not None:
        progress.close(f"{len(pairs)} cases")
    return results


# --------------------------------------------------------------------------- output


def format_table(results: Mapping[str, CaseMetrics], unit: str = "mm") -> str:
    """Per-case rows, a mean row, and the count of cases with undefined HD95/ASD."""
    from napari_uamc.data.metrics import DISTANCE_METRICS, UNIT_SUFFIX, summarize

    summary = summarize(results)
    headers = [CASE_COLUMN] + [
        f"{title} {UNIT_SUFFIX[unit]}" if name in DISTANCE_METRICS else title
        for name, title, _ in TABLE_COLUMNS
    ]
    rows = [[case] + _cells(vars(metrics)) for case, metrics in results.items()]
    rows.append(["mean"] + _cells(summary["mean"]))
    widths = [max(len(row[n]) for row in [headers, *rows]) for n in range(len(headers))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

    lines = [line(headers)] + [line(row) for row in rows]
    undefined = max(summary["undefined"][name] for name in DISTANCE_METRICS)
    if undefined:
        lines.append(
            f"undefined HD95/ASD (exactly one mask empty): {undefined} of {len(results)} "
            "case(s), left out of their means"
        )
    return "\n".join(lines)


def _cells(values: Mapping[str, float | None]) -> list[str]:
    return [
        UNDEFINED_TEXT if values[name] is None else fmt.format(values[name])
        for name, _, fmt in TABLE_COLUMNS
    ]


def build_report(
    results: Mapping[str, CaseMetrics], matching: CaseMatching, *, unit: str = "mm",
    label: int | None = None,
) -> dict[str, Any]:
    """The JSON document of docs/metrics.md (fractions and distances, ``None`` = undefined)."""
    from napari_uamc.data.metrics import metric_key, summarize

    summary = summarize(results)

    def keyed(values: Mapping[str, Any]) -> dict[str, Any]:
        return {metric_key(name, unit): value for name, value in values.items()}

    return {
        "cases": {case: metrics.as_dict(unit) for case, metrics in results.items()},
        "mean": keyed(summary["mean"]),
        "unit": unit,
        "undefined": keyed(summary["undefined"]),
        "label": label,
        "missing_predictions": list(matching.missing_predictions),
        "unmatched_predictions": list(matching.unmatched_predictions),
    }


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    try:
        _atomic.write_json_atomic(path, data, parents=True)
    except OSError as error:
        raise UamcError(f"{path}: could not write the JSON results ({error})") from error

