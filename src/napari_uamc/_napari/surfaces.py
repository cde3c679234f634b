"""The 3D view's segmentation surface: a mesh made off the GUI thread, islands dropped, data untouched.

In 3D the panel hides ``<image> segmentation`` (a Labels layer rendered as a volume costs about
0.8 s a frame with napari's software OpenGL on this VM, and shows every stray voxel as an
island) and shows ``<image> surface``: a Surface layer of the label's boundary (marching cubes
at 0.5 between voxel centres, no smoothing), without the connected pieces smaller than
``ISLAND_MIN_MM3`` or than ``ISLAND_MIN_FRACTION`` of the largest piece (which is always
kept). Only the surface drops them: the label data, what Accept saves, is never changed.
The mesh is made lazily, on the first switch to 3D after the label changed, in a background
job; it takes the segmentation layer's exact transform (scale, translate, rotate, shear,
affine), so it lies where the voxels lie, and sits just below the segmentation in the layer
list (hidden in 2D, it is not left on top of the list). No Qt.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_uamc._napari import styling
from napari_uamc._napari.jobs import Job, Runner
from napari_uamc._napari.styling import SEGMENTATION_SUFFIX, SURFACE_SUFFIX

#: Connected pieces of the segmentation smaller than this (mm3, 26-connected) are left out of the
#: 3D surface (0.05 mL: stray voxels and specks, not anatomy one would look at in 3D).
ISLAND_MIN_MM3 = 50.0
#: ... and pieces smaller than this fraction of the largest one (on a real LA scan: a 0.19 mL
#: fragment beside a 55 mL atrium, a spurious island in the 3D view).
ISLAND_MIN_FRACTION = 0.01
#: The transform of a layer, copied from the segmentation to its surface.
TRANSFORM_KEYS = ("scale", "translate", "rotate", "shear", "affine")


def surface_mesh(data: np.ndarray, voxel_mm3: float, min_mm3: float = ISLAND_MIN_MM3,
                 min_fraction: float = ISLAND_MIN_FRACTION) -> tuple[np.ndarray, np.ndarray] | None:
    """(vertices, faces) of the boundary of ``data != 0`` in ``data``'s index space, pieces smaller
    than ``min_mm3`` or ``min_fraction`` of the largest left out (the largest always kept);
    ``None`` for an empty label."""
    from scipy import ndimage
    from skimage.measure import marching_cubes

    mask = np.asarray(data) != 0
    if not mask.any():
        return None
    pieces, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)
    sizes[0] = 0
    keep = (sizes * float(voxel_mm3) >= min_mm3) & (sizes >= min_fraction * sizes.max())
    keep[int(np.argmax(sizes))] = True
    keep[0] = False
    mask = keep[pieces]
    # the kept voxels' box, one voxel of background around it so the surface closes at the edges
    box = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis))) for axis in range(3)]
    low = np.array([int(b[0]) for b in box])
    crop = mask[tuple(slice(int(b[0]), int(b[-1]) + 1) for b in box)]
    padded = np.pad(crop, 1).astype(np.float32)
    vertices, faces, _normals, _values = marching_cubes(padded, level=0.5)
    return (vertices + (low - 1)).astype(np.float32), faces.astype(np.int32)


class Surfaces:
    """The surfaces of a viewer's segmentation layers, made when the 3D view needs them."""

    def __init__(self, viewer: Any, runner: Runner) -> None:
        self.viewer = viewer
        self.runner = runner
        #: segmentation layer name -> the data its surface was made from (or is being made from)
        self._sources: dict[str, np.ndarray] = {}

    def refresh(self) -> None:
        """Make (in the background) the surface of every segmentation whose voxels changed since."""
        for layer in list(self.viewer.layers):
            name = layer.name
            if not name.endswith(SEGMENTATION_SUFFIX):
                continue
            source = self._sources.get(name)
            data = np.asarray(layer.data)
            if source is not None and source.shape == data.shape and np.array_equal(source, data):
                continue
            source = np.array(data, copy=True)
            self._sources[name] = source
            voxel_mm3 = float(np.prod(np.abs(np.asarray(layer.scale, dtype=float))))
            self.runner.start(Job(
                "3D surface", surface_mesh, dict(data=source, voxel_mm3=voxel_mm3),
                on_returned=lambda mesh, name=name, source=source: self._put(name, source, mesh),
                on_errored=lambda _error, name=name: self._sources.pop(name, None),
            ))

    def forget(self, name: str) -> None:
        """A segmentation layer was removed or replaced: its next surface is made anew."""
        self._sources.pop(name, None)

    def _put(self, name: str, source: np.ndarray, mesh: tuple[np.ndarray, np.ndarray] | None) -> None:
        layers = self.viewer.layers
        if name not in layers or self._sources.get(name) is not source:
            return  # removed, or its voxels changed again meanwhile (a newer surface is coming)
        segmentation = layers[name]
        surface_name = name[: -len(SEGMENTATION_SUFFIX)] + SURFACE_SUFFIX
        if mesh is None:  # an empty label: no surface
            if surface_name in layers:
                layers.remove(surface_name)
            return
        transform = {key: getattr(segmentation, key) for key in TRANSFORM_KEYS}
        selection = layers.selection
        active = selection.active
        if surface_name in layers:
            surface = layers[surface_name]
            surface.data = mesh
            for key, value in transform.items():
                setattr(surface, key, value)
        else:
            surface = self.viewer.add_surface(mesh, name=surface_name, **transform)
            # just below its segmentation, not on top of the layer list where 2D hides it
            layers.move(layers.index(surface), layers.index(segmentation))
        styling.style_surface(surface, shown=self.viewer.dims.ndisplay == 3)
        if active is not None and active in layers:
            selection.active = active  # a helper layer never becomes the painting target
