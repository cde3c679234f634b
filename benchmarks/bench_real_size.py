"""Segment a full-size LA scan end to end, as a user runs it: ``uamc segment`` and the panel.

The volume: a real LA 2018 scan (``--case``, default the first of la2018-val16), whose crop is
zero-padded to the challenge's full 640 x 640 x 88 grid at 0.625 mm (zero is the mean of the
z-scored scan) and written once as ``.nii.gz`` under ``.bench-cache/real-size/``. Every row runs
in a fresh Python process, so imports, model loading and peak memory (``ru_maxrss``) are those
of a user's first call:

- ``uamc segment`` (T = 8 MC samples) timed from outside, interpreter start to exit;
- the same steps timed one by one (imports, model, reading, resampling, network, resampling
  back and post-processing, writing the three files), with the CLI's malloc setting
  (``keep_freed_memory``: freed memory is reused instead of faulted in again);
- the panel's Segment worker (``tasks.segment_image`` on an imported study: inference,
  uncertain regions, case score, saving the prediction into the study), in a process without
  that malloc setting, like napari's.

Each in float32 and bfloat16 (``--precision``); ``auto`` picks whichever this machine measured
faster (``engine/device.py``). Median of ``--repeats`` runs; the load average is recorded.

    python benchmarks/bench_real_size.py                  # about 5 minutes on 2 cores
    python benchmarks/bench_real_size.py --write docs/benchmarks.md
    python benchmarks/bench_real_size.py --write docs/benchmarks.md --section real-size-amd  # another CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402

LA2018 = common.REPO_ROOT.parent / "shared" / "data" / "la2018"
FULL_SHAPE = (640, 640, 88)
SPACING_MM = 0.625
SECTION = "real-size"
RESULT = "RESULT "

CHILD = r"""
import json, resource, sys, time
started = time.perf_counter()
mode, precision, model_path, volume_path, out = sys.argv[1:6]
if mode == "cli":
    from napari_uamc.cli import main
    code = main(["segment", volume_path, "--out", out, "--mc-samples", "8", "--precision", precision]
                + ([] if model_path == "default" else ["--model", model_path]))
    stages = {"exit code": code}
elif mode == "stages":
    import torch
    from napari_uamc.engine.device import keep_freed_memory
    keep_freed_memory()  # as uamc segment does
    from napari_uamc.data.io import read_volume
    from napari_uamc.engine.checkpoint import default_model_path, load_checkpoint
    from napari_uamc.engine.inference import InferenceConfig, segment_volume, write_segmentation
    imported = time.perf_counter()
    model, meta = load_checkpoint(default_model_path() if model_path == "default" else model_path)
    loaded = time.perf_counter()
    volume = read_volume(volume_path)
    read = time.perf_counter()
    result = segment_volume(model, meta, volume, InferenceConfig(mc_samples=8, precision=precision))
    segmented = time.perf_counter()
    write_segmentation(result, volume, out, "full")
    written = time.perf_counter()
    stages = {"start-up and imports": imported - started, "model": loaded - imported, "read": read - loaded,
              "resample + z-score": result.timings["preprocess"], "network (T = 8)": result.timings["network"],
              "resample back + post-processing": result.timings["postprocess"], "write 3 files": written - segmented,
              "precision": result.info["precision"]}
else:  # panel: the Segment worker on a study case
    from napari_uamc._napari.tasks import ModelChoice, segment_image
    from napari_uamc.data.study import Study
    imported = time.perf_counter()
    study = Study.open(volume_path)
    volume = study.read_image("full")
    read = time.perf_counter()
    choice = ModelChoice("bench", None if model_path == "default" else __import__("pathlib").Path(model_path))
    outcome = segment_image(volume, choice, mc_samples=8, device="cpu", study=study, case="full")
    stages = {"start-up and imports": imported - started, "open study + read": read - imported,
              "Segment worker (inference, regions, score, save)": outcome.seconds,
              "precision": outcome.result.info["precision"]}
total = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # KiB -> GiB
print("RESULT " + json.dumps({"seconds_in_process": total, "peak_gb": peak, "stages": stages}))
"""


def full_size_volume(cache: Path, case: str) -> Path:
    """The real crop of ``case`` zero-padded (centred) to 640 x 640 x 88, as ``.nii.gz``."""
    import h5py
    import nibabel as nib
    import numpy as np

    path = cache / f"{case}_640x640x88.nii.gz"
    if path.is_file():
        return path
    with h5py.File(LA2018 / case / "mri_norm2.h5", "r") as handle:
        crop = np.asarray(handle["image"][()], np.float32)
    full = np.zeros(FULL_SHAPE, np.float32)
    start = [(f - c) // 2 for f, c in zip(FULL_SHAPE, crop.shape)]
    full[start[0]:start[0] + crop.shape[0], start[1]:start[1] + crop.shape[1], :crop.shape[2]] = crop
    cache.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(".tmp-" + path.name)
    nib.save(nib.Nifti1Image(full, np.diag([SPACING_MM] * 3 + [1.0])), str(temp))
    temp.replace(path)
    return path


def panel_study(cache: Path, volume: Path) -> Path:
    """A one-case study ("full") holding the volume, for the panel row."""
    from napari_uamc.data.io import read_volume
    from napari_uamc.data.study import Study

    root = cache / "study"
    if not (root / "imagesTr" / "full.nii.gz").is_file():
        image = read_volume(volume)
        Study.create(root, [image.with_array(image.array, name="full")], exist_ok=True)
    return root


def run_row(mode: str, precision: str, model: str, target: Path) -> dict[str, Any]:
    """One fresh process. The panel has no precision setting: it runs ``auto``, which reads the
    machine's measured choice from the cache folder; the child gets a cache pinned to
    ``precision``."""
    import os

    from napari_uamc._cache import CACHE_ENV
    from napari_uamc.engine.device import PRECISION_CACHE_FILE, machine_key

    with tempfile.TemporaryDirectory() as out:
        (Path(out) / PRECISION_CACHE_FILE).write_text(json.dumps({machine_key(): {"choice": precision}}))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", CHILD, mode, precision, model, str(target), out],
                              capture_output=True, text=True, env={**os.environ, CACHE_ENV: out})
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{mode} {precision} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith(RESULT))
    return {**json.loads(line[len(RESULT):]), "wall_seconds": wall}


def median_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out = {"wall_seconds": statistics.median(r["wall_seconds"] for r in rows),
           "peak_gb": max(r["peak_gb"] for r in rows), "runs": [r["wall_seconds"] for r in rows], "stages": {}}
    for key, value in rows[0]["stages"].items():
        out["stages"][key] = statistics.median(r["stages"][key] for r in rows) if isinstance(value, float) else value
    return out


def document(report: dict[str, Any]) -> str:
    lines = [
        f"### A full-size real scan end to end ({' x '.join(map(str, FULL_SHAPE))} at {SPACING_MM} mm, T = 8)",
        "",
        f"Case {report['case']} (a real LA 2018 crop zero-padded to the challenge's full grid), model "
        f"`{report['model']}`. Each run is a fresh process (a user's first call); median of "
        f"{report['repeats']} runs. Measured {report['when']} on {report['machine']}; load average "
        f"{report['load_before']} before, {report['load_after']} after. `auto` precision on this machine: "
        f"**{report['auto']['choice']}** (probe: float32 {report['auto'].get('float32_s', float('nan')):.4f} s, "
        f"bfloat16 {report['auto'].get('bfloat16_s', float('nan')):.4f} s). Command: `{report['command']}`.",
        "",
    ]
    precisions = list(report["rows"])
    headers = ["", *precisions]
    row_of = report["rows"]
    worker = "Segment worker (inference, regions, score, save)"
    rows = [["`uamc segment`, end to end (s)", *[f"{row_of[p]['cli']['wall_seconds']:.1f}" for p in precisions]],
            ["`uamc segment`, peak memory (GB)", *[f"{report['rows'][p]['cli']['peak_gb']:.2f}" for p in precisions]],
            ["panel Segment worker (s)", *[f"{row_of[p]['panel']['stages'][worker]:.1f}" for p in precisions]],
            ["panel, peak memory (GB)", *[f"{report['rows'][p]['panel']['peak_gb']:.2f}" for p in precisions]]]
    for stage, value in report["rows"][precisions[0]]["stages"]["stages"].items():
        if isinstance(value, float):
            rows.append([f"stage: {stage} (s)", *[f"{row_of[p]['stages']['stages'][stage]:.2f}" for p in precisions]])
    lines.append(common.markdown_table(headers, rows))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="model file (default: the packaged one)")
    parser.add_argument("--case", default="SN4LF8SGBSRQUPTDSX78", help="LA 2018 case to pad (default: val16's)")
    parser.add_argument("--precision", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=common.DEFAULT_CACHE_DIR)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write", type=Path, metavar="DOC")
    parser.add_argument("--section", default=SECTION,
                        help=f"the section of DOC to write (default {SECTION}; another machine: a section of its own)")
    args = parser.parse_args(argv)
    if not (LA2018 / args.case / "mri_norm2.h5").is_file():
        raise SystemExit(f"no LA 2018 scan {args.case} under {LA2018}")
    cache = args.cache_dir / "real-size"
    volume = full_size_volume(cache, args.case)
    study = panel_study(cache, volume)
    from napari_uamc.engine.device import measured_cpu_precision

    load_before = common.load_average()
    report: dict[str, Any] = {"case": args.case, "model": args.model, "repeats": args.repeats,
                              "when": common.utc_now(), "machine": common.describe_machine(common.machine_info()),
                              "command": common.command_line(argv), "auto": measured_cpu_precision(),
                              "load_before": load_before, "rows": {}}
    for precision in args.precision:
        report["rows"][precision] = {}
        for mode, target in (("cli", volume), ("stages", volume), ("panel", study)):
            runs = [run_row(mode, precision, args.model, target) for _ in range(args.repeats)]
            report["rows"][precision][mode] = median_rows(runs)
            print(f"{precision} {mode}: {report['rows'][precision][mode]['wall_seconds']:.1f} s wall, "
                  f"peak {report['rows'][precision][mode]['peak_gb']:.2f} GB; "
                  + ", ".join(f"{k} {v:.2f}" for k, v in report['rows'][precision][mode]['stages'].items()
                              if isinstance(v, float)), flush=True)
    report["load_after"] = common.load_average()
    common.save_report(report, args.json, args.write, args.section, document)
    return 0


if __name__ == "__main__":
    sys.exit(main())
