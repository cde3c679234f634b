"""The paper's training augmentation (METHOD.md section 4), in numpy.

UA-MT/DTC/UG-MCL rotate the whole volume by ``k`` quarter turns in the axial plane (the first two
axes), flip it along one of those two axes, then crop a random patch (zero-padding first when the
volume is smaller than the patch). Here the crop is taken *before* the rotation, with the patch's
in-plane sizes swapped for odd ``k``, and only the small crop is rotated and flipped: the same
distribution of patches (crop offsets are uniform either way) without rotating a whole volume per
sample. Like the public code, a flip is always applied (axis 0 or 1), so the eight
rotation/flip combinations give the four axial-plane reflections, each twice.

Zero is the padding value: volumes are z-scored, so zero is the mean intensity (and background
for labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The axial plane: rotations and flips act on the first two (canonical x, y) axes.
PLANE_AXES = (0, 1)
#: Quarter turns are drawn from 0 .. QUARTER_TURNS - 1.
QUARTER_TURNS = 4
PAD_VALUE = 0


@dataclass(frozen=True)
class AugmentParams:
    """One sample's random choices: ``rotations`` quarter turns, ``flip_axis`` (0 or 1), and
    ``offset`` of the crop in the zero-padded, not yet rotated volume."""

    rotations: int
    flip_axis: int
    offset: tuple[int, int, int]


def source_patch_shape(patch: Sequence[int], rotations: int) -> tuple[int, int, int]:
    """Crop shape before rotating: the in-plane sizes swap when ``rotations`` is odd."""
    x, y, z = (int(p) for p in patch)
    return (y, x, z) if rotations % 2 else (x, y, z)


def rotated_spacing(spacing: Sequence[float], rotations: int) -> tuple[float, float, float]:
    """Voxel spacing after ``rotations`` quarter turns in the axial plane."""
    sx, sy, sz = (float(s) for s in spacing)
    return (sy, sx, sz) if rotations % 2 else (sx, sy, sz)


def padding_for(shape: Sequence[int], minimum: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """Symmetric ``np.pad`` widths that grow ``shape`` to at least ``minimum`` in every axis."""
    widths = []
    for size, need in zip(shape, minimum):
        extra = max(int(need) - int(size), 0)
        widths.append((extra // 2, extra - extra // 2))
    return tuple(widths)


def padded_shape(shape: Sequence[int], minimum: Sequence[int]) -> tuple[int, int, int]:
    return tuple(max(int(s), int(m)) for s, m in zip(shape, minimum))  # type: ignore[return-value]


def draw_params(
    rng: np.random.Generator, volume_shape: Sequence[int], patch: Sequence[int]
) -> AugmentParams:
    """Random rotation, flip and crop offset for a volume of ``volume_shape``."""
    rotations = int(rng.integers(QUARTER_TURNS))
    flip_axis = int(rng.integers(len(PLANE_AXES)))
    crop = source_patch_shape(patch, rotations)
    room = [p - c for p, c in zip(padded_shape(volume_shape, crop), crop)]
    offset = tuple(int(rng.integers(r + 1)) for r in room)
    return AugmentParams(rotations, flip_axis, offset)  # type: ignore[arg-type]


def crop_rotate_flip(
    array: np.ndarray, params: AugmentParams, patch: Sequence[int]
) -> np.ndarray:
    """The augmented ``patch``-shaped sample of ``array`` (a contiguous copy).

    Image and label of a case get the same ``params`` and therefore the same transform.
    """
    crop = source_patch_shape(patch, params.rotations)
    widths = padding_for(array.shape, crop)
    if any(before or after for before, after in widths):
        array = np.pad(array, widths, mode="constant", constant_values=PAD_VALUE)
    window = tuple(slice(o, o + c) for o, c in zip(params.offset, crop))
    if any(s.stop > n for s, n in zip(window, array.shape)):
        raise ValueError(
            f"crop {window} does not fit the padded volume of shape {array.shape}"
        )
    sample = np.rot90(array[window], k=params.rotations, axes=PLANE_AXES)
    sample = np.flip(sample, axis=params.flip_axis)
    return np.ascontiguousarray(sample)
