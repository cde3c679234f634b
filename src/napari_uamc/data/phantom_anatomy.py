"""The anatomy of a synthetic left-atrium phantom: its voxel grid and its tissue-class map.

:func:`sample_grid` draws the canonical grid (anisotropic spacing, a small rotation, a non-zero
origin, a non-RAS storage order); :func:`sample_anatomy` draws the tissue classes
(:class:`Tissue`) on it: a deformed-ellipsoid atrium with 3-5 tapering pulmonary veins (the
label), its thin wall, and unlabeled structures (ventricle, aorta, small vessels, lungs).
Lengths are in field-of-view units (half the grid's smallest physical extent) unless named
``_mm``. :mod:`napari_uamc.data.phantoms` renders the map into an MRI-like image and writes
studies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from scipy import ndimage


class Tissue(IntEnum):
    """Tissue classes of the anatomy map, painted in this order (later wins)."""

    TISSUE = 0
    LUNG = 1
    WALL = 2
    VENTRICLE = 3
    AORTA = 4
    VESSEL = 5
    ATRIUM = 6


@dataclass(frozen=True)
class AnatomyRanges:
    """Random ranges of grid and anatomy. Lengths without "mm" are in field-of-view units
    (half the smallest physical extent of the grid)."""

    in_plane_mm: tuple[float, float] = (0.70, 0.80)
    slice_mm: tuple[float, float] = (1.5, 2.5)
    grid_tilt_deg: float = 8.0
    origin_mm: float = 100.0
    chamber_offset: float = 0.12
    chamber_radii: tuple[tuple[float, float], ...] = ((0.42, 0.52), (0.32, 0.40), (0.30, 0.38))
    chamber_tilt_deg: float = 25.0
    chamber_deformation: tuple[float, float] = (0.05, 0.12)
    deformation_frequency: tuple[float, float] = (1.5, 3.5)
    vein_count: tuple[int, int] = (3, 5)
    vein_direction_jitter: float = 0.2
    vein_start_depth: float = 0.5  #: start inside the chamber, fraction of its radius
    vein_length: tuple[float, float] = (0.55, 0.90)
    vein_radius: tuple[float, float] = (0.10, 0.14)
    vein_taper: tuple[float, float] = (0.3, 0.5)
    vein_bend: float = 0.3
    atrial_wall: float = 0.05
    wall_gap: float = 0.04  #: tissue between the atrial wall and other structures
    ventricle_radii: tuple[float, float] = (0.30, 0.38)
    #: Ventricle centre from the atrium's: left, (touching) anterior, inferior.
    ventricle_offset: tuple[tuple[float, float], ...] = ((-0.3, -0.1), (-0.1, 0.0), (-0.4, -0.2))
    ventricle_wall: float = 0.12
    aorta_radius: tuple[float, float] = (0.13, 0.18)
    aorta_distance: tuple[float, float] = (0.25, 0.40)
    aorta_tilt: float = 0.15
    vessel_count: tuple[int, int] = (2, 4)
    vessel_radius: tuple[float, float] = (0.04, 0.09)
    lung_start: tuple[float, float] = (0.80, 0.92)
    lung_wobble: float = 0.08
    samples_per_radius: float = 3.0  #: centre-line samples per tube radius


ANATOMY = AnatomyRanges()

#: Pulmonary-vein directions (patient RAS: +x right, +y anterior, +z superior) by count:
#: the usual four; three with a left common trunk; five with a right middle vein.
_RSPV, _RIPV, _LSPV, _LIPV = (1, -0.7, 0.5), (1, -0.7, -0.5), (-1, -0.7, 0.5), (-1, -0.7, -0.5)
VEIN_LAYOUTS: dict[int, tuple[tuple[float, float, float], ...]] = {
    3: (_RSPV, _RIPV, (-1, -0.7, 0.0)),
    4: (_RSPV, _RIPV, _LSPV, _LIPV),
    5: (_RSPV, _RIPV, _LSPV, _LIPV, (1, -0.6, 0.0)),
}

#: Storage orders of the written files (none is RAS): flips, in-plane swaps, a slice axis
#: stored in the middle.
SOURCE_AXCODES: tuple[tuple[str, str, str], ...] = (
    ("L", "P", "S"),
    ("L", "A", "S"),
    ("R", "P", "I"),
    ("A", "L", "S"),
    ("P", "R", "I"),
    ("L", "S", "P"),
)


@dataclass(frozen=True)
class Grid:
    """The canonical voxel grid of a phantom and its physical coordinates."""

    shape: tuple[int, int, int]
    spacing: np.ndarray
    rotation: np.ndarray
    origin: np.ndarray
    source_axcodes: tuple[str, str, str]

    @property
    def linear(self) -> np.ndarray:
        return self.rotation @ np.diag(self.spacing)

    @property
    def affine(self) -> np.ndarray:
        affine = np.eye(4)
        affine[:3, :3] = self.linear
        affine[:3, 3] = self.origin
        return affine

    @property
    def unit_mm(self) -> float:
        """Length of one field-of-view unit: half the smallest physical extent."""
        return 0.5 * float(np.min(np.asarray(self.shape) * self.spacing))

    @property
    def half_extent(self) -> np.ndarray:
        """Half the physical extent along each axis, in field-of-view units."""
        return 0.5 * np.asarray(self.shape) * self.spacing / self.unit_mm

    @property
    def centre(self) -> np.ndarray:
        return (np.asarray(self.shape, dtype=float) - 1) / 2

    def coordinates(self) -> list[np.ndarray]:
        """Patient coordinates (x, y, z) of every voxel in field-of-view units around the
        grid centre, as three broadcastable float32 arrays of the grid's shape."""
        to_units = self.linear / self.unit_mm
        offsets = [np.arange(n, dtype=np.float32) - c for n, c in zip(self.shape, self.centre)]
        axes = [
            offsets[0][:, None, None],
            offsets[1][None, :, None],
            offsets[2][None, None, :],
        ]
        return [
            (to_units[row, 0] * axes[0] + to_units[row, 1] * axes[1] + to_units[row, 2] * axes[2])
            .astype(np.float32)
            for row in range(3)
        ]


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """A rotation by at most ``max_deg`` about a random axis (Rodrigues' formula)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = math.radians(rng.uniform(-max_deg, max_deg))
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def _unit(vector: Sequence[float]) -> np.ndarray:
    vector = np.asarray(vector, dtype=float)
    return vector / np.linalg.norm(vector)


def _perpendicular(rng: np.random.Generator, direction: np.ndarray) -> np.ndarray:
    """A random unit vector perpendicular to ``direction``."""
    vector = rng.normal(size=3)
    vector -= vector.dot(direction) * direction
    return _unit(vector)


def sample_grid(rng: np.random.Generator, shape: tuple[int, int, int]) -> Grid:
    """A random canonical grid of ``shape`` voxels: in-plane and slice spacing (mm), a small
    rotation, an origin (mm) and the storage order of the written files."""
    in_plane = rng.uniform(*ANATOMY.in_plane_mm)
    spacing = np.array([in_plane, in_plane, rng.uniform(*ANATOMY.slice_mm)])
    rotation = _random_rotation(rng, ANATOMY.grid_tilt_deg)
    origin = rng.uniform(-ANATOMY.origin_mm, ANATOMY.origin_mm, size=3)
    axcodes = SOURCE_AXCODES[int(rng.integers(len(SOURCE_AXCODES)))]
    return Grid(shape, spacing, rotation, origin, axcodes)


def cosine_field(
    rng: np.random.Generator,
    coords: Sequence[np.ndarray],
    frequency: tuple[float, float],
    terms: int = 6,
) -> np.ndarray:
    """A smooth random field of about unit variance: a sum of plane cosine waves."""
    total = np.zeros(np.broadcast_shapes(*(c.shape for c in coords)), dtype=np.float32)
    for _ in range(terms):
        direction = _unit(rng.normal(size=3))
        wavenumber = rng.uniform(*frequency)
        phase = rng.uniform(0, 2 * math.pi)
        wave = sum(np.float32(wavenumber * d) * c for d, c in zip(direction, coords))
        total += np.cos(wave + np.float32(phase))
    return total * np.float32(math.sqrt(2.0 / terms))


def _ellipsoid(
    coords: Sequence[np.ndarray],
    centre: np.ndarray,
    rotation: np.ndarray,
    radii: np.ndarray,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Normalised radius (1 on the surface) of an ellipsoid and the local coordinates."""
    relative = [c - np.float32(m) for c, m in zip(coords, centre)]
    local = [
        sum(np.float32(rotation[row, axis]) * relative[row] for row in range(3)) / np.float32(r)
        for axis, r in enumerate(radii)
    ]
    return np.sqrt(sum(component**2 for component in local)), local


def _paint_balls(
    mask: np.ndarray, grid: Grid, centres: np.ndarray, radii: np.ndarray
) -> None:
    """Set every voxel of ``mask`` within ``radii`` of ``centres`` (field-of-view units)."""
    to_units = grid.linear / grid.unit_mm
    to_index = np.linalg.inv(to_units)
    voxel_units = grid.spacing / grid.unit_mm
    shape = np.asarray(grid.shape)
    for centre, radius in zip(centres, radii):
        index = grid.centre + to_index @ centre
        half = np.ceil(radius / voxel_units) + 1
        low = np.maximum(np.floor(index - half), 0).astype(int)
        high = np.minimum(np.ceil(index + half) + 1, shape).astype(int)
        if np.any(low >= high):
            continue
        ranges = [np.arange(low[a], high[a], dtype=np.float32) - index[a] for a in range(3)]
        axes = [ranges[0][:, None, None], ranges[1][None, :, None], ranges[2][None, None, :]]
        distance2 = sum(
            (to_units[row, 0] * axes[0] + to_units[row, 1] * axes[1] + to_units[row, 2] * axes[2])
            ** 2
            for row in range(3)
        )
        box = tuple(slice(lo, hi) for lo, hi in zip(low, high))
        mask[box] |= distance2 <= radius**2


def _tube_samples(
    start: np.ndarray,
    direction: np.ndarray,
    bend: np.ndarray,
    length: float,
    radius: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Centre-line points and radii of a curved tube ``start + L (t d + t^2 b)``, t in [0, 1],
    with radius tapering linearly from ``radius[0]`` to ``radius[1]``."""
    count = max(2, int(math.ceil(length * ANATOMY.samples_per_radius / min(radius))))
    t = np.linspace(0.0, 1.0, count)[:, None]
    points = start + length * (t * direction + t**2 * bend)
    radii = radius[0] + (radius[1] - radius[0]) * t[:, 0]
    return points, radii


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def sample_anatomy(rng: np.random.Generator, grid: Grid) -> np.ndarray:
    """The tissue-class map (:class:`Tissue`) of one phantom on ``grid``."""
    coords = grid.coordinates()
    shape = grid.shape
    r = ANATOMY

    # Left atrium: a deformed ellipsoid ...
    centre = rng.uniform(-r.chamber_offset, r.chamber_offset, size=3)
    radii = np.array([rng.uniform(*bounds) for bounds in r.chamber_radii])
    tilt = _random_rotation(rng, r.chamber_tilt_deg)
    radius, local = _ellipsoid(coords, centre, tilt, radii)
    deformation = rng.uniform(*r.chamber_deformation) * cosine_field(
        rng, local, r.deformation_frequency
    )
    atrium = radius <= 1 + deformation
    del radius, local, deformation

    # ... with pulmonary veins leaving it posteriorly and laterally.
    count = int(rng.integers(r.vein_count[0], r.vein_count[1] + 1))
    veins = np.zeros(shape, dtype=bool)
    for layout in VEIN_LAYOUTS[count]:
        direction = _unit(np.asarray(layout) + rng.normal(0, r.vein_direction_jitter, size=3))
        along = tilt.T @ direction / radii
        depth = 1.0 / float(np.linalg.norm(along))  # chamber radius along the direction
        start = centre + r.vein_start_depth * depth * direction
        length = (1 - r.vein_start_depth) * depth + rng.uniform(*r.vein_length)
        bend = rng.uniform(-r.vein_bend, r.vein_bend) * _perpendicular(rng, direction)
        first = rng.uniform(*r.vein_radius)
        last = first * (1 - rng.uniform(*r.vein_taper))
        points, tube_radii = _tube_samples(start, direction, bend, length, (first, last))
        _paint_balls(veins, grid, points, tube_radii)
    label = _largest_component(atrium | veins)
    del atrium, veins

    # Unlabeled structures: left ventricle (anterior, left, inferior) with a thick wall ...
    ventricle_radii = rng.uniform(*r.ventricle_radii, size=3)
    shift = [rng.uniform(*bounds) for bounds in r.ventricle_offset]
    shift[1] += radii[1] + ventricle_radii[1]  # in front of the atrium, walls touching
    ventricle_centre = centre + np.array(shift)
    ventricle_tilt = _random_rotation(rng, r.chamber_tilt_deg)
    ventricle_radius, _ = _ellipsoid(coords, ventricle_centre, ventricle_tilt, ventricle_radii)
    wall_ratio = 1 + r.ventricle_wall / float(np.min(ventricle_radii))
    # ... a descending aorta behind the atrium, running head to foot ...
    aorta = np.zeros(shape, dtype=bool)
    aorta_radius = rng.uniform(*r.aorta_radius)
    aorta_centre = centre + np.array(
        [rng.uniform(-0.3, 0.0), -radii[1] - rng.uniform(*r.aorta_distance), 0.0]
    )
    aorta_direction = _unit(
        [rng.uniform(-r.aorta_tilt, r.aorta_tilt), rng.uniform(-r.aorta_tilt, r.aorta_tilt), 1]
    )
    reach = float(np.linalg.norm(grid.half_extent)) + abs(centre[2])
    points, tube_radii = _tube_samples(
        aorta_centre - reach * aorta_direction,
        aorta_direction,
        np.zeros(3),
        2 * reach,
        (aorta_radius, aorta_radius),
    )
    _paint_balls(aorta, grid, points, tube_radii)
    # ... small vessels anywhere, and lungs at both lateral edges.
    vessels = np.zeros(shape, dtype=bool)
    vessel_count = int(rng.integers(r.vessel_count[0], r.vessel_count[1] + 1))
    vessel_centres = rng.uniform(-1, 1, size=(vessel_count, 3)) * grid.half_extent
    _paint_balls(vessels, grid, vessel_centres, rng.uniform(*r.vessel_radius, size=vessel_count))
    lung_start = rng.uniform(*r.lung_start) * grid.half_extent[0]
    wobble = r.lung_wobble * cosine_field(rng, coords, (1.0, 3.0), terms=3)
    lung = np.abs(coords[0]) > lung_start + wobble

    distance = ndimage.distance_transform_edt(~label, sampling=grid.spacing / grid.unit_mm)
    classes = np.full(shape, Tissue.TISSUE, dtype=np.uint8)
    classes[lung] = Tissue.LUNG
    classes[ventricle_radius <= wall_ratio] = Tissue.WALL
    classes[ventricle_radius <= 1] = Tissue.VENTRICLE
    classes[aorta] = Tissue.AORTA
    classes[vessels] = Tissue.VESSEL
    classes[distance <= r.atrial_wall + r.wall_gap] = Tissue.TISSUE
    classes[distance <= r.atrial_wall] = Tissue.WALL
    classes[label] = Tissue.ATRIUM
    return classes
