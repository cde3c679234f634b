"""How good the whole-case teacher targets are, step by step: the trace behind the semi-supervised
fine-tune's numbers (issue 10).

Repeats one bench_loop run on real LA scans (its study, its accepted cases, its fine-tune settings
and budget, read from the run's cached JSON) and records every refresh of the teacher targets
(:mod:`napari_uamc.engine.teacher_targets`): per case and step, the share of voxels trusted (below
the uncertainty threshold), the Dice of the target's label against the expert label on the
working grid, and the accuracy on the trusted voxels. A target no better than the model it
trains cannot lift it; a trusted share near 1 with a low Dice teaches the errors. Writes
``<run>.trace.json`` beside ``--out`` and prints a table. Scores nothing after training. With the
target gate (``target_gate``) it also says which targets the gate kept and how good they were.

    python benchmarks/trace_teacher_targets.py \\
        .bench-cache/loop/<key>/ugmcl-cached-l1-ema-bn_k2_uncertainty_noreplay_seed0.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402
import bench_loop  # noqa: E402


def target_quality(targets: Any, index: int, truth: np.ndarray) -> dict[str, float]:
    """Trusted share, Dice (all voxels) and accuracy on the trusted voxels of case ``index``'s target."""
    from napari_uamc.data.metrics import dice
    from napari_uamc.engine.teacher_targets import target_threshold

    maps = targets.maps[index]
    label = np.argmax(maps.probabilities, axis=0)
    uncertainty = np.log(targets.cfg.n_classes) - maps.headroom.astype(np.float32)
    trusted = uncertainty < target_threshold(targets.cfg)
    return {
        "trusted": float(trusted.mean()),
        "dice": float(dice(label == 1, truth == 1)),
        "trusted_accuracy": float((label[trusted] == truth[trusted]).mean()) if trusted.any() else float("nan"),
        "trusted_foreground_recall": float(((label == 1) & trusted & (truth == 1)).sum() / max((truth == 1).sum(), 1)),
        "gate_kept": bool(maps.trusted),  # False: the target gate (cfg.target_gate) found it implausible
    }


def trace(run_path: Path, threads: int | None) -> dict[str, Any]:
    from napari_uamc.data.study import Study
    from napari_uamc.engine import teacher_targets
    from napari_uamc.engine.finetune import finetune_study
    from napari_uamc.engine.preprocess import resample_label

    run = json.loads(run_path.read_text())
    folder = run_path.parent
    setup = bench_loop.Setup(**{k: tuple(v) if k == "shape" else v
                                for k, v in json.loads((folder / "config.json").read_text()).items()})
    common.set_threads(threads)
    data = bench_loop._data(folder.parent.parent, setup, run["seed"], setup.start == "cold")
    records: list[dict[str, Any]] = []
    truths: dict[str, np.ndarray] = {}
    original = teacher_targets.TeacherTargets.update

    def recording(self, iteration, teacher, student):  # the targets' update, watched
        done = original(self, iteration, teacher, student)
        for index in done:
            case = self.cases[index]
            if case.name not in truths:
                label = Study.open(data["B"]).read_ground_truth(case.name).array
                truths[case.name] = (resample_label(label, case.image.shape)
                                     if label.shape != case.image.shape else label)
            records.append({"step": iteration, "case": case.name,
                            **target_quality(self, index, truths[case.name])})
        return done

    teacher_targets.TeacherTargets.update = recording
    work = Path(tempfile.mkdtemp(prefix="trace-"))
    try:
        study_dir = work / "study"
        shutil.copytree(data["B"], study_dir)
        study = Study.open(study_dir)
        for name in run["corrected"]:
            study.accept(name, study.read_ground_truth(name), note="trace: true label")
        result = finetune_study(study, model_path=folder / "start-model.pt", iterations=run["iterations"],
                                device=setup.device, overrides={**run["overrides"], "seed": run["seed"]},
                                score=False)
    finally:
        teacher_targets.TeacherTargets.update = original
        shutil.rmtree(work, ignore_errors=True)
    return {"run": str(run_path), "variant": run["variant"], "seed": run["seed"], "start": setup.start,
            "iterations": result.iterations, "refreshes": records, "machine": common.machine_info(setup.device),
            "finished": common.utc_now()}


def render(found: dict[str, Any]) -> str:
    rows = []

    def mean_dice(records: list[dict[str, Any]]) -> str:
        return f"{np.mean([r['dice'] for r in records]):.3f}" if records else "-"

    for step in sorted({r["step"] for r in found["refreshes"]}):
        at = [r for r in found["refreshes"] if r["step"] == step]
        kept = [r for r in at if r.get("gate_kept", True)]
        rows.append([step, len(at), f"{np.mean([r['trusted'] for r in at]):.2f}", mean_dice(at),
                     f"{np.nanmean([r['trusted_accuracy'] for r in at]):.4f}",
                     f"{np.mean([r['trusted_foreground_recall'] for r in at]):.2f}",
                     f"{len(kept)}: {mean_dice(kept)}", f"{len(at) - len(kept)}: "
                     f"{mean_dice([r for r in at if r not in kept])}"])
    every = found["refreshes"]
    kept = [r for r in every if r.get("gate_kept", True)]
    rows.append(["all", len(every), f"{np.mean([r['trusted'] for r in every]):.2f}", mean_dice(every),
                 f"{np.nanmean([r['trusted_accuracy'] for r in every]):.4f}",
                 f"{np.mean([r['trusted_foreground_recall'] for r in every]):.2f}",
                 f"{len(kept)}: {mean_dice(kept)}", f"{len(every) - len(kept)}: "
                 f"{mean_dice([r for r in every if r not in kept])}"])
    head = (f"{found['start']} start, {found['variant']}, seed {found['seed']}, {found['iterations']} iterations: "
            f"teacher targets of the uncorrected scans at each refresh (Dice against the expert label on the "
            f"working grid).\n\n")
    return head + common.markdown_table(
        ["step", "cases", "trusted share", "target Dice", "accuracy where trusted", "foreground trusted and right",
         "kept by the gate: n, Dice", "refused: n, Dice"], rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a cached bench_loop run (.json) with whole-case teacher targets")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    found = trace(args.run, args.threads)
    out = args.run.with_suffix(".trace.json")
    common.write_json_atomically(out, found)
    print(render(found))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
