"""Segmentation metrics: Dice, Jaccard, 95 % Hausdorff distance, average surface distance.

Conventions (medpy's, see docs/metrics.md and METHOD.md section 7):

* A voxel is foreground when it is nonzero (or equal to ``label`` when one is given).
* Surface voxels are foreground voxels with at least one 6-neighbour in the background; the
  array border counts as background.
* Surface distances are read from a Euclidean distance transform of the complement of the
  other mask's surface, with the voxel spacing (mm) or unit spacing (voxels).
* HD95 is the 95th percentile and ASD the mean of the pooled distances of both directions
  (surface of prediction to truth and truth to prediction).
* Both masks empty: Dice 1, Jaccard 1, HD95 0, ASD 0. Exactly one empty: Dice 0, Jaccard 0,
  HD95 and ASD undefined (``None``), left out of the means and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from napari_uamc.errors import GridMismatchError, InputError

Unit = Literal["mm", "voxel"]

#: Units distances can be reported in, and the suffix of their JSON/table keys.
UNIT_SUFFIX: dict[str, str] = {"mm": "mm", "voxel": "vox"}

#: Percentile of the pooled surface distances reported as the robust Hausdorff distance.
HAUSDORFF_PERCENTILE = 95.0

#: Metric names, in report order; the last two are distances (in the chosen unit).
METRIC_NAMES: tuple[str, ...] = ("dice", "jaccard", "hd95", "asd")
DISTANCE_METRICS: tuple[str, ...] = ("hd95", "asd")

#: 6-connected structuring element: a voxel's face neighbours.
_FACE_NEIGHBOURS = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class CaseMetrics:
    """Metrics of one case; ``hd95``/``asd`` are ``None`` when exactly one mask is empty."""

    dice: float
    jaccard: float
    hd95: float | None
    asd: float | None

    def as_dict(self, unit: Unit = "mm") -> dict[str, float | None]:
        """``{"dice", "jaccard", "hd95_<unit>", "asd_<unit>"}`` as in the evaluate JSON."""
        return {metric_key(name, unit): value for name, value in asdict(self).items()}


def metric_key(name: str, unit: Unit = "mm") -> str:
    """Report key of a metric: distances carry their unit (``hd95_mm``, ``asd_vox``)."""
    check_unit(unit)
    return f"{name}_{UNIT_SUFFIX[unit]}" if name in DISTANCE_METRICS else name


def check_unit(unit: str) -> None:
    if unit not in UNIT_SUFFIX:
        raise InputError(f"unit must be one of {sorted(UNIT_SUFFIX)}, not {unit!r}")


def foreground(array: np.ndarray, label: int | None = None) -> np.ndarray:
    """Boolean mask of ``array``: nonzero voxels, or voxels equal to ``label`` when given."""
    array = np.asarray(array)
    if array.dtype == bool and label is None:
        return array
    return array != 0 if label is None else array == label


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient ``2|A∩B| / (|A|+|B|)`` of two boolean masks; 1 when both are empty.

    Unchecked (no project error): ``a`` and ``b`` must have one shape, or numpy broadcasts them
    or raises ``ValueError``; :func:`compute_metrics` checks its input.
    """
    total = np.count_nonzero(a) + np.count_nonzero(b)
    if total == 0:
        return 1.0
    return float(2.0 * np.count_nonzero(np.logical_and(a, b)) / total)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard index ``|A∩B| / |A∪B|`` of two boolean masks; 1 when both are empty.

    Unchecked like :func:`dice`: ``a`` and ``b`` must have one shape.
    """
    intersection = np.count_nonzero(np.logical_and(a, b))
    union = np.count_nonzero(a) + np.count_nonzero(b) - intersection
    if union == 0:
        return 1.0
    return float(intersection / union)


def surface(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a 6-neighbour in the background (the array border is background)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise InputError(f"expected a 3D mask, got shape {mask.shape}")
    eroded = ndimage.binary_erosion(mask, structure=_FACE_NEIGHBOURS, border_value=0)
    return mask & ~eroded


def surface_distances(
    a: np.ndarray, b: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Distance from each surface voxel of ``a`` to the nearest surface voxel of ``b``.

    ``a`` and ``b`` are 3D masks (nonzero = foreground) of one shape and voxel order;
    ``spacing`` is the voxel size along their axes (mm, or 1 for voxels). Returns a 1D float64
    array with one entry per surface voxel of ``a`` (empty when ``a`` is empty), in the units of
    ``spacing``. ``b`` must not be empty.

    Both masks are cropped to the bounding box of their union and padded with one background
    voxel, which keeps the border-as-background convention and gives the same distances as
    the full arrays (every surface voxel lies inside the box; the transform is exact).

    Raises:
        GridMismatchError: ``a`` and ``b`` differ in shape.
        InputError: the masks are not 3D, ``spacing`` is not three positive finite numbers, or
            ``b`` is empty.
    """
    a, b = _as_mask_pair(a, b)
    sampling = _check_spacing(spacing)
    if not b.any():
        raise InputError("surface distances to an empty mask are undefined")
    if not a.any():
        return np.zeros(0, dtype=np.float64)
    a, b = _crop_pair(a, b)
    return _directed_distances(surface(a), surface(b), sampling)


def compute_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    *,
    unit: Unit = "mm",
    label: int | None = None,
) -> CaseMetrics:
    """Dice, Jaccard, HD95 and ASD of a prediction against the ground truth.

    ``pred`` and ``truth`` are 3D label maps of one shape and voxel order. ``spacing`` is the
    voxel size in mm along the array axes; HD95 and ASD are in mm, or with ``unit="voxel"`` in
    voxels (unit spacing, ``spacing`` ignored). ``label`` selects one class id; by default every
    nonzero voxel is foreground.

    Raises:
        InputError: ``unit`` is not ``"mm"`` or ``"voxel"``, the maps are not 3D, or (``unit="mm"``)
            ``spacing`` is not three positive finite numbers.
        GridMismatchError: ``pred`` and ``truth`` differ in shape.
    """
    check_unit(unit)
    sampling = _check_spacing(spacing) if unit == "mm" else (1.0, 1.0, 1.0)
    pred_mask, truth_mask = _as_mask_pair(foreground(pred, label), foreground(truth, label))
    pred_empty, truth_empty = not pred_mask.any(), not truth_mask.any()
    if pred_empty and truth_empty:
        return CaseMetrics(dice=1.0, jaccard=1.0, hd95=0.0, asd=0.0)
    if pred_empty or truth_empty:
        return CaseMetrics(dice=0.0, jaccard=0.0, hd95=None, asd=None)
    pred_surface, truth_surface = (surface(m) for m in _crop_pair(pred_mask, truth_mask))
    pooled = np.concatenate(
        [
            _directed_distances(pred_surface, truth_surface, sampling),
            _directed_distances(truth_surface, pred_surface, sampling),
        ]
    )
    return CaseMetrics(
        dice=dice(pred_mask, truth_mask),
        jaccard=jaccard(pred_mask, truth_mask),
        hd95=float(np.percentile(pooled, HAUSDORFF_PERCENTILE)),
        asd=float(pooled.mean()),
    )


def summarize(results: Mapping[str, CaseMetrics]) -> dict[str, dict[str, float | int | None]]:
    """Mean of each metric over the cases where it is defined, and counts of undefined values.

    Returns ``{"mean": {metric: float | None}, "undefined": {metric: int}}`` with the names of
    :data:`METRIC_NAMES`; a mean is ``None`` when no case defines that metric. Distances keep
    the unit the cases were computed in (mm unless ``unit="voxel"``). Raises no project error.
    """
    mean: dict[str, float | int | None] = {}
    undefined: dict[str, float | int | None] = {}
    for name in METRIC_NAMES:
        values = [getattr(case, name) for case in results.values()]
        defined = [value for value in values if value is not None]
        mean[name] = math.fsum(defined) / len(defined) if defined else None
        undefined[name] = len(values) - len(defined)
    return {"mean": mean, "undefined": undefined}


def _as_mask_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise GridMismatchError(f"masks have different shapes {a.shape} and {b.shape}")
    if a.ndim != 3:
        raise InputError(f"expected 3D masks, got shape {a.shape}")
    return a, b


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(f"spacing must be three strictly positive numbers, not {tuple(spacing)}")
    return values  # type: ignore[return-value]


def _directed_distances(
    from_surface: np.ndarray, to_surface: np.ndarray, sampling: tuple[float, float, float]
) -> np.ndarray:
    distance_to = ndimage.distance_transform_edt(~to_surface, sampling=sampling)
    return np.asarray(distance_to[from_surface], dtype=np.float64)


def _crop_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to the bounding box of their union, padded by one background voxel."""
    union = a | b
    box = tuple(
        slice(int(idx[0]), int(idx[-1]) + 1)
        for idx in (np.flatnonzero(union.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1)))
    )
    return np.pad(a[box], 1), np.pad(b[box], 1)
