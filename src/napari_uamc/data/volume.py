"""The in-memory volume: a 3D array in canonical (RAS+) voxel order with its geometry.

Conventions (see docs/data-and-geometry.md):

* ``Volume.array`` is indexed ``[i, j, k]`` = ``[x, y, z]`` in the closest canonical
  orientation (RAS+) of the source: only axis permutations and flips, never resampling.
* ``Volume.affine`` maps canonical voxel indices to RAS millimetres.
* ``Volume.spacing`` is the voxel size in mm along i, j, k.
* ``Volume.source`` remembers the file's own grid (shape, affine, orientation, header) so
  that :meth:`Volume.to_source_order` and the writers put outputs back on that exact grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc.errors import GridMismatchError, InputError

#: Affines of two grids are "the same" when they differ by less than this (mm).
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class SourceGeometry:
    """Where a volume came from, so results can be mapped back onto the file's grid.

    ``orientation`` is nibabel's orientation array (``io_orientation`` of ``affine``): row
    ``n`` says which canonical axis source axis ``n`` became and whether it was flipped.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    orientation: np.ndarray
    path: Path | None = None
    format: str = "array"
    header: Any = None


@dataclass(frozen=True)
class Volume:
    """A 3D single-channel volume in canonical voxel order with its spacing and affine."""

    array: np.ndarray
    affine: np.ndarray
    source: SourceGeometry | None = field(default=None, compare=False)
    name: str = "volume"

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise InputError(f"{self.name}: expected a 3D array, got shape {self.array.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
            raise InputError(f"{self.name}: affine must be a finite 4x4 matrix, got {affine!r}")
        object.__setattr__(self, "affine", affine)
        spacing = self.spacing
        if not all(s > 0 for s in spacing):
            raise InputError(f"{self.name}: spacing must be strictly positive, not {spacing}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along the three array axes (column norms of the affine)."""
        norms = np.linalg.norm(self.affine[:3, :3], axis=0)
        return tuple(float(n) for n in norms)  # type: ignore[return-value]

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm^3)."""
        return float(np.prod(self.spacing)) / 1000.0

    def with_array(self, array: np.ndarray, name: str | None = None) -> Volume:
        """A volume on the same grid (affine and source) holding ``array``."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise GridMismatchError(
                f"{name or self.name}: array shape {array.shape} does not match the grid "
                f"{self.array.shape} of {self.name}"
            )
        return replace(self, array=array, name=name or self.name)

    def same_grid(self, other: Volume) -> bool:
        """True when ``other`` has the same shape and (within 1 µm) the same affine."""
        return self.shape == other.shape and bool(
            np.allclose(self.affine, other.affine, atol=AFFINE_TOLERANCE_MM)
        )

    def require_same_grid(self, other: Volume) -> None:
        """Raise :class:`GridMismatchError` naming both volumes if the grids differ."""
        if self.shape != other.shape:
            raise GridMismatchError(
                f"{other.name} has shape {other.shape} but {self.name} has shape {self.shape}: "
                "they must be on the same voxel grid"
            )
        if not np.allclose(self.affine, other.affine, atol=AFFINE_TOLERANCE_MM):
            worst = float(np.max(np.abs(self.affine - other.affine)))
            raise GridMismatchError(
                f"{other.name} and {self.name} have the same shape but different affines "
                f"(largest difference {worst:.4g} mm): they must be on the same voxel grid"
            )

    def to_source_order(self, array: np.ndarray) -> np.ndarray:
        """Map an array on this volume's canonical grid back to the source file's voxel order."""
        array = np.asarray(array)
        if array.shape[:3] != self.shape:
            raise GridMismatchError(
                f"array of shape {array.shape} is not on the grid {self.shape} of {self.name}"
            )
        if self.source is None:
            return array
        from nibabel.orientations import apply_orientation, ornt_transform

        back = ornt_transform(canonical_orientation(), self.source.orientation)
        return apply_orientation(array, back)


def canonical_orientation() -> np.ndarray:
    """nibabel orientation array of RAS+ itself (identity)."""
    return np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


def canonicalize(
    array: np.ndarray,
    affine: np.ndarray,
    *,
    name: str = "volume",
    path: Path | None = None,
    format: str = "array",
    header: Any = None,
) -> Volume:
    """Reorient a source-order array to the closest canonical (RAS+) orientation.

    Only permutes and flips axes (nibabel's ``as_closest_canonical`` semantics), so voxel
    values are untouched; the result remembers the source grid for writing back.
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    affine = np.asarray(affine, dtype=np.float64)
    if array.ndim != 3:
        raise InputError(f"{name}: expected a 3D array, got shape {array.shape}")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise InputError(f"{name}: affine must be a finite 4x4 matrix")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if not np.all(spacing > 0):
        raise InputError(
            f"{name}: spacing must be strictly positive, not {tuple(float(s) for s in spacing)}"
        )
    ornt = io_orientation(affine)
    canonical_array = apply_orientation(array, ornt)
    canonical_affine = affine @ inv_ornt_aff(ornt, array.shape)
    source = SourceGeometry(
        shape=tuple(int(s) for s in array.shape),  # type: ignore[arg-type]
        affine=affine,
        orientation=ornt,
        path=path,
        format=format,
        header=header,
    )
    return Volume(np.ascontiguousarray(canonical_array), canonical_affine, source, name)
