"""Speed, memory and agreement of `uamc segment`'s inference configurations.

Times :func:`napari_uamc.engine.inference.segment_volume` on one phantom volume (default
288 x 288 x 88, the size of an LA 2018 MRI) for several window layouts and precisions, runs the
configurations interleaved ``--repeats`` times and reports medians (this machine is noisy), the
peak resident memory added during a run, and -- with ``--reference`` -- the mask Dice of each
configuration against the paper's test procedure (112 x 112 x 80 windows at stride 18/18/4,
uniform averaging, float32: 363 windows, minutes on a CPU).

Agreement numbers mean something only for a trained model (``--model``); with no model and no
packaged default, a randomly initialised network of ``--width`` is timed and agreement is
marked n/a.

    python benchmarks/bench_inference.py --repeats 3 --reference --write docs/benchmark-inference.md
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch

from napari_uamc.data.phantoms import make_phantom
from napari_uamc.data.volume import Volume
from napari_uamc.engine.checkpoint import ModelMeta, default_model_path, load_checkpoint
from napari_uamc.engine.device import keep_freed_memory
from napari_uamc.engine.inference import InferenceConfig, segment_volume
from napari_uamc.engine.model import DualTaskVNet
from napari_uamc.errors import CheckpointError

PAPER_PATCH = (112, 112, 80)
PAPER_STRIDE = (18, 18, 4)

#: name -> InferenceConfig overrides (T and device are added from the command line).
CONFIGS: dict[str, dict] = {
    "default: sliding 0.5 + MC tiles": {},
    "sliding 0.25 + MC tiles": {"overlap": 0.25},
    "tiles for both (--windows tiles)": {"windows": "tiles"},
    "sliding 0.5 + MC on covering windows": {"mc_windows": "cover"},
    "sliding 0.5, uniform weights": {"weighting": "uniform"},
    "default, unfused (autocast bf16)": {"fuse": False},
    "default, float32": {"precision": "float32"},
}


class PeakMemory:
    """Peak resident memory (bytes) of this whole process while the context is open."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self.start = self.rss()
        self.peak = self.start
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def load_model(path: str | None, width: int) -> tuple[DualTaskVNet, ModelMeta, str]:
    if path is None:
        try:
            path = str(default_model_path())
        except CheckpointError:
            torch.manual_seed(0)
            model = DualTaskVNet(width=width).eval()
            meta = ModelMeta.for_model(model, patch=PAPER_PATCH)
            return model, meta, f"random weights, width {width} (timing only)"
    model, meta = load_checkpoint(path)
    return model, meta, f"{path} (width {meta.width})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model file (default: packaged, else random)")
    parser.add_argument("--width", type=int, default=16, help="width of the random model (default 16)")
    parser.add_argument("--shape", type=int, nargs=3, default=(288, 288, 88), metavar=("X", "Y", "Z"))
    parser.add_argument("--samples", type=int, default=8, help="MC samples T (default 8)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", nargs="*", default=None, help="substrings of configurations to run")
    parser.add_argument("--reference", action="store_true", help="also run the paper's stride-18/4 float32 pass")
    parser.add_argument("--write", type=Path, default=None, help="also write the table (markdown) here")
    parser.add_argument("--no-allocator-tuning", action="store_true", help="leave glibc malloc as it is")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.no_allocator_tuning:
        keep_freed_memory()

    model, meta, model_text = load_model(args.model, args.width)
    case = make_phantom(seed=7, shape=tuple(args.shape))
    volume = Volume(case.image.astype(np.float32), case.affine, name="phantom")
    # time the network at the model's own spacing (no resampling in the measurement)
    meta = dataclasses.replace(meta, spacing=volume.spacing)
    trained = "random" not in model_text

    configs = {
        name: InferenceConfig(mc_samples=args.samples, device=args.device, **overrides)
        for name, overrides in CONFIGS.items()
        if not args.only or any(part in name for part in args.only)
    }
    segment_volume(model, meta, Volume(volume.array[:64, :64, :48], volume.affine), InferenceConfig(mc_samples=1))

    times: dict[str, list[float]] = {name: [] for name in configs}
    cpu_times: dict[str, list[float]] = {name: [] for name in configs}
    memory: dict[str, int] = {name: 0 for name in configs}
    labels: dict[str, np.ndarray] = {}
    info: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for name, cfg in configs.items():
            cpu_start = time.process_time()
            with PeakMemory() as peak:
                result = segment_volume(model, meta, volume, cfg)
            cpu_times[name].append(time.process_time() - cpu_start)
            times[name].append(result.timings["total"])
            memory[name] = max(memory[name], peak.peak)
            labels[name], info[name] = result.label, result.info
            print(
                f"[{repeat + 1}/{args.repeats}] {name}: {result.timings['total']:.1f} s, "
                f"CPU {cpu_times[name][-1]:.1f} s",
                flush=True,
            )

    reference = None
    if args.reference:
        ref_cfg = InferenceConfig(
            mc_samples=0, windows="sliding", stride=PAPER_STRIDE, patch=PAPER_PATCH, weighting="uniform",
            precision="float32", channels_last=False, device=args.device,
        )
        started = time.perf_counter()
        reference = segment_volume(model, meta, volume, ref_cfg)
        print(f"reference (stride 18/4, float32, {reference.info['windows']} windows): "
              f"{time.perf_counter() - started:.0f} s", flush=True)

    lines = [
        f"Inference on a {'x'.join(map(str, args.shape))} phantom, T = {args.samples}, "
        f"model: {model_text}; device {args.device}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}; "
        f"median of {args.repeats} interleaved runs.",
        "",
        "| configuration | windows (det / MC) | median wall s | median CPU s | peak RSS GB "
        "| mask Dice vs paper stride 18/4 f32 | Dice vs ground truth |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in configs:
        agreement = "n/a" if reference is None or not trained else f"{dice(labels[name], reference.label):.4f}"
        truth = f"{dice(labels[name], case.label):.4f}" if trained else "n/a"
        lines.append(
            f"| {name} | {info[name]['windows']} / {info[name]['mc_windows']} | "
            f"{statistics.median(times[name]):.1f} | {statistics.median(cpu_times[name]):.1f} | "
            f"{memory[name] / 1e9:.2f} | {agreement} | {truth} |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    if args.write is not None:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(table + "\n")


if __name__ == "__main__":
    main()
