"""Where to correct first: connected regions of high uncertainty, ranked by summed uncertainty.

Qt-free; the plugin lists the regions and moves the viewer to a region's centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_uamc.errors import InputError

#: Voxels whose uncertainty is at least this fraction of the maximum entropy (ln C) count as
#: "uncertain" when no absolute threshold is given: the level where marked voxels best match the
#: packaged model's errors on held-out real LA scans (F1 0.40, precision 0.32, recall 0.54 over
#: la2018-val16; benchmarks/bench_uncertainty_level.py, docs/benchmarks.md "Uncertainty level").
#: At 0.25 ln C it marked 1.4x the segmented volume: the model is never surer than about 0.93
#: inside the atrium (0.24 nats), so the whole atrium counted as uncertain.
DEFAULT_RELATIVE_THRESHOLD = 0.65
#: A connected region longer than this (mm) along any axis is cut into pieces of a grid of cubes
#: of this side. The uncertain band around a segmentation is one connected shell wrapping the
#: whole structure (on a real LA scan 46 mL, more than the atrium itself); whole, it would always
#: be #1 and its "where" would mean nothing. In pieces, #1 is the part of the surface where the
#: band is thickest and most uncertain.
DEFAULT_PIECE_MM = 20.0
#: Where regions are cut, no region's focus lies closer than this fraction of ``piece_mm`` (5 mm
#: for 2 cm pieces) to a higher-ranked one's. A hot spot that a grid line cuts in two has its
#: most uncertain voxels on the cut, in both pieces: their foci were a voxel apart, two rows of
#: the list going to one place (on real LA scans, in every case).
FOCUS_CLEARANCE = 0.25


@dataclass(frozen=True)
class UncertainRegion:
    """One connected region of high uncertainty (indices in canonical [x, y, z] order)."""

    rank: int
    voxels: int
    volume_ml: float
    summed_uncertainty: float
    peak_uncertainty: float
    centroid: tuple[float, float, float]
    bbox_min: tuple[int, int, int]
    bbox_max: tuple[int, int, int]
    #: where to look: on the axial slice (z) holding most of the region's uncertainty, its most
    #: uncertain voxel. Inside the region always, unlike the centroid of a ring or a shell.
    focus: tuple[int, int, int] = (0, 0, 0)

    @property
    def centre_voxel(self) -> tuple[int, int, int]:
        """The centroid rounded to the nearest voxel."""
        return tuple(int(round(c)) for c in self.centroid)  # type: ignore[return-value]


def uncertainty_score(uncertainty: np.ndarray) -> float:
    """One number per case for ranking cases (active learning): the mean voxel entropy, nats."""
    return float(np.mean(uncertainty, dtype=np.float64))


def uncertain_regions(
    uncertainty: np.ndarray,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    *,
    threshold: float | None = None,
    n_classes: int = 2,
    min_voxels: int = 10,
    top: int = 10,
    piece_mm: float | None = DEFAULT_PIECE_MM,
) -> list[UncertainRegion]:
    """Rank 26-connected regions where ``uncertainty >= threshold`` by summed uncertainty.

    ``threshold`` is in nats; by default it is ``DEFAULT_RELATIVE_THRESHOLD * ln(n_classes)``.
    A region longer than ``piece_mm`` along an axis is cut along a fixed grid of ``piece_mm``
    cubes (anchored at voxel 0) into pieces, each ranked on its own (``None``: never cut).
    Regions smaller than ``min_voxels`` are ignored; at most ``top`` regions are returned.
    """
    uncertainty = np.asarray(uncertainty)
    if uncertainty.ndim != 3:
        raise InputError(f"uncertainty map must be 3D, got shape {uncertainty.shape}")
    if not np.all(np.isfinite(uncertainty)):
        raise InputError("uncertainty map contains NaN or infinite values")
    if threshold is None:
        threshold = DEFAULT_RELATIVE_THRESHOLD * math.log(n_classes)
    mask = uncertainty >= threshold
    if not mask.any():
        return []
    # work inside the bounding box of the uncertain voxels (a thin shell in a big volume)
    nonzero = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    crop = tuple(slice(int(n[0]), int(n[-1]) + 1) for n in nonzero)
    offset = np.array([c.start for c in crop])
    mask, values = mask[crop], uncertainty[crop]
    from scipy import ndimage  # here: importing it costs napari's panel 0.3-0.6 s when it opens

    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if piece_mm is not None and count:
        labels, count = _cut_long_regions(labels, count, offset, spacing, piece_mm)
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=count + 1)[1:]
    sums = np.bincount(flat, weights=values.ravel().astype(np.float64), minlength=count + 1)[1:]
    index = np.arange(1, count + 1)
    keep = np.flatnonzero(sizes >= min_voxels)
    if keep.size == 0:
        return []
    boxes = ndimage.find_objects(labels)
    clearance = None if piece_mm is None else FOCUS_CLEARANCE * piece_mm
    listed: list[int] = []
    foci: list[np.ndarray] = []
    for i in keep[np.argsort(-sums[keep], kind="stable")]:
        if len(listed) == top:
            break
        focus = _distinct_focus(labels[boxes[i]] == i + 1, values[boxes[i]], boxes[i], spacing, foci, clearance)
        if focus is not None:  # None: the whole piece lies where a higher-ranked row already goes
            listed.append(int(i))
            foci.append(focus)
    peaks = ndimage.maximum(values, labels, index[listed])
    centroids = [tuple(np.asarray(c) + offset) for c in ndimage.center_of_mass(values, labels, index[listed])]
    voxel_ml = float(np.prod(spacing)) / 1000.0
    regions = []
    for rank, (i, peak, centroid, focus) in enumerate(zip(listed, peaks, centroids, foci), start=1):
        box = boxes[i]
        focus = focus + offset
        regions.append(
            UncertainRegion(
                rank=rank,
                voxels=int(sizes[i]),
                volume_ml=float(sizes[i]) * voxel_ml,
                summed_uncertainty=float(sums[i]),
                peak_uncertainty=float(peak),
                centroid=tuple(float(c) for c in centroid),  # type: ignore[arg-type]
                bbox_min=tuple(int(s.start + o) for s, o in zip(box, offset)),  # type: ignore[arg-type]
                bbox_max=tuple(int(s.stop - 1 + o) for s, o in zip(box, offset)),  # type: ignore[arg-type]
                focus=tuple(int(v) for v in focus),  # type: ignore[arg-type]
            )
        )
    return regions


def _distinct_focus(member: np.ndarray, values: np.ndarray, box: tuple, spacing: tuple[float, float, float],
                    foci: list[np.ndarray], clearance: float | None) -> np.ndarray | None:
    """The focus (index in the cropped volume) of the region ``member`` (in its bounding ``box``),
    at least ``clearance`` mm from the higher-ranked regions' ``foci``: :func:`_focus`, or where
    that is too close, the most uncertain voxel far enough on the same slice (on the densest
    slice of the voxels far enough when that slice has none); None when no voxel is far enough."""
    start = np.array([b.start for b in box])
    focus = _focus(member, values)
    scale = np.asarray(spacing, dtype=float)
    if clearance is None or all(np.linalg.norm((focus + start - other) * scale) >= clearance for other in foci):
        return focus + start
    grid = np.indices(member.shape) + start[:, None, None, None]
    away = member.copy()
    for other in foci:
        away &= np.sqrt(sum(((g - o) * s) ** 2 for g, o, s in zip(grid, other, scale))) >= clearance
    if not away.any():
        return None
    z = int(focus[2])
    if not away[:, :, z].any():
        return _focus(away, values) + start
    x, y = np.unravel_index(int(np.argmax(np.where(away[:, :, z], values[:, :, z], -np.inf))), away.shape[:2])
    return np.array([x, y, z]) + start


def _focus(member: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Index (in ``member``'s box) of the most uncertain voxel on the slice along the last axis
    that holds most of the region's summed uncertainty."""
    weights = np.where(member, values, 0.0)
    z = int(np.argmax(weights.sum(axis=(0, 1))))
    x, y = np.unravel_index(int(np.argmax(weights[:, :, z])), weights.shape[:2])
    return np.array([x, y, z])


def _cut_long_regions(labels: np.ndarray, count: int, offset: np.ndarray,
                      spacing: tuple[float, float, float], piece_mm: float) -> tuple[np.ndarray, int]:
    """Relabel: a region longer than ``piece_mm`` on an axis becomes one label per grid cube."""
    from scipy import ndimage

    steps = [max(1, int(round(piece_mm / float(s)))) for s in spacing]
    boxes = ndimage.find_objects(labels)
    long = np.zeros(count + 1, dtype=bool)
    for i, box in enumerate(boxes, start=1):
        long[i] = box is not None and any(b.stop - b.start > step for b, step in zip(box, steps))
    if not long.any():
        return labels, count
    # the grid cube of every voxel (anchored at the volume's voxel 0, not the crop's)
    cells = [(np.arange(n) + o) // step for n, o, step in zip(labels.shape, offset, steps)]
    counts = [int(c[-1]) + 1 for c in cells]
    cube = (cells[0][:, None, None] * counts[1] + cells[1][None, :, None]) * counts[2] + cells[2][None, None, :]
    n_cubes = int(np.prod(counts)) + 1
    key = labels.astype(np.int64) * n_cubes + np.where(long[labels], cube + 1, 0)
    inside = labels > 0
    _, relabelled = np.unique(key[inside], return_inverse=True)
    out = np.zeros(labels.shape, dtype=np.int32)
    out[inside] = relabelled.reshape(-1) + 1
    return out, int(relabelled.max()) + 1
