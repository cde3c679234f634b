"""Speed and memory against the original and against the hardware (issue 5, item 3), and the
agreement of the inference layouts with the paper's test procedure.

    python benchmarks/bench_speed.py                     # everything (about 15-20 min on an idle CPU)
    python benchmarks/bench_speed.py --parts inference   # a part: inference, training, agreement
    python benchmarks/bench_speed.py --cached --write    # tables from the cache into docs/benchmarks.md
    python benchmarks/bench_speed.py --smoke             # tiny sizes, seconds

(a) Inference on a 288 x 288 x 88 phantom: the paper's test (windows of the training patch every
    18, 18, 4 voxels, float32, uniform averaging, one deterministic pass, no uncertainty) in plain
    PyTorch (``_plain.py``), against ``uamc segment``'s default path (T = 8 uncertainty) and
    ``--windows tiles``: wall time, CPU time, the ratio in the same run, and the mask Dice
    between them. With the trained model (``--model``, default: the packaged one) for the
    agreement, and with a random F = 16 network at the paper's patch for the speed when the
    trained model is smaller.
(b) FLOPs of each path (``torch.utils.flop_counter`` on the unfused network, per voxel, times
    the windows each path runs) over the measured time, against this machine's matmul ceiling
    in float32 and bfloat16.
(c) One training iteration at the paper's configuration (F = 16, 112 x 112 x 80, batch 4 with 2
    labeled, T = 8): the plain float32 step of ``_plain.py`` (no autocast, contiguous, one teacher
    pass per forward) against the engine's ``Trainer`` as ``uamc train`` runs it; median of a
    few iterations after a warm-up, with the split student / teacher.
(d) Peak memory: each configuration runs in a fresh subprocess, which reports its
    ``ru_maxrss``.
Agreement: for the trained model, the mask Dice of the inference layouts against the paper's
test on unseen phantoms of the model's training domain and on the large volume, the Dice with
the phantom's ground truth, and what ``mc_only_foreground_windows`` changes.

Results are cached per configuration under ``.bench-cache/speed/<key>/`` (the paper-window
reference pass takes minutes); a rerun skips what is there.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as common  # noqa: E402

BENCH = "speed"
SECTION = "speed"
RESULT_PREFIX = "RESULT "
#: Phantom study seed of the agreement volumes (the packaged model was trained on other seeds).
EVAL_STUDY_SEED = 4242
#: Uncertainty above this (nats) counts as "uncertain" when comparing MC layouts.
UNCERTAIN_NATS = 0.1
#: Size of the matrices of the matmul ceiling, and the runs of it.
MATMUL_SIZE, MATMUL_REPEATS = 2048, 10
#: --smoke's matmul: plumbing, not a measurement (a 2048^3 bfloat16 product emulated on a CPU
#: without native bfloat16 took minutes each and held the test suite for over 10 minutes)
SMOKE_MATMUL_SIZE, SMOKE_MATMUL_REPEATS = 128, 2
#: Input side of the FLOP count (per voxel; every layer is a convolution, linear in voxels).
FLOP_SIDE = 32
#: The issue's goals for this CPU (seconds and GB).
GOALS = {"segment_required": 30.0, "segment_stretch": 10.0, "iteration_required": 15.0,
         "iteration_stretch": 8.0, "memory_gb": 3.0, "dice": 0.99}

#: Inference layouts of the speed table: name -> InferenceConfig overrides.
SPEED_CONFIGS: dict[str, dict[str, Any]] = {
    "uamc segment --windows sliding": {"windows": "sliding"},
    "uamc segment default, tiles": {"windows": "tiles"},
}
#: Layouts of the agreement table (explicit, so a change of the engine's default changes no row).
SLIDING = {"windows": "sliding"}
AGREEMENT_CONFIGS: dict[str, dict[str, Any]] = {
    "sliding 0.5, MC on tiles": dict(SLIDING),
    "sliding 0.25": {**SLIDING, "overlap": 0.25},
    "tiles, the default": {"windows": "tiles"},
    "sliding 0.5, uniform weights": {**SLIDING, "weighting": "uniform"},
    "sliding 0.75": {**SLIDING, "overlap": 0.75},
    "sliding 0.5 in float32": {**SLIDING, "precision": "float32"},
    "MC on covering windows": {**SLIDING, "mc_windows": "cover"},
    "MC on covering windows, mc_only_foreground_windows": {
        **SLIDING, "mc_windows": "cover", "mc_only_foreground_windows": True},
}
COVER, SKIP = "MC on covering windows", "MC on covering windows, mc_only_foreground_windows"
#: Row names that the tables find by prefix (the cache stores rows by name, in any order).
REFERENCE_ROW, PLAIN_ROW = "paper test", "plain"


@dataclass(frozen=True)
class Setup:
    """What every result depends on (the cache key); the trained model is named in the run names."""

    volume_shape: tuple[int, int, int] = (288, 288, 88)
    volume_seed: int = 7
    mc_samples: int = 8
    repeats: int = 3
    stride: tuple[int, int, int] = (18, 18, 4)
    speed_width: int = 16
    speed_patch: tuple[int, int, int] = (112, 112, 80)
    train_batch: int = 4
    train_labeled: int = 2
    train_warmup: int = 1
    train_iterations: int = 3
    threads: int | None = None
    smoke: bool = False
    torch: str = ""
    cpu: str = ""


SMOKE = dict(volume_shape=(40, 36, 20), mc_samples=2, repeats=1, stride=(8, 8, 4), speed_width=4,
             speed_patch=(16, 16, 16), train_batch=2, train_labeled=1, train_iterations=1, smoke=True)

#: Phantom shapes of the agreement study (each run is cached under its seed and shape, so this
#: list is not part of the cache key): the packaged model's training shape, a larger field at
#: about the same anatomical scale (the anatomy scales with the smallest physical extent, here
#: the slices), and the speed volume, whose anatomy is about three times larger than in training.
AGREEMENT_VOLUMES = ((96, 96, 48),) * 3 + ((144, 144, 48),) * 3 + ((288, 288, 88),)
SMOKE_AGREEMENT_VOLUMES = ((32, 32, 16),)


# ------------------------------------------------------------------------------ model specs
def model_spec(path: str | None, width: int, patch: tuple[int, int, int]) -> dict[str, Any]:
    """A JSON-able recipe for a model: a checkpoint file, or a seeded random network."""
    return {"path": path} if path else {"random_width": width, "patch": list(patch)}


def load_model(spec: dict[str, Any]):
    """``(model, meta, description)`` from :func:`model_spec`'s recipe."""
    import torch

    from napari_uamc.engine.checkpoint import ModelMeta, load_checkpoint
    from napari_uamc.engine.model import DualTaskVNet

    if spec.get("path"):
        model, meta = load_checkpoint(spec["path"])
        return model, meta, (f"{Path(spec['path']).name} (trained, width {meta.width}, patch "
                             f"{'x'.join(map(str, meta.patch))}, sha256 {file_digest(spec['path'])})")
    torch.manual_seed(0)
    model = DualTaskVNet(width=spec["random_width"]).eval()
    meta = ModelMeta.for_model(model, patch=tuple(spec["patch"]))
    return model, meta, f"random weights, width {spec['random_width']}"


@functools.cache
def file_digest(path: str | None) -> str:
    if not path:
        return ""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


def spec_name(spec: dict[str, Any]) -> str:
    """Names the model in run names: ``trained-<sha256 prefix>`` or ``random<width>``."""
    return f"trained-{file_digest(spec['path'])}" if spec.get("path") else f"random{spec['random_width']}"


# ----------------------------------------------------------------------------------- volumes
def volume_file(cache: common.ResultCache, seed: int, shape: tuple[int, int, int]) -> Path:
    """A phantom written once into the cache (children read it, so their memory is theirs)."""
    import numpy as np

    from napari_uamc.data.phantoms import make_phantom

    path = cache.folder / f"volume-{seed}-{'x'.join(map(str, shape))}.npz"
    if not path.exists():
        case = make_phantom(seed, shape)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, image=case.image.astype(np.float32), label=case.label, affine=case.affine)
        tmp.replace(path)
    return path


def read_volume_file(path: str | Path):
    """``(Volume, ground-truth label)`` from :func:`volume_file`."""
    import numpy as np

    from napari_uamc.data.volume import Volume

    with np.load(path) as data:
        return Volume(data["image"], data["affine"], name=Path(path).stem), data["label"]


# ----------------------------------------------------------------------------- child process
def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its peak RSS is the measurement's alone."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"measurement {spec.get('kind')} failed (exit {done.returncode}): {done.stdout[-2000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def child_main(spec: dict[str, Any]) -> None:
    common.set_threads(spec.get("threads"))
    if spec["kind"] == "infer":
        result = measure_inference(spec)
    elif spec["kind"] == "train":
        result = measure_training(spec)
    else:
        raise SystemExit(f"unknown measurement kind {spec['kind']!r}")
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def measure_inference(spec: dict[str, Any]) -> dict[str, Any]:
    """Time one inference path on the volume file: the paper reference (``config`` None, one
    run) or ``segment_volume`` (a cold run, then ``repeats`` warm runs)."""
    import dataclasses

    import numpy as np

    volume, _ = read_volume_file(spec["volume"])
    model, meta, _ = load_model(spec["model"])
    meta = dataclasses.replace(meta, spacing=volume.spacing)  # no resampling in the measurement
    if spec["config"] is None:
        from _plain import paper_sliding_window
        from napari_uamc.engine.preprocess import zscore

        cpu, started = time.process_time(), time.perf_counter()
        probabilities, _, windows = paper_sliding_window(model, zscore(volume.array), meta.patch, spec["stride"])
        label = np.argmax(probabilities, axis=0).astype(np.uint8)
        runs, cpus, counts = [time.perf_counter() - started], [time.process_time() - cpu], (windows, 0)
        precision = "float32"
    else:
        from napari_uamc.engine.device import keep_freed_memory
        from napari_uamc.engine.inference import InferenceConfig, segment_volume

        keep_freed_memory()  # as uamc segment does
        cfg = InferenceConfig(mc_samples=spec["mc_samples"], device="cpu", **spec["config"])
        runs, cpus = [], []
        for _ in range(1 + spec["repeats"]):
            cpu, started = time.process_time(), time.perf_counter()
            result = segment_volume(model, meta, volume, cfg)
            runs.append(time.perf_counter() - started)
            cpus.append(time.process_time() - cpu)
        label, counts = result.label, (result.info["windows"], result.info["mc_windows"])
        precision = result.info["precision"]
    if spec.get("label_out"):
        np.savez_compressed(spec["label_out"], label=label)
    warm = runs[1:] or runs
    return {"cold_seconds": runs[0], "seconds": statistics.median(warm), "runs": runs,
            "cpu_seconds": statistics.median(cpus[1:] or cpus), "windows": counts[0],
            "mc_windows": counts[1], "precision": precision}


def measure_training(spec: dict[str, Any]) -> dict[str, Any]:
    """Seconds per iteration of the plain float32 step or the engine's Trainer (CPU)."""
    import torch

    import gpu_bench

    sizes = gpu_bench.Sizes(
        width=spec["width"], patch=tuple(spec["patch"]), batch=spec["batch"], labeled=spec["labeled"],
        mc_samples=spec["mc_samples"], warmup=spec["warmup"], blocks=spec["iterations"],
        block_iterations=1, float32_block_iterations=1,
    )
    cpu = torch.device("cpu")
    if spec["mode"] == "plain":
        result = gpu_bench.plain_training(sizes, cpu, amp=False, stacked=False, cudnn_benchmark=False)
    else:
        result = gpu_bench.engine_training(sizes, cpu)
    return result


# ----------------------------------------------------------------------------------- FLOPs
def network_flops_per_voxel(width: int) -> tuple[float, float]:
    """``(encoder, decoder)`` FLOPs per input voxel of an F = ``width`` dual-task V-Net."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from napari_uamc.engine.model import DualTaskVNet

    model = DualTaskVNet(width=width).eval()
    x = torch.zeros(1, 1, FLOP_SIDE, FLOP_SIDE, FLOP_SIDE)
    with torch.no_grad():
        with FlopCounterMode(display=False) as encoder:
            features = model.encode(x)
        with FlopCounterMode(display=False) as decoder:
            model.decode(features, mc_dropout=False)
    voxels = FLOP_SIDE**3
    return encoder.get_total_flops() / voxels, decoder.get_total_flops() / voxels


def inference_flops(width: int, patch, shape, config: dict[str, Any] | None, stride, mc_samples: int) -> float:
    """FLOPs of one inference path: the paper reference (``config`` None) or an engine layout."""
    from _plain import paper_window_count
    from napari_uamc.engine.inference import InferenceConfig
    from napari_uamc.engine.sweep import plan_passes

    encoder, decoder = network_flops_per_voxel(width)
    if config is None:
        return paper_window_count(shape, patch, stride) * math.prod(patch) * (encoder + decoder)
    cfg = InferenceConfig(mc_samples=mc_samples, **config)
    total = 0.0
    for sweep in plan_passes(tuple(shape), tuple(patch), cfg):
        voxels = math.prod(sweep.plan.window)
        for start in sweep.plan.starts:
            total += voxels * encoder
            total += voxels * decoder * (sweep.deterministic + mc_samples * (start in sweep.mc_starts))
    return total


def matmul_ceiling(size: int = MATMUL_SIZE, repeats: int = MATMUL_REPEATS) -> dict[str, float]:
    """Measured GFLOP/s of ``size``-cubed matrix products on this CPU in float32 and bfloat16."""
    import torch

    import gpu_bench

    cpu = torch.device("cpu")
    return {name: 1000 * gpu_bench.matmul_tflops(cpu, dtype, size, repeats)
            for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}


# ------------------------------------------------------------------------------- the parts
@dataclass
class Context:
    setup: Setup
    cache: common.ResultCache
    trained: dict[str, Any] | None  # model spec of the trained model (None: none found)
    measured: int = 0  # measurements made (not read from the cache) in this invocation

    def cached(self, run: str, measure) -> dict[str, Any]:
        """The cached result of ``run``, else ``measure()`` (stored)."""
        found = self.cache.get(run)
        if found is not None:
            return found
        print(f"... {run}", flush=True)
        self.measured += 1
        result = measure()
        self.cache.put(run, result)
        return result

    def child(self, run: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.cached(run, lambda: run_child({**spec, "threads": self.setup.threads}))


def speed_models(ctx: Context) -> list[dict[str, Any]]:
    """The trained model (agreement) and a random paper-size network (speed) if it differs."""
    s = ctx.setup
    paper = model_spec(None, s.speed_width, s.speed_patch)
    if ctx.trained is None:
        return [paper]
    _, meta, _ = load_model(ctx.trained)
    same = meta.width == s.speed_width and tuple(meta.patch) == s.speed_patch
    return [ctx.trained] if same else [ctx.trained, paper]


def reference_run(ctx: Context, spec: dict[str, Any], seed: int, shape) -> tuple[dict[str, Any], Path]:
    """The paper's test on one volume (cached with its label file)."""
    s = ctx.setup
    tag = f"{spec_name(spec)}-{seed}-{'x'.join(map(str, shape))}"
    label_path = ctx.cache.folder / f"reference-{tag}.label.npz"
    run = f"reference-{tag}"
    if not label_path.exists():
        ctx.cache.path(run).unlink(missing_ok=True)  # a result without its label is rerun
    result = ctx.child(run, {
        "kind": "infer", "model": spec, "volume": str(volume_file(ctx.cache, seed, shape)),
        "config": None, "stride": list(s.stride), "label_out": str(label_path)})
    return result, label_path


def inference_part(ctx: Context) -> dict[str, Any]:
    """(a), (b), (d) for inference: per model, the reference and the engine's layouts."""
    import numpy as np

    import gpu_bench

    s = ctx.setup
    rows: dict[str, Any] = {}
    for spec in speed_models(ctx):
        _, meta, description = load_model(spec)
        reference, reference_label = reference_run(ctx, spec, s.volume_seed, s.volume_shape)
        with np.load(reference_label) as data:
            ref = data["label"]
        model_rows = {f"{REFERENCE_ROW}: stride " + "/".join(map(str, s.stride)) + ", float32, plain PyTorch":
                      {**reference, "flops": inference_flops(meta.width, meta.patch, s.volume_shape, None,
                                                             s.stride, 0)}}
        for name, config in SPEED_CONFIGS.items():
            tag = f"{spec_name(spec)}-{name.split()[-1].strip('-')}"
            label_path = ctx.cache.folder / f"speed-{tag}.label.npz"
            result = ctx.child(f"speed-{tag}", {
                "kind": "infer", "model": spec, "config": config, "mc_samples": s.mc_samples,
                "repeats": s.repeats, "label_out": str(label_path),
                "volume": str(volume_file(ctx.cache, s.volume_seed, s.volume_shape))})
            with np.load(label_path) as data:
                result["dice_vs_reference"] = gpu_bench.dice(data["label"], ref)
            result["flops"] = inference_flops(meta.width, meta.patch, s.volume_shape, config, s.stride,
                                              s.mc_samples)
            model_rows[f"{name} (T={s.mc_samples})"] = result
        rows[description] = model_rows
    return rows


def _native_bf16() -> bool:
    from napari_uamc.engine.device import cpu_supports_bfloat16

    return cpu_supports_bfloat16()


def training_part(ctx: Context) -> dict[str, Any]:
    """(c), (d) for training: plain float32 step against the engine's Trainer."""
    import gpu_bench

    s = ctx.setup
    spec = {"kind": "train", "width": s.speed_width, "patch": list(s.speed_patch), "batch": s.train_batch,
            "labeled": s.train_labeled, "mc_samples": s.mc_samples, "warmup": s.train_warmup,
            "iterations": s.train_iterations}
    sizes = gpu_bench.Sizes(width=s.speed_width, patch=s.speed_patch, batch=s.train_batch,
                            labeled=s.train_labeled, mc_samples=s.mc_samples,
                            flop_patch=(FLOP_SIDE,) * 3 if not s.smoke else s.speed_patch)
    flops = ctx.cached("training-flops", lambda: {"flops": gpu_bench.flops_per_iteration(sizes)})["flops"]
    rows = {
        f"{PLAIN_ROW} float32 (no autocast, contiguous, one teacher pass per forward)":
            ctx.child("train-plain", {**spec, "mode": "plain"}),
        "engine default (Trainer as uamc train runs it)":
            ctx.child("train-engine", {**spec, "mode": "engine"}),
    }
    for row in rows.values():
        row["flops"] = flops
    return rows


def agreement_part(ctx: Context) -> dict[str, Any]:
    """Mask Dice of each layout against the paper's test, with the trained model."""
    if ctx.trained is None:
        return {}
    s = ctx.setup
    from napari_uamc.data.phantoms import case_seed

    volumes = {}
    counts: dict[tuple[int, ...], int] = {}
    for shape in SMOKE_AGREEMENT_VOLUMES if s.smoke else AGREEMENT_VOLUMES:
        index = counts.get(shape, 0)
        counts[shape] = index + 1
        seed = s.volume_seed if shape == s.volume_shape else case_seed(EVAL_STUDY_SEED, index)
        tag = f"{seed}-{'x'.join(map(str, shape))}"
        run = f"agreement-{spec_name(ctx.trained)}-{tag}"
        found = ctx.cache.get(run)
        if found is not None and not set(AGREEMENT_CONFIGS) <= set(found):  # layouts were added
            ctx.cache.path(run).unlink()
        volumes[tag] = ctx.cached(run, lambda seed=seed, shape=shape: agreement_volume(ctx, seed, shape))
    return volumes


def agreement_volume(ctx: Context, seed: int, shape) -> dict[str, Any]:
    """Every agreement layout on one phantom (in this process: agreement, not memory)."""
    import dataclasses

    import numpy as np

    import gpu_bench
    from napari_uamc.engine.device import keep_freed_memory
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    s = ctx.setup
    assert ctx.trained is not None
    reference, label_path = reference_run(ctx, ctx.trained, seed, shape)
    with np.load(label_path) as data:
        ref = data["label"]
    volume, truth = read_volume_file(volume_file(ctx.cache, seed, shape))
    model, meta, _ = load_model(ctx.trained)
    meta = dataclasses.replace(meta, spacing=volume.spacing)
    keep_freed_memory()
    rows: dict[str, Any] = {REFERENCE_ROW: {"seconds": reference["seconds"], "windows": reference["windows"],
                                           "dice_vs_truth": gpu_bench.dice(ref, truth)}}
    uncertainty = {}
    for name, config in AGREEMENT_CONFIGS.items():
        started = time.perf_counter()
        result = segment_volume(model, meta, volume, InferenceConfig(mc_samples=s.mc_samples, device="cpu", **config))
        rows[name] = {"seconds": time.perf_counter() - started, "windows": result.info["windows"],
                      "mc_windows": result.info["mc_windows"],
                      "dice_vs_reference": gpu_bench.dice(result.label, ref),
                      "dice_vs_truth": gpu_bench.dice(result.label, truth)}
        uncertainty[name] = result.uncertainty
    uncertain = uncertainty[COVER] > UNCERTAIN_NATS
    lost = uncertain & (uncertainty[SKIP] == 0)
    rows[SKIP]["uncertain_voxels_lost"] = float(lost.sum() / max(int(uncertain.sum()), 1))
    rows[SKIP]["max_uncertainty_lost"] = float(uncertainty[COVER][uncertainty[SKIP] == 0].max(initial=0.0))
    return rows


# ---------------------------------------------------------------------------------- report
def _f(value: Any, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def inference_table(rows: dict[str, Any], ceiling: dict[str, float]) -> list[str]:
    lines = []
    for description, model_rows in rows.items():
        names = sorted(model_rows, key=lambda name: (not name.startswith(REFERENCE_ROW), "default" not in name))
        reference = model_rows[names[0]]
        table = []
        for name in names:
            row = model_rows[name]
            rate = row["flops"] / row["seconds"] / 1e9
            table.append([
                name, f"{row['windows']} / {row.get('mc_windows', 0)}", _f(row["seconds"]),
                _f(row.get("cold_seconds")), _f(row["cpu_seconds"]), _f(reference["seconds"] / row["seconds"]),
                _f(row["peak_rss_gb"], 2), _f(row["flops"] / 1e12, 2),
                f"{rate:.0f} ({100 * rate / ceiling[row['precision']]:.0f} % of {row['precision']})",
                "reference" if "dice_vs_reference" not in row else f"{row['dice_vs_reference']:.4f}",
            ])
        lines += [f"Model: {description}.", "", common.markdown_table(
            ["path", "windows (det / MC)", "median wall s", "first run s", "CPU s", "speed-up vs paper test",
             "peak RSS GB", "TFLOP", "GFLOP/s (share of matmul ceiling)", "mask Dice vs paper test"], table), ""]
    return lines


def training_table(rows: dict[str, Any], ceiling: dict[str, float], precision: str) -> list[str]:
    names = sorted(rows, key=lambda name: not name.startswith(PLAIN_ROW))  # the naive step first
    naive = rows[names[0]]
    table = []
    for name in names:
        row = rows[name]
        kind = "float32" if name.startswith(PLAIN_ROW) else precision
        rate = row["flops"] / row["seconds_per_iteration"] / 1e9
        table.append([
            name, _f(row["seconds_per_iteration"]), _f(row.get("student_seconds")), _f(row.get("teacher_seconds")),
            _f(naive["seconds_per_iteration"] / row["seconds_per_iteration"]), _f(row["peak_rss_gb"], 2),
            f"{rate:.0f} ({100 * rate / ceiling[kind]:.0f} % of {kind})",
        ])
    return [common.markdown_table(
        ["training step", "median s / iteration", "student s", "teacher s", "speed-up", "peak RSS GB",
         "GFLOP/s (share of matmul ceiling)"], table), ""]


def agreement_table(volumes: dict[str, Any]) -> list[str]:
    """One row per phantom shape and layout: windows, the mean (min) mask Dice against the paper's
    test, the mean Dice with the ground truth and the mean wall time over that shape's volumes."""
    shapes: dict[str, list[dict[str, Any]]] = {}
    for tag, rows in volumes.items():
        shapes.setdefault(tag.split("-", 1)[1], []).append(rows)
    table = []
    for shape, group in sorted(shapes.items(), key=lambda item: math.prod(map(int, item[0].split("x")))):
        for name in [REFERENCE_ROW, *AGREEMENT_CONFIGS]:
            rows = [volume[name] for volume in group]
            agreement = [row.get("dice_vs_reference") for row in rows]
            lost = [row for row in rows if "uncertain_voxels_lost" in row]
            windows = sorted({f"{row['windows']} / {row.get('mc_windows', 0)}" for row in rows})
            table.append([
                f"{shape} ({len(group)})", name, ", ".join(windows),
                "reference" if agreement[0] is None else f"{statistics.mean(agreement):.4f} ({min(agreement):.4f})",
                f"{statistics.mean(row['dice_vs_truth'] for row in rows):.4f}",
                _f(statistics.mean(row["seconds"] for row in rows)),
                "" if not lost else (
                    f"{100 * max(r['uncertain_voxels_lost'] for r in lost):.1f} % of voxels above "
                    f"{UNCERTAIN_NATS} nats lost (largest lost value "
                    f"{max(r['max_uncertainty_lost'] for r in lost):.2f} nats)"),
            ])
    return [common.markdown_table(
        ["phantoms (count)", "layout", "windows (det / MC)", "mask Dice vs paper test, mean (min)",
         "Dice vs truth", "wall s", "uncertainty vs MC on covering windows (worst volume)"], table), ""]


def goal_lines(results: dict[str, Any]) -> list[str]:
    """The issue's goals for this CPU next to the measured numbers."""
    lines = ["Goals (issue 3) against this run:", ""]
    inference = results.get("inference") or {}
    for description, rows in inference.items():
        for name, row in rows.items():
            if not name.startswith("uamc segment default"):
                continue
            agreement = ("" if description.startswith("random") else
                         f"; mask Dice vs the paper's test {row['dice_vs_reference']:.4f} (stretch >= {GOALS['dice']})")
            lines.append(
                f"- {description}: `uamc segment` {row['seconds']:.1f} s warm, {row['cold_seconds']:.1f} s "
                f"first run (required <= {GOALS['segment_required']:.0f} s, stretch {GOALS['segment_stretch']:.0f} s); "
                f"peak memory {row['peak_rss_gb']:.2f} GB (stretch < {GOALS['memory_gb']:.0f} GB){agreement}."
            )
    training = results.get("training") or {}
    engine = [row for name, row in training.items() if name.startswith("engine")]
    if engine:
        lines.append(
            f"- one training iteration: {engine[0]['seconds_per_iteration']:.1f} s (required <= "
            f"{GOALS['iteration_required']:.0f} s, stretch {GOALS['iteration_stretch']:.0f} s); peak memory "
            f"{engine[0]['peak_rss_gb']:.2f} GB."
        )
    return lines + [""] if len(lines) > 2 else []


def report_text(ctx: Context, results: dict[str, Any], info: dict[str, Any], command: str) -> str:
    s = ctx.setup
    ceiling = results["ceiling"]
    load = results.get("load", {})
    lines = [
        "## Speed and memory (CPU)", "",
        f"`{command}`; {common.describe_machine(info)}. Load average (1 minute) at the start and end "
        "of each part's measurements, and when they ended: "
        + "; ".join(f"{part} {load[part][0]} to {load[part][1]} ({load[part][2]})" for part in PARTS if part in load)
        + ". The machine was shared with other jobs. "
        "Matmul ceiling ({}^3, median of {}, best of the runs): ".format(
            *results.get("ceiling_matmul", (MATMUL_SIZE, MATMUL_REPEATS)))
        + f"float32 {ceiling['float32']:.0f} "
        f"GFLOP/s, bfloat16 {ceiling['bfloat16']:.0f} GFLOP/s. Each row ran in its own process (peak RSS "
        "is its `ru_maxrss`); results are cached per row in `.bench-cache/speed/`.", "",
    ]
    if "inference" in results:
        lines += [
            f"### Inference of a {'x'.join(map(str, s.volume_shape))} phantom (seed {s.volume_seed})", "",
            f"The paper's test: windows of the model's training patch every {'/'.join(map(str, s.stride))} "
            "voxels, float32, uniform averaging, one deterministic pass (no uncertainty), plain PyTorch "
            f"(`benchmarks/_plain.py`), one run. `uamc segment`: T = {s.mc_samples} MC samples, a first "
            f"(cold) run then the median of {s.repeats} warm runs in the same process. The model "
            "runs at the volume's spacing (no resampling). TFLOP: the unfused network's FLOPs "
            "(`torch.utils.flop_counter`) times the windows each path runs. The mask Dice of a random "
            "network says nothing; that of the trained model is the agreement that matters, but note "
            "that this phantom's anatomy is about three times larger in voxels than that of the "
            "packaged model's 96 x 96 x 48 training phantoms: see the model's Dice with the ground "
            "truth in the agreement table below.", "",
            *inference_table(results["inference"], ceiling),
        ]
    if "training" in results:
        lines += [
            f"### One training iteration (F = {s.speed_width}, {'x'.join(map(str, s.speed_patch))}, batch "
            f"{s.train_batch} with {s.train_labeled} labeled, T = {s.mc_samples})", "",
            f"Median of {s.train_iterations} iterations after {s.train_warmup} warm-up; the student / "
            "teacher split is from one more iteration (teacher = its T + 1 noisy passes). Synthetic "
            f"batches. One iteration is {next(iter(results['training'].values()))['flops'] / 1e12:.2f} TFLOP.",
            "",
            *training_table(results["training"], ceiling, "bfloat16" if _native_bf16() else "float32"),
        ]
    if results.get("agreement"):
        lines += [
            "### Agreement of the inference layouts with the paper's test (trained model)", "",
            f"Model: {load_model(ctx.trained)[2]}. Unseen phantoms of study seed "
            f"{EVAL_STUDY_SEED} (its training domain) and the speed volume; mask Dice against the "
            "paper's test on the same volume; one run each, in one process (times are indicative).", "",
            *agreement_table(results["agreement"]),
        ]
    lines += goal_lines(results)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ main
PARTS = ("inference", "training", "agreement")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="trained model for the agreement (default: the packaged model)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--repeats", type=int, help="warm runs of each uamc segment layout (default 3)")
    parser.add_argument("--threads", type=int, help="torch threads in every measurement (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and random models (seconds)")
    parser.add_argument("--cache-dir", type=Path, default=common.DEFAULT_CACHE_DIR)
    parser.add_argument("--cached", action="store_true", help="measure nothing; report what the cache holds")
    parser.add_argument("--write", nargs="?", const=common.DEFAULT_DOC, type=Path, metavar="DOC",
                        help="write the section 'speed' of docs/benchmarks.md (or DOC)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def resolve_trained(path: str | None, smoke: bool) -> str | None:
    if path or smoke:
        return path
    from napari_uamc.engine.checkpoint import default_model_path
    from napari_uamc.errors import CheckpointError

    try:
        return str(default_model_path())
    except CheckpointError:
        return None


def measuring_command(argv: list[str]) -> str:
    """The command with ``argv`` less the flags that only report (``--cached``, ``--write``)."""
    kept, skip = [str(Path(__file__))], False
    for index, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg == "--cached" or arg.startswith("--write="):
            continue
        elif arg == "--write":
            skip = index + 1 < len(argv) and not argv[index + 1].startswith("--")
        else:
            kept.append(arg)
    return common.command_line(kept)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    import torch

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    common.set_threads(args.threads)
    trained_path = resolve_trained(args.model, args.smoke)
    info = common.machine_info()
    setup = Setup(threads=args.threads, torch=torch.__version__, cpu=info["cpu"])
    if args.smoke:
        setup = replace(setup, **SMOKE)
    if args.repeats is not None:
        setup = replace(setup, repeats=args.repeats)
    cache = common.ResultCache(args.cache_dir, BENCH, asdict(setup))
    trained = model_spec(trained_path, 0, (0, 0, 0)) if trained_path else None
    if args.smoke and trained is None:  # the smoke "trained" model: a random one of the speed size
        trained = model_spec(None, setup.speed_width, setup.speed_patch)
    ctx = Context(setup, cache, trained)

    results = cache.get("summary") or {}
    if not args.cached:
        # measured on every run (quick); the best seen is kept: a busy machine only lowers it
        size, repeats = (SMOKE_MATMUL_SIZE, SMOKE_MATMUL_REPEATS) if args.smoke else (MATMUL_SIZE, MATMUL_REPEATS)
        measured, best = matmul_ceiling(size, repeats), results.get("ceiling", {})
        results["ceiling_matmul"] = [size, repeats]
        results["ceiling"] = {k: max(v, best.get(k, 0.0)) for k, v in measured.items()}
        for part in parts:
            before, load = ctx.measured, common.load_average()
            results[part] = {"inference": inference_part, "training": training_part,
                             "agreement": agreement_part}[part](ctx)
            if ctx.measured > before:  # the load while this part measured (1-minute averages)
                results.setdefault("load", {})[part] = [load, common.load_average(), common.utc_now()]
        cache.put("summary", results)
    if not results:
        raise SystemExit(f"nothing cached yet in {cache.folder}; run without --cached first")
    text = report_text(ctx, results, info, measuring_command(sys.argv[1:] if argv is None else argv))
    print(text)
    if args.write is not None:
        print(f"wrote {common.write_section(args.write, SECTION, text)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
