"""Score a model on held-out real LA 2018 scans: Dice, Jaccard, HD95 and ASD in mm, per case.

The scans are read from ``../shared/data/la2018`` (``<case>/mri_norm2.h5``, 0.625 mm); the
split is named: ``la2018-val16`` is the last 16 cases of the paper's ``train.list``, which the
packaged model never trained on (it trained on the first 64). Each scan is segmented as
``uamc segment`` does (resampled to the model's spacing and back onto the scan's own grid;
labels from the deterministic pass, so no MC samples are drawn here) and scored against its
expert label on the scan's grid.

    python benchmarks/bench_real_model.py --model src/napari_uamc/models/default.pt
    python benchmarks/bench_real_model.py --state runs/model.resume.pt   # a run in progress
    python benchmarks/bench_real_model.py --model M.pt --write docs/default-model.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

LA2018 = common.REPO_ROOT.parent / "shared" / "data" / "la2018"
#: Named validation splits of the 80 training scans (train.list order).
SPLITS = {"la2018-val16": slice(64, 80), "la2018-val3": slice(77, 80)}
SECTION = "real-validation"


def split_cases(name: str, data: Path = LA2018) -> list[str]:
    """Case names of the split ``name`` (see :data:`SPLITS`)."""
    cases = [line.strip() for line in (data / "train.list").read_text().splitlines() if line.strip()]
    return cases[SPLITS[name]]


def model_from_state(state_path: Path, out: Path, spacing: list[float]) -> Path:
    """Write the student of a training state (``MODEL.resume.pt``, trained at ``spacing`` mm)
    as a model file (a state does not record the spacing; the finished model does)."""
    import torch

    from napari_uamc.engine.checkpoint import ModelMeta, save_checkpoint
    from napari_uamc.engine.config import TrainConfig
    from napari_uamc.engine.model import DualTaskVNet

    state = torch.load(state_path, map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(json.loads(state["config_json"]))
    model = DualTaskVNet(n_classes=cfg.n_classes, width=cfg.width, norm=cfg.norm, dropout=cfg.dropout)
    model.load_state_dict(state["student"])
    meta = ModelMeta.for_model(model, spacing=tuple(spacing), patch=cfg.patch, config=cfg.to_dict(),
                               trained_on=f"{state_path} (iteration {int(state['iteration'])})")
    return save_checkpoint(out, model.eval(), meta)


def score(model_path: Path, cases: list[str], *, largest_component: bool, data: Path = LA2018) -> dict[str, Any]:
    """Per-case metrics (mm) and seconds of ``model_path`` on ``cases``."""
    from napari_uamc.data.io import read_h5_case
    from napari_uamc.data.metrics import compute_metrics, summarize
    from napari_uamc.engine.checkpoint import load_checkpoint
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    model, meta = load_checkpoint(model_path)
    cfg = InferenceConfig(mc_samples=0, device="cpu", largest_component=largest_component)
    results, seconds = {}, {}
    for case in cases:
        image, label = read_h5_case(data / case / "mri_norm2.h5")
        started = time.perf_counter()
        result = segment_volume(model, meta, image, cfg)
        seconds[case] = time.perf_counter() - started
        results[case] = compute_metrics(result.label, label.array, image.spacing)
        m = results[case]
        print(f"  {case}: Dice {m.dice:.4f}  HD95 {m.hd95 if m.hd95 is None else round(m.hd95, 2)} mm  "
              f"({seconds[case]:.1f} s)", flush=True)
    summary = summarize(results)
    return {"cases": {c: results[c].as_dict("mm") for c in cases}, "mean": summary["mean"],
            "undefined": summary["undefined"],
            "seconds": seconds, "spacing": list(meta.spacing), "width": meta.width}


def document(report: dict[str, Any]) -> str:
    rows = []
    for kind, result in report["results"].items():
        mean = result["mean"]
        rows.append([kind, f"{100 * mean['dice']:.2f}", f"{100 * mean['jaccard']:.2f}",
                     f"{mean['hd95']:.2f}", f"{mean['asd']:.2f}",
                     f"{min(v['dice'] for v in result['cases'].values()):.3f}"])
    table = common.markdown_table(["post-processing", "Dice %", "Jaccard %", "HD95 mm", "ASD mm", "worst Dice"], rows)
    per_case = common.markdown_table(
        ["case", *[f"Dice ({k})" for k in report["results"]], "HD95 mm (raw)"],
        [[case, *[f"{r['cases'][case]['dice']:.4f}" for r in report["results"].values()],
          f"{next(iter(report['results'].values()))['cases'][case]['hd95_mm']:.2f}"] for case in report["cases"]],
    )
    return (
        f"### Held-out real scans ({report['split']}: {len(report['cases'])} LA 2018 scans never trained on)\n\n"
        f"Model `{report['model']}` (width {report['width']}, trained at "
        f"{' x '.join(f'{s:g}' for s in report['spacing'])} mm), scored on each scan's own 0.625 mm grid "
        f"against its expert label. Measured {report['when']} on {report['machine']}; command "
        f"`{report['command']}`.\n\n{table}\n\n<details><summary>Per case</summary>\n\n{per_case}\n\n</details>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", type=Path, help="model file to score")
    which.add_argument("--state", type=Path, help="training state (MODEL.resume.pt): score its student")
    parser.add_argument("--state-spacing", type=float, nargs=3, default=[1.25, 1.25, 1.25], metavar="MM",
                        help="the spacing the --state run trained at (default 1.25 mm)")
    parser.add_argument("--split", choices=sorted(SPLITS), default="la2018-val16")
    parser.add_argument("--data", type=Path, default=LA2018, help="folder of the LA 2018 scans")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--write", type=Path, metavar="DOC", help="write the table into this markdown file")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if not (args.data / "train.list").is_file():
        raise SystemExit(f"no LA 2018 scans at {args.data} (expected train.list and <case>/mri_norm2.h5)")
    common.set_threads(args.threads)
    cases = split_cases(args.split, args.data)
    with tempfile.TemporaryDirectory() as temp:
        model_path = args.model or model_from_state(args.state, Path(temp) / "state-student.pt",
                                                      args.state_spacing)
        results = {}
        for kind, largest in (("none", False), ("largest component", True)):
            print(f"{args.split}, post-processing: {kind}", flush=True)
            results[kind] = score(model_path, cases, largest_component=largest, data=args.data)
    first = next(iter(results.values()))
    report = {"split": args.split, "cases": cases, "model": str(args.model or args.state), "results": results,
              "spacing": first["spacing"], "width": first["width"], "when": common.utc_now(),
              "machine": common.describe_machine(common.machine_info()), "command": common.command_line(argv)}
    for kind, result in results.items():
        mean = result["mean"]
        print(f"{kind}: Dice {mean['dice']:.4f}  Jaccard {mean['jaccard']:.4f}  HD95 {mean['hd95']:.2f} mm  "
              f"ASD {mean['asd']:.2f} mm")
    common.save_report(report, args.json, args.write, SECTION, document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
