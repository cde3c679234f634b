"""napari writer: a Labels layer -> ``.nii.gz`` on its image's exact grid and affine.

Labels layers made by the reader or the plugin carry their image's geometry in
``metadata["uamc"]``; the label is mapped back from the display order to the source file's
voxel order and written with the source affine (atomically, by
:func:`napari_uamc.data.io.write_volume`). A layer without that geometry (napari's own "New
Labels layer") takes the geometry of the plugin image it was drawn on: the image in the viewer
with the same shape, scale and translate. When plugin images are open but none matches, the
write is refused (the label would land somewhere else); with no plugin image at all it is
written with its ``scale`` as spacing, identity orientation, and a warning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc._napari.layers import META_KEY, reference_volume_for, uamc_metadata, volume_from_layer
from napari_uamc.data.study.layout import NIFTI_SUFFIX as STUDY_NIFTI_SUFFIX
from napari_uamc.errors import InputError

#: The one file name ending this writer produces (every napari-uamc output is ``.nii.gz``).
NIFTI_SUFFIX = STUDY_NIFTI_SUFFIX


def write_labels(path: str | Path, data: Any, meta: dict[str, Any]) -> list[str]:
    """npe2 single-layer writer: save ``data`` (a Labels layer) as NIfTI; returns the path written.

    ``meta`` is the layer's attributes dict (``name``, ``scale``, ``metadata``, ...) as napari
    passes it.
    """
    from napari_uamc.data.io import write_volume

    target = Path(path)
    if not target.name.lower().endswith(NIFTI_SUFFIX):
        raise InputError(f"{target}: labels are saved as compressed NIfTI; use a {NIFTI_SUFFIX} file name")
    meta = dict(meta)
    if uamc_metadata(meta) is None:
        meta = _with_drawn_on_geometry(data, meta)
    volume = volume_from_layer((data, meta))
    labels = np.asarray(volume.array)
    written = write_volume(target, labels, like=volume, dtype=label_dtype(labels))
    return [str(written)]


def _plugin_images() -> list[Any]:
    """Layers of the current napari viewer that carry napari-uamc geometry."""
    try:
        import napari
    except ImportError:  # pragma: no cover - the writer runs inside napari
        return []
    viewer = napari.current_viewer()
    if viewer is None:
        return []
    return [layer for layer in viewer.layers if uamc_metadata(layer) is not None]


def _with_drawn_on_geometry(data: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with the geometry of the plugin image this label was drawn on (same shape, scale
    and translate); raises :class:`InputError` when plugin images are open and none matches."""
    images = _plugin_images()
    if not images:
        return meta
    shape = tuple(np.shape(data))
    ndim = len(shape)
    scale = np.asarray(meta.get("scale", (1.0,) * ndim), dtype=float)
    translate = np.asarray(meta.get("translate", (0.0,) * ndim), dtype=float)
    matches = [
        layer for layer in images
        if tuple(np.shape(layer.data)) == shape
        and np.allclose(np.asarray(layer.scale, float), scale, rtol=1e-6, atol=1e-9)
        and np.allclose(np.asarray(layer.translate, float), translate, atol=1e-6)
    ]
    grids = {reference_volume_for(layer).affine.round(6).tobytes() for layer in matches}  # type: ignore[union-attr]
    name = meta.get("name", "this Labels layer")
    if len(grids) != 1:
        described = ", ".join(f"{layer.name} {tuple(np.shape(layer.data))}" for layer in images[:4])
        why = "none has" if not grids else "several with different grids have"
        raise InputError(
            f"{name} carries no image geometry, and of the images opened with napari-uamc ({described}) "
            f"{why} its shape {shape}, scale {tuple(scale)} and translate {tuple(translate)}: it would be "
            "saved somewhere else than where it was drawn. Draw labels on the image's own grid (napari's "
            "New Labels layer with that image selected, or the panel's Segment)"
        )
    return {**meta, "metadata": {**dict(meta.get("metadata") or {}), META_KEY: dict(uamc_metadata(matches[0]))}}


def label_dtype(labels: np.ndarray) -> np.dtype:
    """Smallest integer dtype that holds every label value exactly."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return np.dtype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"a Labels layer must hold integers, got dtype {labels.dtype}")
    if labels.size == 0:
        return np.dtype(np.uint8)
    low, high = int(labels.min()), int(labels.max())
    for candidate in (np.uint8, np.uint16, np.int16, np.int32):
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return np.dtype(candidate)
    raise InputError(f"label values {low}..{high} do not fit a 32-bit integer")
