"""Builders shared by the torch tests: a noisy sphere case and a tiny model file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: The smallest window the tiny V-Net takes.
TINY_PATCH = (16, 16, 16)
#: Feature width of the tiny test networks.
TINY_WIDTH = 2
#: Standard deviation of the Gaussian noise added to a sphere's label to make its image.
SPHERE_NOISE = 0.3


def noisy_sphere(
    seed: int, shape: Sequence[int], *, shift: float, radius: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """A ball label (uint8) and its image: the label plus Gaussian noise, as float32.

    The ball's centre is the grid's centre moved by up to ``shift`` voxels along each axis; its
    radius is drawn from ``radius`` (low, high). The same seed gives the same arrays.
    """
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = np.array(shape, np.float32) / 2 + rng.uniform(-shift, shift, 3)
    ball_radius = rng.uniform(*radius)
    label = (((grid - centre[:, None, None, None]) ** 2).sum(0) < ball_radius**2).astype(np.uint8)
    image = (label + rng.normal(0, SPHERE_NOISE, shape)).astype(np.float32)
    return image, label


def save_tiny_model(
    path: Path,
    *,
    in_channels: int = 1,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    **meta_fields,
) -> Path:
    """Save a width-2 dual-task V-Net (weights of torch seed 0) for a 16^3 patch to ``path``."""
    import torch

    from napari_uamc.engine.checkpoint import ModelMeta, save_checkpoint
    from napari_uamc.engine.model import DualTaskVNet

    torch.manual_seed(0)
    model = DualTaskVNet(in_channels=in_channels, width=TINY_WIDTH).eval()
    meta = ModelMeta.for_model(model, spacing=spacing, patch=TINY_PATCH, **meta_fields)
    return save_checkpoint(path, model, meta)


# ----------------------------------------------------------------------------- real LA scans
#: The real LA 2018 scans, beside the clone (../shared/data/la2018); never copied into git.
LA2018 = Path(__file__).resolve().parents[2] / "shared" / "data" / "la2018"


def la2018_cases() -> list[str]:
    """Case names of the real scans in train.list order."""
    return [line.strip() for line in (LA2018 / "train.list").read_text().splitlines() if line.strip()]


def _requires_la2018():
    import pytest

    return pytest.mark.skipif(
        not (LA2018 / "train.list").is_file(),
        reason=f"the real LA 2018 scans are not at {LA2018} (shared/data/la2018 beside the clone)",
    )


requires_la2018 = _requires_la2018()


def accept_box(study) -> str:
    """Accept a 12 x 12 x 6 box as the label of ``study``'s first case (a ``Study``); returns the case."""
    case = study.cases()[0]
    label = np.zeros(study.read_image(case).shape, np.uint8)
    label[8:20, 8:20, 4:10] = 1
    study.accept(case, label)
    return case


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    import importlib.util
    import sys

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if str(folder) not in sys.path:  # the scripts import their _common
        sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
