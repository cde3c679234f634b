"""What one fine-tune step costs, per fine-tune of bench_loop, on this machine: the price of using
the unaccepted cases (issue 10: a semi-supervised step may cost at most 1.5x a supervised one).

Each fine-tune trains ``--steps`` steps from ``--model`` on synthetic volumes of ``--shape`` (the
working grid of the real runs: step costs depend on shapes, not on pixel values), 2 accepted and 8
other cases, with bench_loop's overrides; the median wall time of a step (the first two left
out) is its cost, and the teacher targets' own seconds are reported beside it. Run it on a quiet
CPU (it prints the load average). It trains nothing that is kept.

    python benchmarks/bench_step_cost.py --model benchmarks/models/phantom-f8.pt --shape 75 56 36
    python benchmarks/bench_step_cost.py --model runs/la16-f16-warm.pt --shape 90 90 64
    python benchmarks/bench_step_cost.py --model src/napari_uamc/models/default.pt --shape 90 90 64 \
        --variants "" --batch-sizes 1,2,3,4      # the network alone: why a batch of 3 costs what it does

``--batch-sizes`` also times the network alone (forward and backward of one batch of the model's
patch, in training mode and the precision a fine-tune uses here), per batch size: a step's price
is mostly this, so a ratio that is not the ratio of the patches is the machine's, not the method's.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common  # noqa: E402
from bench_loop import BASELINE, VARIANTS  # noqa: E402

DEFAULT_VARIANTS = (BASELINE, "ugmcl-cached-l1-ema-bn", "ugmcl-cached-l1-b11-ema-bn", "ugmcl-ema-bn")
SKIPPED_STEPS = 2


def step_costs(model_path: Path, shape: tuple[int, int, int], variants: list[str], steps: int,
               rounds: int) -> dict[str, dict[str, float]]:
    """``{variant: {"seconds_per_step", "target_seconds"}}`` (medians over ``rounds`` runs)."""
    from napari_uamc.engine.checkpoint import load_checkpoint
    from napari_uamc.engine.config import TrainConfig
    from napari_uamc.engine.dataset import TrainingCase
    from napari_uamc.engine.training import Trainer

    model, meta = load_checkpoint(model_path, "cpu")
    rng = np.random.default_rng(0)

    def case(index: int, labeled: bool) -> TrainingCase:
        image = rng.normal(size=shape).astype(np.float32)
        return TrainingCase(f"case{index}", image, (image > 1).astype(np.uint8) if labeled else None,
                            tuple(meta.spacing))

    accepted, others = [case(i, True) for i in range(2)], [case(10 + i, False) for i in range(8)]
    base = TrainConfig.from_dict(meta.config).replace(
        finetune=True, iterations=steps + SKIPPED_STEPS + 1, patch=tuple(meta.patch))
    found: dict[str, dict[str, list[float]]] = {v: {"step": [], "targets": []} for v in variants}
    for _ in range(rounds):
        for variant in variants:
            overrides = {k: v for k, v in VARIANTS[variant].overrides.items() if k != "bn_recalibration"}
            trainer = Trainer(base.replace(**overrides), accepted, others, model=copy.deepcopy(model), device="cpu")
            ticks = [time.perf_counter() for _ in trainer.steps()]
            found[variant]["step"] += list(np.diff(ticks)[SKIPPED_STEPS:])
            found[variant]["targets"].append(trainer.targets.seconds if trainer.targets is not None else 0.0)
    return {v: {"seconds_per_step": float(np.median(f["step"])), "target_seconds": float(np.median(f["targets"]))}
            for v, f in found.items()}


def network_costs(model_path: Path, batch_sizes: list[int], repeats: int = 5) -> dict[int, float]:
    """``{batch size: seconds}`` of one forward and backward of the network on a batch of the
    model's patch (median of ``repeats`` after two warm-ups), in the precision ``auto`` picks."""
    import torch

    from napari_uamc.engine.checkpoint import load_checkpoint
    from napari_uamc.engine.device import autocast, resolve_precision

    model, meta = load_checkpoint(model_path, "cpu")
    model.train()
    device = torch.device("cpu")
    dtype = resolve_precision("auto", device)
    seconds = {}
    for size in batch_sizes:
        x = torch.randn(size, 1, *meta.patch, generator=torch.Generator().manual_seed(0))
        x = x.contiguous(memory_format=torch.channels_last_3d)
        times = []
        for _ in range(repeats + 2):
            started = time.perf_counter()
            with autocast(device, dtype):
                seg, sdf = model(x)
            (seg.float().mean() + sdf.float().mean()).backward()
            times.append(time.perf_counter() - started)
        seconds[size] = float(np.median(times[2:]))
    return seconds


def render_network(seconds: dict[int, float], model: Path) -> str:
    import torch

    from napari_uamc.engine.device import resolve_precision

    dtype = str(resolve_precision("auto", torch.device("cpu"))).removeprefix("torch.")
    smallest = min(seconds)
    rows = [[str(size), f"{value:.3f}", f"{value / size:.3f}", f"{value / seconds[smallest]:.2f}x"]
            for size, value in seconds.items()]
    table = common.markdown_table(["batch (patches)", "s forward + backward", "s per patch",
                                   f"vs batch {smallest}"], rows)
    return f"The network alone ({model.name}, training mode, {dtype}):\n\n{table}\n"


def render(costs: dict[str, dict[str, float]], model: Path, shape, steps: int, load: tuple) -> str:
    reference = costs.get(BASELINE, {}).get("seconds_per_step")
    rows = []
    for variant, cost in costs.items():
        ratio = f"{cost['seconds_per_step'] / reference:.2f}x" if reference else "-"
        rows.append([VARIANTS[variant].label, f"{cost['seconds_per_step']:.3f}", ratio,
                     f"{cost['target_seconds']:.1f}" if cost["target_seconds"] else "-"])
    table = common.markdown_table(["fine-tune", "s per step", "vs supervised", "teacher targets, s (once + refreshes)"],
                                  rows)
    return (f"Model {model.name}, volumes {'x'.join(map(str, shape))}, median of {steps} steps a run; "
            f"load average {load[0]} -> {load[1]}; {common.describe_machine(common.machine_info())}.\n\n{table}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--shape", type=int, nargs=3, required=True, metavar=("X", "Y", "Z"))
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch-sizes", default="",
                        help="also time the network alone at these batch sizes, e.g. 1,2,3")
    args = parser.parse_args(argv)
    common.set_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    load_before = common.load_average()
    if variants:
        costs = step_costs(args.model, tuple(args.shape), variants, args.steps, args.rounds)
        print(render(costs, args.model, args.shape, args.steps, (load_before, common.load_average())))
    if args.batch_sizes:
        sizes = [int(size) for size in args.batch_sizes.split(",") if size]
        print(render_network(network_costs(args.model, sizes), args.model))
        print(f"load average {load_before} -> {common.load_average()}; "
              f"{common.describe_machine(common.machine_info())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
