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


def resample_to_shape(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resample a 3D array (``[C, X, Y, Z]``: per channel) onto ``shape``, same extent.

    ``order`` is the spline order: 0 nearest (labels), 1 linear (probabilities, images).
    """
    array = np.asarray(array)
    shape = tuple(int(s) for s in shape)
    if array.ndim == 4:
        return np.stack([resample_to_shape(channel, shape, order) for channel in array])
    if array.ndim != 3:
        raise InputError(f"can only resample 3D arrays, got shape {array.shape}")
    if array.shape == shape:
        return array.copy()
    factors = [n / o for n, o in zip(shape, array.shape)]
    output_dtype = array.dtype if order == 0 else np.float32
    from scipy import ndimage  # lazily: keeps the engine importable with torch + numpy only

    out = ndimage.zoom(
        array if order == 0 else array.astype(np.float32, copy=False),
        factors,
        output=output_dtype,
        order=order,
        mode="nearest",
        grid_mode=True,
    )
    if out.shape != shape:  # zoom rounds the same way; guard anyway
        raise AssertionError(f"resampling produced {out.shape}, expected {shape}")
    return out


def resample(
    array: np.ndarray,
    from_spacing: Sequence[float],
    to_spacing: Sequence[float],
    order: int = 1,
) -> np.ndarray:
    """Resample ``array`` from ``from_spacing`` to (about) ``to_spacing`` over the same extent."""
    shape = resampled_shape(np.shape(array)[-3:], from_spacing, to_spacing)
    return resample_to_shape(array, shape, order)


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
