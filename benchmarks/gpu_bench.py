"""GPU benchmark: UG-MCL training iterations and inference at the paper's configuration.

Needs only torch and numpy (the GPU machine has no nibabel and no napari). It imports, from
napari_uamc, only torch-only modules at start (``engine.model``); the engine's trainer and
``segment_volume`` are timed as well (the engine imports scipy lazily), and a row whose import
fails says why it was skipped. Run from the repository root, no install needed:

    python benchmarks/gpu_bench.py                       # CUDA, paper sizes, about 2-3 minutes
    python benchmarks/gpu_bench.py --device cpu --smoke  # seconds; what the test runs
    python benchmarks/gpu_bench.py --report gpu.json --write   # results -> docs/benchmarks.md

What it times (synthetic tensors: random images with sphere labels; random weights):

- the matmul ceiling of the device in bfloat16 and float32;
- training, the paper's configuration (F = 16, 112 x 112 x 80, batch 4 with 2 labeled, T = 8),
  one full UG-MCL step (student forward/backward, T + 1 teacher passes, losses, SGD, EMA):
  the plain step of ``_plain.py`` in bf16 autocast + channels-last with the teacher passes
  stacked (with and without ``cudnn.benchmark``), the same in naive float32, and the engine's
  ``Trainer`` as ``uamc train`` runs it (data loader workers included); iterations per second,
  the projected time of the paper's 6000 iterations, peak GPU memory, FLOPs per iteration;
- inference of a 288 x 288 x 88 volume: the engine's default (``uamc segment``, T = 8) and
  ``--windows tiles``, and the paper's stride-18/4 float32 test in plain PyTorch (363 windows).

Results are printed and written as JSON to ``--json`` (default ``$OUT/gpu_bench.json`` when
``$OUT`` is set). Medians over blocks of iterations, each block timed between device syncs.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if importlib.util.find_spec("napari_uamc") is None:  # not installed: use the checkout's sources
    sys.path.insert(0, str(HERE.parent / "src"))

from _plain import (  # noqa: E402
    PAPER_STRIDE,
    PlainStep,
    StepSettings,
    paper_sliding_window,
    synthetic_batch,
)
from napari_uamc.engine.model import DualTaskVNet  # noqa: E402  (torch only)

#: The paper's number of training iterations (LA).
PAPER_ITERATIONS = 6000
DOC_SECTION = "gpu"
JSON_NAME = "gpu_bench.json"


@dataclass(frozen=True)
class Sizes:
    """Everything the benchmark's size depends on."""

    width: int = 16
    patch: tuple[int, int, int] = (112, 112, 80)
    batch: int = 4
    labeled: int = 2
    mc_samples: int = 8
    volume: tuple[int, int, int] = (288, 288, 88)
    reference_stride: tuple[int, int, int] = PAPER_STRIDE  # the paper's test (363 windows)
    warmup: int = 3
    blocks: int = 3  # timed blocks of iterations (the median is reported)
    block_iterations: int = 8
    float32_block_iterations: int = 2
    inference_repeats: int = 3
    matmul_size: int = 8192
    flop_patch: tuple[int, int, int] = (32, 32, 32)  # FLOPs are counted here, scaled per voxel


PAPER = Sizes()
SMOKE = Sizes(
    width=4, patch=(16, 16, 16), batch=2, labeled=1, mc_samples=2, volume=(40, 36, 20),
    reference_stride=(12, 12, 8), warmup=1, blocks=1, block_iterations=1,
    float32_block_iterations=1, inference_repeats=1, matmul_size=128, flop_patch=(16, 16, 16),
)


# ----------------------------------------------------------------------------------- helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else None


def machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpu_threads": torch.get_num_threads(),
        "host_cores": os.cpu_count(),
    }
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        info.update(
            card=torch.cuda.get_device_name(device),
            memory_gb=round(properties.total_memory / 1e9, 1),
            multiprocessors=properties.multi_processor_count,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            bf16=torch.cuda.is_bf16_supported(),
            cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
            matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32,
        )
    else:
        info["card"] = f"CPU ({platform.machine()})"
    return info


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    """Median TFLOP/s of ``size``-cubed matrix products (the device's arithmetic ceiling)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b)
    sync(device)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b)
        sync(device)
        rates.append(2 * size**3 / (time.perf_counter() - started) / 1e12)
    return statistics.median(rates)



def rate_row(per_iteration: list[float], timed_iterations: int, device) -> dict:
    """Speed of a timed training loop: median s/it over blocks, it/s, the paper's 6000 its, memory."""
    seconds = statistics.median(per_iteration)
    return {
        "seconds_per_iteration": seconds,
        "iterations_per_second": 1.0 / seconds,
        "projected_6000_minutes": seconds * PAPER_ITERATIONS / 60.0,
        "block_seconds_per_iteration": per_iteration,
        "timed_iterations": timed_iterations,
        "peak_gpu_memory_gb": peak_gb(device),
    }


def median_block_seconds(step: Callable[[], Any], device: torch.device, sizes: Sizes, per_block: int) -> dict[str, Any]:
    """Warm up, then time ``sizes.blocks`` blocks of ``per_block`` steps between device syncs."""
    for _ in range(sizes.warmup):
        step()
    sync(device)
    reset_peak(device)
    per_iteration = []
    for _ in range(sizes.blocks):
        started = time.perf_counter()
        for _ in range(per_block):
            step()
        sync(device)
        per_iteration.append((time.perf_counter() - started) / per_block)
    return rate_row(per_iteration, sizes.blocks * per_block, device)


def build_pair(sizes: Sizes, device: torch.device, channels_last: bool) -> tuple[DualTaskVNet, DualTaskVNet]:
    torch.manual_seed(0)
    student = DualTaskVNet(width=sizes.width).to(device)
    if channels_last:
        student = student.to(memory_format=torch.channels_last_3d)
    return student, copy.deepcopy(student)


def settings_for(sizes: Sizes) -> StepSettings:
    return StepSettings(mc_samples=sizes.mc_samples)


# ---------------------------------------------------------------------------------- training
def plain_training(sizes: Sizes, device: torch.device, *, amp: bool, stacked: bool,
                   cudnn_benchmark: bool) -> dict[str, Any]:
    """Iterations per second of the plain UG-MCL step (``_plain.PlainStep``)."""
    torch.backends.cudnn.benchmark = cudnn_benchmark
    student, teacher = build_pair(sizes, device, channels_last=amp)
    step = PlainStep(
        student, teacher, settings_for(sizes), amp_dtype=torch.bfloat16 if amp else None,
        channels_last=amp, mc_chunk=sizes.mc_samples + 1 if stacked else 1,
    )
    images, labels = synthetic_batch(sizes.batch, sizes.labeled, sizes.patch)
    images, labels = images.to(device), labels.to(device)
    per_block = sizes.block_iterations if amp else sizes.float32_block_iterations
    result = median_block_seconds(lambda: step(images, labels), device, sizes, per_block)
    split = step(images, labels, split=True)
    result.update({f"{part}_seconds": value for part, value in split.items()})
    torch.backends.cudnn.benchmark = False
    return result


def flops_per_iteration(sizes: Sizes) -> float:
    """FLOPs of one plain UG-MCL step at ``sizes`` (counted on the CPU at a small patch, scaled
    per voxel: every layer of the V-Net is a convolution whose cost is linear in the voxels)."""
    from torch.utils.flop_counter import FlopCounterMode

    small = Sizes(width=sizes.width, patch=sizes.flop_patch, batch=sizes.batch, labeled=sizes.labeled,
                  mc_samples=sizes.mc_samples)
    student, teacher = build_pair(small, torch.device("cpu"), channels_last=False)
    step = PlainStep(student, teacher, settings_for(small))
    images, labels = synthetic_batch(small.batch, small.labeled, small.patch)
    with FlopCounterMode(display=False) as counter:
        step(images, labels)
    return counter.get_total_flops() * math.prod(sizes.patch) / math.prod(small.patch)


def engine_training(sizes: Sizes, device: torch.device, cudnn_benchmark: bool = False) -> dict[str, Any]:
    """Iterations per second of the engine's ``Trainer`` (as ``uamc train`` runs it)."""
    from napari_uamc.engine.config import TrainConfig
    from napari_uamc.engine.dataset import TrainingCase
    from napari_uamc.engine.training import Trainer

    case_shape = tuple(p + 16 for p in sizes.patch)
    rng = np.random.default_rng(0)
    cases = []
    for index in range(2 * sizes.batch):
        _, label = synthetic_batch(1, 1, case_shape, seed=index)
        image = rng.normal(size=case_shape).astype(np.float32) + 2.0 * label[0].numpy()
        cases.append(TrainingCase(f"case{index}", image, label[0].numpy().astype(np.uint8)
                                  if index < sizes.batch else None, (1.0, 1.0, 1.0)))
    per_block = sizes.block_iterations
    cfg = TrainConfig(
        width=sizes.width, patch=sizes.patch, batch_size=sizes.batch,
        labeled_batch_size=sizes.labeled, mc_samples=sizes.mc_samples,
        iterations=sizes.warmup + sizes.blocks * per_block + 1,  # + 1: the student/teacher split
    )
    torch.backends.cudnn.benchmark = cudnn_benchmark
    trainer = Trainer(cfg, cases[: sizes.batch], cases[sizes.batch:], device=device)
    steps = trainer.steps()
    rate = median_block_seconds(lambda: next(steps), device, sizes, per_block)
    split = trainer_split(trainer, steps, device)
    steps.close()
    torch.backends.cudnn.benchmark = False
    return {
        **split,
        **rate,
        "precision": str(trainer.dtype).removeprefix("torch."),
        "data_workers": trainer.data_workers,
        "mc_chunk": trainer.mc_chunk,
    }


def trainer_split(trainer: Any, steps: Any, device: torch.device) -> dict[str, float]:
    """Run one more step of ``trainer`` with its teacher passes timed between device syncs:
    ``teacher_seconds`` (the T + 1 passes) and ``student_seconds`` (the rest of the step)."""
    original = trainer.method.teacher_outputs
    spent: list[float] = []

    def timed_teacher(x: torch.Tensor) -> Any:
        sync(device)
        started = time.perf_counter()
        out = original(x)
        sync(device)
        spent.append(time.perf_counter() - started)
        return out

    trainer.method.teacher_outputs = timed_teacher
    try:
        sync(device)
        started = time.perf_counter()
        next(steps)
        sync(device)
        total = time.perf_counter() - started
    finally:
        del trainer.method.teacher_outputs  # back to the class's method
    teacher = sum(spent)
    return {"teacher_seconds": teacher, "student_seconds": total - teacher}


# --------------------------------------------------------------------------------- inference
def synthetic_volume(shape: tuple[int, int, int]) -> np.ndarray:
    _, label = synthetic_batch(1, 1, shape, seed=7)
    rng = np.random.default_rng(7)
    return (rng.normal(size=shape) + 2.0 * label[0].numpy()).astype(np.float32)


def timed_repeats(run: Callable[[], Any], device: torch.device, repeats: int,
                  warmup: bool = True) -> tuple[list[float], Any]:
    if warmup:
        run()  # cuDNN plans, allocator
        sync(device)
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = run()
        sync(device)
        times.append(time.perf_counter() - started)
    return times, out


def plain_reference_inference(sizes: Sizes, device: torch.device, image: np.ndarray) -> dict[str, Any]:
    """The paper's stride-18/4 float32 test in plain PyTorch (no uncertainty)."""
    torch.manual_seed(0)
    model = DualTaskVNet(width=sizes.width).eval()
    times, (probabilities, _, windows) = timed_repeats(
        lambda: paper_sliding_window(model, image, sizes.patch, sizes.reference_stride, device), device, 1,
        warmup=False,  # hundreds of windows: the first one's set-up is noise
    )
    return {"seconds": statistics.median(times), "windows": windows,
            "label": np.argmax(probabilities, axis=0).astype(np.uint8)}


def engine_inference(sizes: Sizes, device: torch.device, image: np.ndarray, windows: str,
                     mc_batch: int = 1) -> dict[str, Any]:
    """``segment_volume`` as ``uamc segment`` runs it (T MC samples, default precision)."""
    from napari_uamc.data.volume import Volume
    from napari_uamc.engine.checkpoint import ModelMeta
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    torch.manual_seed(0)
    model = DualTaskVNet(width=sizes.width).eval()
    meta = ModelMeta.for_model(model, patch=sizes.patch)
    volume = Volume(image, np.eye(4))
    cfg = InferenceConfig(mc_samples=sizes.mc_samples, device=str(device), windows=windows, mc_batch=mc_batch)
    reset_peak(device)
    times, result = timed_repeats(lambda: segment_volume(model, meta, volume, cfg), device,
                                  sizes.inference_repeats)
    return {"seconds": statistics.median(times), "all_seconds": times,
            "windows": result.info["windows"], "mc_windows": result.info["mc_windows"],
            "precision": result.info["precision"], "peak_gpu_memory_gb": peak_gb(device),
            "label": result.label}


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


# ------------------------------------------------------------------------------------- runner
def attempt(results: dict[str, Any], name: str, run: Callable[[], dict[str, Any]]) -> None:
    """Run one measurement; a failure is recorded (with its reason) and the others go on."""
    started = time.perf_counter()
    print(f"... {name}", flush=True)
    try:
        results[name] = run()
    except ImportError as error:
        results[name] = {"skipped": f"needs a module this machine lacks: {error}"}
    except Exception as error:  # noqa: BLE001 - one failed row must not lose the others
        results[name] = {"error": f"{type(error).__name__}: {error}",
                         "traceback": traceback.format_exc(limit=4)}
    finally:
        torch.backends.cudnn.benchmark = False  # each row sets its own
    results[name]["wall_seconds"] = round(time.perf_counter() - started, 1)


def run_all(sizes: Sizes, device: torch.device) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": machine(device), "sizes": asdict(sizes),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    ceiling: dict[str, Any] = {}
    attempt(ceiling, "bfloat16", lambda: {"tflops": matmul_tflops(device, torch.bfloat16, sizes.matmul_size)})
    attempt(ceiling, "float32", lambda: {"tflops": matmul_tflops(device, torch.float32, sizes.matmul_size)})
    report["matmul"] = ceiling

    training: dict[str, Any] = {}
    attempt(training, "flops", lambda: {"flops_per_iteration": flops_per_iteration(sizes)})
    attempt(training, "plain bf16 channels-last, teacher stacked",
            lambda: plain_training(sizes, device, amp=True, stacked=True, cudnn_benchmark=False))
    if device.type == "cuda":
        attempt(training, "plain bf16 channels-last, teacher stacked, cudnn.benchmark",
                lambda: plain_training(sizes, device, amp=True, stacked=True, cudnn_benchmark=True))
    attempt(training, "plain float32, one teacher pass per forward (naive)",
            lambda: plain_training(sizes, device, amp=False, stacked=False, cudnn_benchmark=False))
    attempt(training, "engine Trainer (uamc train defaults)", lambda: engine_training(sizes, device))
    if device.type == "cuda":
        attempt(training, "engine Trainer, cudnn.benchmark",
                lambda: engine_training(sizes, device, cudnn_benchmark=True))
    report["training"] = training

    image = synthetic_volume(sizes.volume)
    inference: dict[str, Any] = {}
    stride = "/".join(map(str, sizes.reference_stride))
    reference_row = f"paper stride {stride} float32, plain PyTorch"
    attempt(inference, reference_row, lambda: plain_reference_inference(sizes, device, image))
    attempt(inference, f"uamc segment default (T={sizes.mc_samples})",
            lambda: engine_inference(sizes, device, image, "sliding"))
    attempt(inference, f"uamc segment --windows tiles (T={sizes.mc_samples})",
            lambda: engine_inference(sizes, device, image, "tiles"))
    attempt(inference, f"uamc segment default, all {sizes.mc_samples} MC samples in one batch (mc_batch)",
            lambda: engine_inference(sizes, device, image, "sliding", mc_batch=sizes.mc_samples))
    reference = inference[reference_row].pop("label", None)
    for row in inference.values():
        label = row.pop("label", None)
        if label is not None and reference is not None:
            row["mask_dice_vs_reference_random_weights"] = dice(label, reference)
    report["inference"] = inference
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return report


# ------------------------------------------------------------------------------------ reports
def _fmt(value: Any, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """Markdown: the card, then the training and inference tables."""
    m = report["machine"]
    sizes = report["sizes"]
    ceiling = report.get("matmul", {})
    flops = report.get("training", {}).get("flops", {}).get("flops_per_iteration")
    lines = [
        f"Card: **{m.get('card')}**; torch {m.get('torch')}, CUDA {m.get('cuda', 'n/a')}, cuDNN "
        f"{m.get('cudnn', 'n/a')}; run {report.get('started')}. Matmul ceiling: bfloat16 "
        f"{_fmt(ceiling.get('bfloat16', {}).get('tflops'), 0)} TFLOP/s, float32 "
        f"{_fmt(ceiling.get('float32', {}).get('tflops'), 0)} TFLOP/s.",
        "",
        f"Training, F = {sizes['width']}, patch {'x'.join(map(str, sizes['patch']))}, batch "
        f"{sizes['batch']} ({sizes['labeled']} labeled), T = {sizes['mc_samples']}; synthetic "
        f"batches; median of {sizes['blocks']} timed blocks after {sizes['warmup']} warm-up steps; "
        f"one step is {_fmt(flops and flops / 1e12, 2)} TFLOP.",
        "",
        "| training step | s / iteration | it/s | 6000 iterations | TFLOP/s | peak GPU GB | student s | teacher s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in report.get("training", {}).items():
        if name == "flops":
            continue
        if "seconds_per_iteration" not in row:
            lines.append(f"| {name} | {row.get('skipped') or row.get('error')} | | | | | | |")
            continue
        rate = flops / row["seconds_per_iteration"] / 1e12 if flops else None
        lines.append(
            f"| {name} | {row['seconds_per_iteration']:.3f} | {row['iterations_per_second']:.2f} | "
            f"{row['projected_6000_minutes']:.1f} min | {_fmt(rate, 1)} | {_fmt(row.get('peak_gpu_memory_gb'), 1)} | "
            f"{_fmt(row.get('student_seconds'), 3)} | {_fmt(row.get('teacher_seconds'), 3)} |"
        )
    lines += [
        "",
        f"Inference of a {'x'.join(map(str, sizes['volume']))} volume (random weights, F = "
        f"{sizes['width']}):",
        "",
        "| inference | median s | windows (det / MC) | precision | peak GPU GB |",
        "|---|---|---|---|---|",
    ]
    for name, row in report.get("inference", {}).items():
        if "seconds" not in row:
            lines.append(f"| {name} | {row.get('skipped') or row.get('error')} | | | |")
            continue
        windows = f"{row['windows']} / {row.get('mc_windows', 0)}"
        lines.append(f"| {name} | {row['seconds']:.2f} | {windows} | {row.get('precision', 'float32')} | "
                     f"{_fmt(row.get('peak_gpu_memory_gb'), 1)} |")
    return lines


NOT_RUN_TEXT = """\
## GPU

**Not run yet**: no GPU was available to the work so far. `benchmarks/gpu_bench.py` is ready for
one run of a few minutes on a CUDA machine (an H100/H200). It needs only torch and numpy (no
install of napari-uamc, no nibabel or napari); from the repository root:

```
python3 benchmarks/gpu_bench.py --json gpu_bench.json          # about 2-3 minutes on an H100
python benchmarks/gpu_bench.py --report gpu_bench.json --write  # back here: the tables into this file
```

(With `$OUT` set, as on the project's device machine, the JSON also goes to `$OUT/gpu_bench.json`
without `--json`.)

It times, on synthetic tensors with random weights, the paper's training configuration (F = 16,
112 x 112 x 80, batch 4 with 2 labeled, T = 8; one full UG-MCL step: student forward and
backward, T + 1 teacher passes, losses, SGD, EMA) in bf16 autocast + channels-last, the same
step in naive float32, and the engine's `Trainer` as `uamc train` runs it (its data loader
workers included), with and without `cudnn.benchmark`; and the inference of a 288 x 288 x 88
volume (`uamc segment`'s default with T = 8, `--windows tiles`, the default with all T samples
in one batch, and the paper's stride-18/4 float32 test in plain PyTorch). It
reports iterations per second, the projected time of the paper's 6000 iterations (goal: under
10 minutes on one H100), peak GPU memory, and the card's name. The engine imports scipy only
inside the functions that need it (none of which the timed paths call), so its rows run with
torch and numpy alone; should an import still fail, the row says why and the plain rows still
run. `--device cpu --smoke` runs the
same code at tiny sizes in seconds (`tests/benchmarks/test_gpu_smoke.py`).
"""


def section_text(report: dict[str, Any] | None, command: str) -> str:
    if report is None:
        return NOT_RUN_TEXT
    return "\n".join([
        "## GPU", "",
        f"`{command}`, then `python benchmarks/gpu_bench.py --report gpu_bench.json --write`.", "",
        *summary_lines(report),
    ])


def write_doc(doc: Path, report: dict[str, Any] | None) -> Path:
    import _common as common

    command = "python benchmarks/gpu_bench.py --json gpu_bench.json"
    return common.write_section(doc, DOC_SECTION, section_text(report, command))


def default_json_path() -> Path | None:
    out = os.environ.get("OUT")
    return Path(out) / JSON_NAME if out else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (seconds); for tests on a CPU")
    parser.add_argument("--json", type=Path, default=None, help=f"write the results here (default $OUT/{JSON_NAME})")
    parser.add_argument("--report", type=Path, default=None, help="run nothing: show (and --write) this JSON")
    parser.add_argument("--write", nargs="?", const=HERE.parent / "docs" / "benchmarks.md", type=Path,
                        metavar="DOC", help="measure nothing; write the GPU section of docs/benchmarks.md "
                        "from --report (without it: the how-to-run text)")
    args = parser.parse_args(argv)

    if args.report is not None or args.write is not None:  # reporting only, no measurement
        report = json.loads(args.report.read_text()) if args.report is not None else None
        if report is not None:
            print("\n".join(summary_lines(report)))
        if args.write is not None:
            print(f"wrote {write_doc(args.write, report)}")
        return 0

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device here (use --device cpu --smoke to try the script)", file=sys.stderr)
        return 2
    sizes = SMOKE if args.smoke else PAPER
    report = run_all(sizes, device)
    print()
    print("\n".join(summary_lines(report)))
    path = args.json or default_json_path()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, default=str))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
