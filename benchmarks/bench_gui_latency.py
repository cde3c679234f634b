"""Does napari stay responsive through the whole loop? Event-loop stalls of the panel, step by step.

Runs under a (virtual) display::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/bench_gui_latency.py [--write]

A 10 ms Qt timer runs through everything and records the gap between its ticks: a gap far above
10 ms is a stall, a time during which napari did not answer a click or a repaint. The loop is
driven through the panel's own methods, each called from the event loop as a button would be:

1. **The loop** (in a fresh child process, so that nothing, torch included, is imported yet, as
   when a person starts napari): the panel opens; a study opens (its first case); Segment with
   the packaged default model (the first one: the model loads) until the three layers are on
   screen; another case opens; Segment again; *Next case*. By default the study holds 3 real LA
   2018 scans (the last 3 of ``train.list``, read from ``../shared/data/la2018``; 6 phantoms
   without it). Each step's wall time and worst gap are reported.
2. **napari alone** (in another fresh child process, no plugin): the same kind of work done to a
   bare viewer at a real scan's size (640 x 640 x 88), so the loop's gaps can be read against
   what napari itself costs on this machine: the first, second and third image layer, the first
   and second labels layer, refilling a layer's data, removing a layer.
3. **Fine-tune** (``--finetune-iterations N``, 0 to skip): the engine alone (like ``uamc
   finetune``) on a phantom study, then the same fine-tune from the panel, with its seconds per
   iteration and the worst gap while its steps ran.

Prints a table; ``--write`` puts it in docs/benchmarks.md (section ``gui``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LA2018 = ROOT.parent / "shared" / "data" / "la2018"
TIMER_MS = int(os.environ.get("UAMC_TIMER_MS", "10"))
STALL_MS = 200
EXPLANATION = (
    "A stall is a gap between two ticks of a 10 ms Qt timer: napari neither repaints nor answers a click "
    f"for that long. Goal: no gap over {STALL_MS} ms anywhere in the loop. The panel's work runs in napari "
    "thread workers (Segment, reading a case's files) or a child process (the fine-tune, which on this "
    "2-core CPU trained about 25 % slower in any thread but a process's main thread); what is left on the "
    "GUI thread is putting arrays in layers."
)


# ------------------------------------------------------------------ driving the panel
class Ticker:
    """A timer that records when the Qt event loop runs it."""

    def __init__(self) -> None:
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(TIMER_MS)
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))

    def worst_between(self, start: float, end: float) -> float:
        """The longest gap (ms) between ticks that ends within [start, end + one tick]."""
        ticks = self.ticks
        gaps = [1000 * (b - a) for a, b in zip(ticks, ticks[1:]) if start <= b <= end + 0.5]
        return max(gaps) if gaps else float("nan")


def run_steps(steps: list[tuple[str, object, object]], timeout_s: float = 600.0) -> list[dict]:
    """Run each (name, action, done) in the event loop: ``action()`` as a button would, then wait
    (idle event loop) until ``done()``; returns each step's seconds and worst event-loop gap."""
    from qtpy.QtCore import QEventLoop, QTimer

    ticker = Ticker()
    if os.environ.get("UAMC_STALL_STACKS"):
        watch_stalls(ticker)
    loop = QEventLoop()
    results: list[dict] = []
    state = {"index": -1, "start": 0.0, "between": True}

    def next_step() -> None:
        state["between"] = False
        state["index"] += 1
        if state["index"] >= len(steps):
            loop.quit()
            return
        name, action, _ = steps[state["index"]]
        state["start"] = time.perf_counter()
        action()

    def poll() -> None:
        if state["between"] or state["index"] >= len(steps):
            return
        name, _, done = steps[state["index"]]
        now = time.perf_counter()
        if done() or now - state["start"] > timeout_s:
            results.append({"step": name, "seconds": now - state["start"],
                            "start": state["start"], "end": now, "timed_out": not done()})
            state["between"] = True
            QTimer.singleShot(300, next_step)  # a quiet moment between steps

    poller = QTimer()
    poller.setInterval(50)
    poller.timeout.connect(poll)
    ticker.timer.start()
    poller.start()
    QTimer.singleShot(300, next_step)
    loop.exec()
    poller.stop()
    ticker.timer.stop()
    for row in results:
        row["worst_gap_ms"] = ticker.worst_between(row["start"], row["end"])
    gaps = [1000 * (b - a) for a, b in zip(ticker.ticks, ticker.ticks[1:])]
    results.append({"step": "all", "seconds": sum(r["seconds"] for r in results),
                    "worst_gap_ms": max(gaps), "median_gap_ms": statistics.median(gaps),
                    "stalls": sum(1 for g in gaps if g > STALL_MS), "ticks": len(gaps)})
    return results


def make_loop_study(root: Path, real: bool) -> Path:
    if real:
        cases = root / "cases.list"
        cases.write_text("\n".join((LA2018 / "train.list").read_text().split()[-3:]) + "\n")
        subprocess.run([str(Path(sys.executable).with_name("uamc")), "import", str(LA2018), "--out",
                        str(root / "study"), "--labeled", "0", "--list", str(cases)],
                       check=True, stdout=subprocess.DEVNULL)
        return root / "study"
    from napari_uamc.data.phantoms import write_phantom_study

    return write_phantom_study(root / "study", cases=6, seed=7, shape=(128, 128, 64), labeled=0, domain="B")


def watch_stalls(ticker: Ticker, threshold_s: float = 0.15) -> None:
    """With UAMC_STALL_STACKS=1: print what the GUI thread runs when its timer is late (diagnosis)."""
    import threading
    import traceback

    main = threading.main_thread().ident

    def watch() -> None:
        last_printed = None
        while True:
            time.sleep(0.05)
            ticks = ticker.ticks
            if ticks and time.perf_counter() - ticks[-1] > threshold_s and last_printed != ticks[-1]:
                last_printed = ticks[-1]
                frame = sys._current_frames().get(main)
                stack = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack(frame)]
                print("STALL", " < ".join(reversed(stack[-14:])), file=sys.stderr, flush=True)

    threading.Thread(target=watch, daemon=True).start()


def loop_child(study: Path, out: Path) -> None:
    """Phase 1, in a fresh process: the panel's loop with the packaged model."""
    import napari

    started = time.perf_counter()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    napari_seconds = time.perf_counter() - started
    holder: dict = {}

    def open_panel() -> None:
        from napari_uamc._napari.panel import UamcPanel

        holder["panel"] = UamcPanel(viewer)
        viewer.window.add_dock_widget(holder["panel"])

    def session():
        return holder["panel"].session

    def open_other_case() -> None:
        s = session()
        holder["other"] = next(c for c in s.study.cases() if c != s.case)
        s.open_case(holder["other"])

    def settled() -> bool:
        s = session()
        return not s.segmenting and not getattr(s, "opening", False)

    steps = [
        ("panel opens", open_panel, lambda: "panel" in holder),
        ("open study (its first case on screen)", lambda: session().open_study(study),
         lambda: settled() and session().case is not None),
        ("first Segment, click to layers on screen (model loads)", lambda: session().segment(), settled),
        ("open another case", open_other_case, lambda: settled() and session().case == holder["other"]),
        ("Segment again", lambda: session().segment(), settled),
        ("Next case", lambda: session().open_next_case(), settled),
    ]
    rows = run_steps(steps)
    viewer.close()
    out.write_text(json.dumps({"rows": rows, "napari_start_s": napari_seconds}))


def floor_child(out: Path, shape: tuple[int, int, int] = (88, 640, 640)) -> None:
    """Phase 2, in a fresh process: napari's own stalls for the work the panel asks of it (no
    plugin); ``shape`` as napari holds the volume (slices, rows, columns): a real LA 2018 scan."""
    import numpy as np

    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    from napari_uamc._napari import unit_registry
    from napari_uamc._napari.case_layers import warm_up_layers

    warm_up_layers()  # what the panel imports and builds in a worker before its first layers
    unit_registry.install()
    image = np.random.default_rng(0).random(shape, dtype=np.float32)
    label = (image > 0.9).astype(np.uint8)
    layers = viewer.layers

    def add_image(name: str):
        return lambda: viewer.add_image(image, contrast_limits=(0.0, 1.0), name=name)

    def refill(name: str, data: object):
        return lambda: setattr(layers[name], "data", data)

    steps = [
        ("first image layer", add_image("a"), None),
        ("second image layer", add_image("b"), None),
        ("third image layer", add_image("c"), None),
        ("first labels layer", lambda: viewer.add_labels(label, name="l"), None),
        ("second labels layer", lambda: viewer.add_labels(label.copy(), name="m"), None),
        ("refill an image layer (new array)", refill("a", image[::-1].copy()), None),
        ("refill a labels layer (new array)", refill("l", label[::-1].copy()), None),
        ("remove one layer", lambda: layers.remove("c"), None),
    ]
    rows = run_steps([(name, action, lambda: True) for name, action, _ in steps])
    viewer.close()
    out.write_text(json.dumps({"rows": rows}))


# ------------------------------------------------------------------ fine-tune (phase 3)
def make_finetune_study(root: Path, model_width: int, shape: tuple[int, int, int]) -> Path:
    import torch

    from napari_uamc.data.phantoms import write_phantom_study
    from napari_uamc.data.study import Study
    from napari_uamc.engine.checkpoint import ModelMeta, save_checkpoint
    from napari_uamc.engine.model import DualTaskVNet

    study_path = write_phantom_study(root / "ft-study", cases=6, seed=11, shape=shape, labeled=2)
    study = Study.open(study_path)
    torch.manual_seed(0)
    model = DualTaskVNet(width=model_width)
    spacing = study.read_image(study.cases()[0]).spacing
    patch = tuple(min(s, 64) // 16 * 16 for s in shape)
    meta = ModelMeta.for_model(model, spacing=spacing, patch=patch, trained_on="benchmark")
    save_checkpoint(study.model_path("v001"), model, meta)
    study.model_info_path("v001").write_text(json.dumps({"version": "v001"}))
    study.current_model = "v001"
    return study_path


def seconds_per_iteration(step_times: list[float]) -> float:
    gaps = [b - a for a, b in zip(step_times, step_times[1:])]
    return statistics.median(gaps) if gaps else float("nan")


def finetune_phase(root: Path, iterations: int, width: int, shape: tuple[int, int, int]) -> dict:
    import napari
    from napari_uamc._napari.panel import UamcPanel
    from napari_uamc.engine.finetune import finetune_study

    study = make_finetune_study(root, width, shape)
    times: list[float] = []
    finetune_study(study, iterations=iterations, on_step=lambda r: times.append(time.perf_counter()), score=False)
    cli = seconds_per_iteration(times)
    viewer = napari.Viewer(show=True)
    panel = UamcPanel(viewer)
    viewer.window.add_dock_widget(panel)
    steps_at: list[float] = []
    finetuning = panel.session.finetuning
    finetuning.stepped.connect(lambda *_: steps_at.append(time.perf_counter()))

    panel.open_study(study)
    panel.budget_unit.setCurrentText("iterations")
    panel.budget_spin.setValue(iterations)
    panel.refresh_check.setChecked(False)  # time the fine-tune alone
    rows = run_steps([("fine-tune from the panel", panel.finetune, lambda: finetuning.job is None)])
    print("fine-tune from the panel:", panel.session.texts.get("finetune"), flush=True)
    viewer.close()
    return {"cli_s_per_it": cli, "gui_s_per_it": seconds_per_iteration(steps_at), "rows": rows}


# ------------------------------------------------------------------ report
def render(report: dict) -> str:
    lines = [f"Study: {report['study']}; napari itself started in {report['napari_start_s']:.1f} s "
             f"(before the timer ran); load average {report['load']}", "",
             "| step | seconds | worst event-loop gap (ms) |", "|---|---|---|"]
    for row in report["loop"]:
        if row["step"] != "all":
            lines.append(f"| {row['step']} | {row['seconds']:.1f} | {row['worst_gap_ms']:.0f} |")
    total = report["loop"][-1]
    lines += ["", f"Whole loop: worst gap **{total['worst_gap_ms']:.0f} ms**, median {total['median_gap_ms']:.0f} ms, "
              f"{total['stalls']} gaps over {STALL_MS} ms of {total['ticks']} ticks."]
    floor = report.get("floor")
    if floor:
        lines += ["", "napari alone, no plugin (a bare viewer, a real scan's size, arrays already in memory):", "",
                  "| napari's own step | worst event-loop gap (ms) |", "|---|---|"]
        lines += [f"| {row['step']} | {row['worst_gap_ms']:.0f} |" for row in floor if row["step"] != "all"]
    ft = report.get("finetune")
    if ft:
        lines += ["", "| fine-tune | value |", "|---|---|",
                  f"| s/iteration, engine alone (like `uamc finetune`) | {ft['cli_s_per_it']:.3f} |",
                  f"| s/iteration, from the panel (child process) | {ft['gui_s_per_it']:.3f} |",
                  f"| slowdown from the GUI | {100 * (ft['gui_s_per_it'] / ft['cli_s_per_it'] - 1):+.0f} % |",
                  f"| worst event-loop gap while it ran (ms) | {ft['rows'][0]['worst_gap_ms']:.0f} |",
                  f"| gaps over {STALL_MS} ms | {ft['rows'][-1]['stalls']} of {ft['rows'][-1]['ticks']} |"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--finetune-iterations", type=int, default=20, help="0: skip the fine-tune phase")
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 64, 32))
    parser.add_argument("--phantoms", action="store_true", help="the loop on phantoms even with the real scans")
    parser.add_argument("--json", type=Path, help="also write the report as JSON")
    parser.add_argument("--write", action="store_true", help="put the table in docs/benchmarks.md")
    parser.add_argument("--loop-child", nargs=2, metavar=("STUDY", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--floor-child", type=Path, metavar="OUT", help=argparse.SUPPRESS)
    parser.add_argument("--floor-shape", type=int, nargs=3, default=(88, 640, 640), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(args.floor_child, tuple(args.floor_shape))
        return
    if args.loop_child:
        if os.environ.get("UAMC_BENCH_PATCH"):  # diagnosis: a file of timing wrappers to load first
            exec(Path(os.environ["UAMC_BENCH_PATCH"]).read_text(), {})
        loop_child(Path(args.loop_child[0]), Path(args.loop_child[1]))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import command_line, describe_machine, load_average, machine_info, write_section

    real = (LA2018 / "train.list").is_file() and not args.phantoms
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        study = make_loop_study(root, real)
        out = root / "loop.json"
        load = load_average()
        subprocess.run([sys.executable, __file__, "--loop-child", str(study), str(out)], check=True)
        loop = json.loads(out.read_text())
        report = {"study": ("3 real LA 2018 scans (last 3 of train.list), packaged model, 8 MC samples"
                            if real else "6 phantoms 128 x 128 x 64, packaged model, 8 MC samples"),
                  "loop": loop["rows"], "napari_start_s": loop["napari_start_s"],
                  "load": f"{load:.2f}" if load is not None else "?"}
        subprocess.run([sys.executable, __file__, "--floor-child", str(root / "floor.json")], check=True)
        report["floor"] = json.loads((root / "floor.json").read_text())["rows"]
        if args.finetune_iterations:
            report["finetune"] = finetune_phase(root, args.finetune_iterations, args.width, tuple(args.shape))
    text = render(report)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    if args.write:
        body = ("## GUI responsiveness: the whole loop\n\n"
                f"Command: `{command_line()}` (under Xvfb)\n\n{describe_machine(machine_info())}\n\n"
                + text + "\n\n" + EXPLANATION)
        write_section(ROOT / "docs" / "benchmarks.md", "gui", body)


if __name__ == "__main__":
    main()
