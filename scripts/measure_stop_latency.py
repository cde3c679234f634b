"""How long the panel's fine-tune takes to end after Stop, per stage (issue 12 part 4).

Copies a study (default: ./demo-study-la2018, six real LA scans), accepts the ground truth of
two cases, and runs the panel's fine-tune (``finetune_in_child``, the child process the panel
uses) from the packaged model once per stage, pressing Stop ``--into`` seconds after the stage
began; prints the seconds from Stop to the end of the run, the machine's load, and the seconds
the comparison with the parent takes when not stopped. Run: ``.venv/bin/python
scripts/measure_stop_latency.py``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

#: stage -> how the run reveals it (a message's start, or "step" for the training steps)
STAGES = {
    "comparison with the accepted labels": "comparing the starting model",
    "reading the cases": "reading ",
    "training steps": "step",
    "BatchNorm recalibration": "recalibrating",
    "scoring (training Dice)": "scoring",
    "comparison with the parent (other cases)": "comparing v",
}


def _study_copy(source: Path, folder: Path, accepted: int):
    from napari_uamc.data.study import Study

    for name in ("imagesTr", "groundTruth", "dataset.json"):
        item = source / name
        (shutil.copytree if item.is_dir() else shutil.copy)(item, folder / name)
    study = Study.open(folder)
    for case in study.cases()[:accepted]:
        study.accept(case, study.read_ground_truth(case))
    return study


def _run(root: Path, trigger: str | None, into: float, iterations: int) -> dict:
    from napari_uamc._napari.tasks import finetune_in_child
    from napari_uamc.errors import UamcError

    state: dict = {"began": None, "stop": None, "stages": []}

    def seen(kind: str, text: str = "") -> None:
        if trigger is not None and state["began"] is None and (
                (trigger == "step" and kind == "step") or (kind == "message" and text.startswith(trigger))):
            state["began"] = time.monotonic()

    def should_stop() -> bool:
        if state["stop"] is None and state["began"] is not None and time.monotonic() - state["began"] >= into:
            state["stop"] = time.monotonic()
        return state["stop"] is not None

    started = time.monotonic()
    outcome, error = None, None
    try:
        outcome = finetune_in_child(
            root, iterations=iterations, device="cpu", adopt=False, should_stop=should_stop,
            on_step=lambda report: seen("step"), on_message=lambda text: (seen("message", text),
                                                                          state["stages"].append(text)),
        )
    except UamcError as failure:
        error = str(failure)
    ended = time.monotonic()
    change = getattr(outcome, "change", None)
    return {
        "stopped_in": None if state["stop"] is None else ended - state["stop"],
        "run": ended - started,
        "version": getattr(getattr(outcome, "result", None), "version", None),
        "error": error,
        "compare_seconds": getattr(change, "seconds", None),
        "compared": None if change is None else f"{len(change.cases)} of {change.of}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", default="demo-study-la2018")
    parser.add_argument("--into", type=float, default=0.5, help="seconds into a stage when Stop is pressed")
    parser.add_argument("--iterations", type=int, default=4)
    parser.add_argument("--stages", nargs="*", default=list(STAGES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp) / "study"
        root.mkdir()
        study = _study_copy(Path(args.study), root, accepted=2)
        print(f"study: {len(study.cases())} cases ({args.study}), 2 accepted; {os.cpu_count()} CPUs")
        for stage in args.stages:
            load = os.getloadavg()[0]
            row = _run(root, STAGES[stage], args.into, args.iterations)
            stopped = "not stopped" if row["stopped_in"] is None else f"ended {row['stopped_in']:.2f} s after Stop"
            print(f"{stage:45s} {stopped:28s} load {load:.2f}  run {row['run']:.1f} s  "
                  f"version {row['version']}  {row['error'] or ''}", flush=True)
            for version in study.model_versions():  # each run starts from the packaged model
                study.model_path(version).unlink()
        row = _run(root, None, 0.0, args.iterations)
        print(f"not stopped: run {row['run']:.1f} s; comparison with the parent {row['compare_seconds']:.1f} s "
              f"on {row['compared']} other cases; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
