"""Intensity normalisation and spacing resampling shared by training and inference.

Arrays are in canonical voxel order ``[x, y, z]``; spacings are in mm along those axes.
Resampling keeps the physical extent of the volume: the new shape is
``round(shape * from_spacing / to_spacing)`` and voxel *areas* map onto each other
(scipy's ``grid_mode=True``), so going there and back returns the original grid exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_uamc.errors import InputError

#: Default relative spacing difference above which an input is resampled to the model's spacing.
RESAMPLE_TOLERANCE = 0.10

#: Standard deviations below this are treated as a constant volume by :func:`zscore`.
_MIN_STD = 1e-8


def zscore(array: np.ndarray) -> np.ndarray:
    """``(array - mean) / std`` over the whole volume as float32; a constant volume gives zeros."""
    data = np.asarray(array, dtype=np.float32)
    mean = float(data.mean(dtype=np.float64))
    std = float(data.std(dtype=np.float64))
    if not np.isfinite(std) or std < _MIN_STD:
        return np.zeros(data.shape, dtype=np.float32)
    out = data - np.float32(mean)
    out *= np.float32(1.0 / std)
    return out


def _as_spacing(spacing: Sequence[float], name: str) -> np.ndarray:
    values = np.asarray(spacing, dtype=np.float64)
    if values.shape != (3,) or not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise InputError(f"{name} must be three positive numbers (mm), not {tuple(spacing)}")
    return values


def resampled_shape(
    shape: Sequence[int], from_spacing: Sequence[float], to_spacing: Sequence[float]
) -> tuple[int, int, int]:
    """Shape covering the same physical extent at ``to_spacing`` (at least one voxel per axis)."""
    source = _as_spacing(from_spacing, "from_spacing")
    target = _as_spacing(to_spacing, "to_spacing")
    extent = np.asarray(shape, dtype=np.float64) * source
    sizes = (max(1, int(round(e / t))) for e, t in zip(extent, target))
    return tuple(sizes)  # type: ignore[return-value]


#: A resampling that leaves an axis fewer voxels than this (from at least this many) is refused.
MIN_RESAMPLED_VOXELS = 4


def checked_resampled_shape(
    shape: Sequence[int], from_spacing: Sequence[float], to_spacing: Sequence[float], name: str
) -> tuple[int, int, int]:
    """:func:`resampled_shape`, refusing a result that collapses the volume to a few voxels.

    That happens when a file's spacing is in other units than it claims (metres read as mm):
    the message names the spacing, its unit and both shapes instead of segmenting nothing.
    """
    target = resampled_shape(shape, from_spacing, to_spacing)
    if any(t < MIN_RESAMPLED_VOXELS <= s for t, s in zip(target, shape)):
        have = ", ".join(f"{float(v):.4g}" for v in from_spacing)
        want = ", ".join(f"{float(v):.4g}" for v in to_spacing)
        raise InputError(
            f"{name}: its spacing ({have}) mm is so far from the model's ({want}) mm that resampling would "
            f"shrink {tuple(int(v) for v in shape)} voxels to {target}; check the file's spacing and its "
            "units (NIfTI xyzt_units, NRRD space units)"
        )
    return target


def resample_to_shape(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resample a 3D array (``[C, X, Y, Z]``: per channel) onto ``shape``, same extent.

    ``order`` is the spline order: 0 nearest (labels), 1 linear (probabilities, images). Linear
    resampling runs in torch (``interpolate``, trilinear, all CPU threads, every channel in one
    call); it samples the same points as scipy's ``zoom(order=1, grid_mode=True,
    mode="nearest")``, which does nearest (one thread).
    """
    array = np.asarray(array)
    shape = tuple(int(s) for s in shape)
    if array.ndim not in (3, 4):
        raise InputError(f"can only resample 3D arrays, got shape {array.shape}")
    if array.shape[-3:] == shape:
        return array.copy()
    if order == 1:
        return _linear_resample(array, shape)
    if array.ndim == 4:
        return np.stack([resample_to_shape(channel, shape, order) for channel in array])
    factors = [n / o for n, o in zip(shape, array.shape)]
    from scipy import ndimage  # lazily: keeps the engine importable with torch + numpy only

    out = ndimage.zoom(array, factors, output=array.dtype, order=order, mode="nearest", grid_mode=True)
    if out.shape != shape:  # zoom rounds the same way; guard anyway
        raise AssertionError(f"resampling produced {out.shape}, expected {shape}")
    return out


def _linear_resample(array: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Trilinear resampling of ``[X, Y, Z]`` or ``[C, X, Y, Z]`` onto ``shape`` as float32:
    voxel centres map area to area (``align_corners=False``), edges are extended."""
    import torch
    import torch.nn.functional as F

    data = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    batch = data[None, None] if array.ndim == 3 else data[None]
    with torch.inference_mode():
        out = F.interpolate(batch, size=shape, mode="trilinear", align_corners=False)
    out = out[0, 0] if array.ndim == 3 else out[0]
    return out.numpy()


def resample(
    array: np.ndarray,
    from_spacing: Sequence[float],
    to_spacing: Sequence[float],
    order: int = 1,
) -> np.ndarray:
    """Resample ``array`` from ``from_spacing`` to (about) ``to_spacing`` over the same extent."""
    shape = resampled_shape(np.shape(array)[-3:], from_spacing, to_spacing)
    return resample_to_shape(array, shape, order)


def resample_label(label: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Resample an integer label map onto ``shape`` (same extent) without jagged edges.

    Each class's indicator is resampled linearly and the most likely class is kept per voxel
    (on ties the lower class wins), which is smoother than nearest-neighbour when downsampling.
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise InputError(f"can only resample 3D label maps, got shape {label.shape}")
    shape = tuple(int(s) for s in shape)
    if label.shape == shape:
        return label.copy()
    classes = np.unique(label)
    best = np.zeros(shape, dtype=label.dtype)
    best_score = np.full(shape, -1.0, dtype=np.float32)
    for value in classes:
        score = resample_to_shape((label == value).astype(np.float32), shape, order=1)
        better = score > best_score
        best[better] = value
        best_score[better] = score[better]
    return best


def needs_resampling(
    spacing: Sequence[float],
    model_spacing: Sequence[float],
    tolerance: float = RESAMPLE_TOLERANCE,
) -> bool:
    """True when any axis differs from the model's spacing by more than ``tolerance`` (relative)."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, not {tolerance}")
    have = _as_spacing(spacing, "spacing")
    want = _as_spacing(model_spacing, "model spacing")
    return bool(np.any(np.abs(have - want) / want > tolerance))


def resample_to_spacing(
    image: np.ndarray,
    label: np.ndarray | None,
    spacing: Sequence[float],
    target: Sequence[float],
    name: str,
    tolerance: float = RESAMPLE_TOLERANCE,
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float, float]]:
    """``(image, label, spacing)`` of a case on a grid at about ``target`` mm, when its spacing
    differs from ``target`` by more than ``tolerance``; else the inputs unchanged.

    The image is resampled linearly, the label class by class (:func:`resample_label`); the
    returned spacing is the new grid's exact one (extent / voxels). A grid that would collapse
    to a few voxels is refused (:func:`checked_resampled_shape`, naming ``name``).
    """
    if not needs_resampling(spacing, target, tolerance):
        return image, label, tuple(float(s) for s in spacing)  # type: ignore[return-value]
    shape = checked_resampled_shape(image.shape, spacing, target, name)
    resampled = resample_to_shape(image, shape, order=1)
    label = None if label is None else resample_label(label, shape)
    new_spacing = tuple(n * s / m for n, s, m in zip(image.shape, spacing, shape))
    return resampled, label, new_spacing  # type: ignore[return-value]
