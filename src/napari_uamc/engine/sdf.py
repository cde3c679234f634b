"""Signed distance targets and their smooth inverse (METHOD.md section 2).

Convention: **negative inside, positive outside**, in [-1, 1]; each side normalised by its own
maximum over the patch; the inner boundary (foreground voxels with a 6-neighbour in background)
is exactly 0. Distances use the voxel spacing, so anisotropic grids give a geometric SDF.
Degenerate patches: no foreground -> +1 everywhere, all foreground -> -1 everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from napari_uamc.errors import InputError

#: Paper value of k in T_inv(z) = sigmoid(-k z).
DEFAULT_SDF_K = 1500.0
OUTSIDE = 1.0
INSIDE = -1.0
_SIX_NEIGHBOURS = np.array(  # the 6-connected 3x3x3 structure (ndimage.generate_binary_structure(3, 1))
    [[[0, 0, 0], [0, 1, 0], [0, 0, 0]], [[0, 1, 0], [1, 1, 1], [0, 1, 0]], [[0, 0, 0], [0, 1, 0], [0, 0, 0]]],
    dtype=bool,
)


def _check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise InputError(f"Spacing must be three positive numbers, not {spacing!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(f"Spacing must be three positive numbers, not {spacing!r}")
    return values  # type: ignore[return-value]


def inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground voxels with a 6-neighbour in background (the array border is not background)."""
    from scipy import ndimage  # lazily: the GPU benchmark imports this module without scipy

    eroded = ndimage.binary_erosion(mask, structure=_SIX_NEIGHBOURS, border_value=1)
    return mask & ~eroded


def _inside_distance(foreground: np.ndarray, sampling: tuple[float, float, float]) -> np.ndarray:
    """``edt(foreground)`` computed on the foreground's bounding box grown by one voxel.

    Exact: every voxel outside the box is background, and the nearest of them to a voxel in the
    box lies in the one-voxel shell (clamping a coordinate towards the box never increases a
    distance). Where the box meets the array border there is no shell, as in the full array.
    """
    nonzero = np.nonzero(foreground.any(axis=(1, 2)))[0], np.nonzero(
        foreground.any(axis=(0, 2)))[0], np.nonzero(foreground.any(axis=(0, 1)))[0]
    box = tuple(
        slice(max(int(idx[0]) - 1, 0), min(int(idx[-1]) + 2, n))
        for idx, n in zip(nonzero, foreground.shape)
    )
    from scipy import ndimage

    inside = np.zeros(foreground.shape, dtype=np.float64)
    inside[box] = ndimage.distance_transform_edt(foreground[box], sampling=sampling)
    return inside


def signed_distance_target(
    mask: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """Normalised signed distance of a binary 3-D ``mask`` (float32, same shape).

    ``edt(background)/max - edt(foreground)/max`` with the boundary set to 0 (see module doc).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"The SDF target needs a 3-D mask, got shape {mask.shape}")
    sampling = _check_spacing(spacing)
    foreground = mask.astype(bool, copy=False)
    if not foreground.any():
        return np.full(mask.shape, OUTSIDE, dtype=np.float32)
    if foreground.all():
        return np.full(mask.shape, INSIDE, dtype=np.float32)

    from scipy import ndimage

    outside = ndimage.distance_transform_edt(~foreground, sampling=sampling)
    inside = _inside_distance(foreground, sampling)
    sdf = outside / outside.max() - inside / inside.max()
    sdf[inner_boundary(foreground)] = 0.0
    return sdf.astype(np.float32)


def sdf_targets_for_labels(
    label: np.ndarray, n_classes: int, spacing: Sequence[float] = (1.0, 1.0, 1.0)
) -> np.ndarray:
    """One SDF target per foreground class: ``[C-1, X, Y, Z]`` float32 from a label map."""
    label = np.asarray(label)
    if label.ndim != 3:
        raise InputError(f"The SDF target needs a 3-D label map, got shape {label.shape}")
    if not isinstance(n_classes, int) or n_classes < 2:
        raise InputError(f"n_classes must be an integer >= 2, not {n_classes!r}")
    if label.size and (label.min() < 0 or label.max() >= n_classes):
        raise InputError(
            f"Label values must be in [0, {n_classes - 1}] for {n_classes} classes, "
            f"found [{label.min()}, {label.max()}]"
        )
    return np.stack(
        [signed_distance_target(label == c, spacing) for c in range(1, n_classes)], axis=0
    )


def sdf_to_mask(sdf: torch.Tensor, k: float = DEFAULT_SDF_K) -> torch.Tensor:
    """Smooth inverse of the SDF: ``sigmoid(-k * sdf)`` (about 1 inside, 0 outside)."""
    return torch.sigmoid(-k * sdf)
