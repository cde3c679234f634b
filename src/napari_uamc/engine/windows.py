"""Window geometry for inference: where the windows go, how they are weighted, padding.

Pure numpy; used by :mod:`napari_uamc.engine.inference`. A :class:`WindowPlan` places windows of
one size over a volume that is zero-padded (symmetrically) to at least the window size:

* :func:`sliding_plan`: windows of the training patch with a stride; starts on each axis are
  spread evenly from 0 to ``size - patch`` with a step of at most the stride (the last window
  ends on the volume's edge, as in the paper's test code);
* :func:`tile_plan`: the fewest, largest windows (up to a voxel budget, multiples of 16) that
  cover the volume with as little overlap as possible; the network is fully convolutional, so a
  window larger than the training patch is valid and costs less per voxel.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np

WEIGHTINGS = ("gaussian", "uniform")
#: Default overlap of the sliding window (fraction of the patch).
DEFAULT_OVERLAP = 0.5
#: Layouts of the deterministic pass: sliding training-patch windows, or a few large tiles.
LAYOUTS = ("sliding", "tiles")
#: Gaussian window weights: sigma = window * GAUSSIAN_SIGMA_FRACTION (nnU-Net's choice).
GAUSSIAN_SIGMA_FRACTION = 1.0 / 8.0
#: Smallest Gaussian weight relative to the centre, so window borders still count a little.
GAUSSIAN_MIN_WEIGHT = 1e-3
#: Window sizes are multiples of this (four stride-2 downsamplings in the V-Net).
SIZE_MULTIPLE = 16
#: Most windows per axis :func:`tile_plan` considers.
MAX_TILES_PER_AXIS = 32

Index3 = tuple[int, int, int]
Window = tuple[slice, slice, slice]


def stride_for_overlap(patch: Sequence[int], overlap: float) -> Index3:
    """Step between windows for an overlap fraction in [0, 1) (at least one voxel)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), not {overlap}")
    steps = (max(1, int(round(p * (1.0 - overlap)))) for p in patch)
    return tuple(steps)  # type: ignore[return-value]


def axis_starts(size: int, window: int, stride: int) -> list[int]:
    """Window starts along one axis of length ``size >= window``: evenly spread, step <= stride."""
    if size < window:
        raise ValueError(f"axis of {size} voxels is smaller than the window {window}: pad first")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, not {stride}")
    if size == window:
        return [0]
    count = math.ceil((size - window) / stride) + 1
    return sorted({int(round(i * (size - window) / (count - 1))) for i in range(count)})


def covering_starts(starts: Sequence[int], window: int, size: int) -> list[int]:
    """The fewest of ``starts`` whose windows still cover ``[0, size)`` (greedy interval cover)."""
    ordered = sorted(starts)
    chosen = [ordered[0]]
    while chosen[-1] + window < size:
        reach = chosen[-1] + window
        candidates = [s for s in ordered if chosen[-1] < s <= reach]
        if not candidates:
            raise ValueError(f"windows at {ordered} of size {window} leave gaps in {size} voxels")
        chosen.append(max(candidates))
    return chosen


@dataclass(frozen=True)
class WindowPlan:
    """Windows of size ``window`` at ``starts`` over a volume of ``shape`` padded to ``padded``.

    Starts are in the padded frame; the volume sits at ``offset`` inside it.
    """

    shape: Index3
    padded: Index3
    window: Index3
    axis_starts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]

    @property
    def offset(self) -> Index3:
        offsets = ((p - s) // 2 for p, s in zip(self.padded, self.shape))
        return tuple(offsets)  # type: ignore[return-value]

    @property
    def starts(self) -> list[Index3]:
        """Every window start, in C order."""
        return list(product(*self.axis_starts))  # type: ignore[arg-type]

    def covering(self) -> set[Index3]:
        """Starts of the fewest windows of this plan that still cover every voxel."""
        cover = [
            covering_starts(s, w, p) for s, w, p in zip(self.axis_starts, self.window, self.padded)
        ]
        return set(product(*cover))

    def pad(self, array: np.ndarray) -> np.ndarray:
        """The volume zero-padded into the plan's frame."""
        pads = [(o, p - s - o) for o, p, s in zip(self.offset, self.padded, self.shape)]
        if not any(b or a for b, a in pads):
            return array
        return np.pad(array, pads, mode="constant", constant_values=0)

    def placement(self, start: Sequence[int]) -> tuple[Window, Window]:
        """``(inside, target)``: the part of a window that lies on the volume, and where it goes."""
        inside, target = [], []
        for s, w, o, n in zip(start, self.window, self.offset, self.shape):
            lo, hi = max(s, o), min(s + w, o + n)
            inside.append(slice(lo - s, hi - s))
            target.append(slice(lo - o, hi - o))
        return tuple(inside), tuple(target)  # type: ignore[return-value]

    def voxels(self) -> int:
        """Voxels the network processes for one pass over every window."""
        return len(self.starts) * math.prod(self.window)


def _padded_shape(shape: Sequence[int], window: Sequence[int]) -> Index3:
    return tuple(max(s, w) for s, w in zip(shape, window))  # type: ignore[return-value]


def sliding_plan(shape: Sequence[int], patch: Sequence[int], stride: Sequence[int]) -> WindowPlan:
    """Windows of ``patch`` every ``stride`` voxels (axes smaller than the patch are padded)."""
    shape, patch = tuple(int(s) for s in shape), tuple(int(p) for p in patch)
    padded = _padded_shape(shape, patch)
    starts = tuple(tuple(axis_starts(n, w, t)) for n, w, t in zip(padded, patch, stride))
    return WindowPlan(shape, padded, patch, starts)  # type: ignore[arg-type]


def _round_up(value: int, multiple: int = SIZE_MULTIPLE) -> int:
    return max(multiple, -(-value // multiple) * multiple)


def tile_plan(shape: Sequence[int], min_window: Sequence[int], max_voxels: int) -> WindowPlan:
    """The fewest processed voxels covering ``shape`` with windows of at most ``max_voxels``.

    Each window axis is a multiple of 16 and at least ``min_window`` (the training patch), unless
    the volume is smaller than that on the axis. ``max_voxels`` below one training patch gives
    training-patch windows.
    """
    shape = tuple(int(s) for s in shape)
    floor = [min(_round_up(w), _round_up(s)) for w, s in zip(min_window, shape)]
    budget = max(int(max_voxels), math.prod(floor))
    best: tuple[int, Index3] | None = None
    options = []
    for size, least in zip(shape, floor):
        counts = range(1, MAX_TILES_PER_AXIS + 1)
        sizes = sorted({max(least, _round_up(math.ceil(size / n))) for n in counts})
        options.append([(w, max(1, math.ceil(size / w)) if w < size else 1) for w in sizes])
    for combo in product(*options):
        window = tuple(w for w, _ in combo)
        if math.prod(window) > budget:
            continue
        cost = math.prod(w * n for w, n in combo)
        larger = best is not None and math.prod(window) > math.prod(best[1])
        if best is None or cost < best[0] or (cost == best[0] and larger):
            best = (cost, window)  # type: ignore[assignment]
    window = best[1] if best is not None else tuple(floor)
    padded = _padded_shape(shape, window)
    starts = []
    for size, w in zip(padded, window):
        count = math.ceil(size / w)
        starts.append(tuple(axis_starts(size, w, math.ceil((size - w) / max(1, count - 1)) or 1)))
    return WindowPlan(shape, padded, window, tuple(starts))  # type: ignore[arg-type]


def window_weights(window: Sequence[int], weighting: str) -> np.ndarray:
    """Per-voxel weights of one window: all ones, or a Gaussian peaked at the centre (max 1).

    Cached per (window, weighting); the returned array is read-only.
    """
    return _window_weights(tuple(int(w) for w in window), weighting)


@functools.lru_cache(maxsize=4)
def _window_weights(window: Index3, weighting: str) -> np.ndarray:
    if weighting == "uniform":
        weights = np.ones(window, dtype=np.float32)
    elif weighting == "gaussian":
        profiles = []
        for size in window:
            centre = (size - 1) / 2.0
            sigma = max(size * GAUSSIAN_SIGMA_FRACTION, 1e-6)
            x = np.arange(size, dtype=np.float64)
            profile = np.exp(-0.5 * ((x - centre) / sigma) ** 2)
            profiles.append((profile / profile.max()).astype(np.float32))
        weights = profiles[0][:, None, None] * profiles[1][None, :, None]
        weights = weights * profiles[2][None, None, :]
        np.maximum(weights, np.float32(GAUSSIAN_MIN_WEIGHT), out=weights)
    else:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
    weights.setflags(write=False)
    return weights
