"""Between :class:`~napari_uamc.data.volume.Volume` and napari layers: the display convention.

This module is the only place that knows how a canonical volume is shown in napari.

Display convention ("radiological axial")
-----------------------------------------
A volume's canonical RAS+ array ``[x, y, z]`` (x to the patient's right, y anterior,
z superior) is shown as layer data ``[z, row, column]``:

* the slider (napari's first axis) runs over ``k`` = z, inferior to superior, so each
  slice is an axial slice;
* rows run from anterior (top of the screen) to posterior: ``row = ny - 1 - j``;
* columns run from the patient's right (left of the screen) to the patient's left:
  ``column = nx - 1 - i``, i.e. patient left on screen right, as radiologists read.

In numpy terms ``data = flip(array.transpose(2, 1, 0), axes=(1, 2))``, a view with no copy;
the inverse is exact (:func:`layer_data_to_canonical`). ``scale`` is the spacing in the
displayed order ``(sz, sy, sx)``, so napari shows physical proportions.

Every layer made here carries ``metadata["uamc"]`` (see :class:`UamcLayerMeta` keys below)
with enough geometry to rebuild the :class:`Volume` grid and to write outputs back onto the
source file's exact grid and affine.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc.data.volume import SourceGeometry, Volume, canonical_orientation
from napari_uamc.errors import InputError

#: Key of this plugin's dict in ``layer.metadata``.
META_KEY = "uamc"
#: Name of the display convention, stored in the metadata so a future change is detectable.
DISPLAY_CONVENTION = "radiological-axial-v1"
#: Layer data axes flipped by the display transform (rows and columns).
_FLIPPED_AXES = (1, 2)
#: napari's axis labels for layer data ``[z, row, column]``: the slider's axis, the screen's rows
#: and columns (as the panel's *Where to correct* list and napari's status bar count them).
AXIS_LABELS = ("slice", "row", "column")
#: Robust contrast limits of image layers: these percentiles of the intensities.
CONTRAST_PERCENTILES = (0.5, 99.5)
#: Contrast limits are estimated on at most about this many voxels (strided subsample).
CONTRAST_SAMPLE_VOXELS = 2_000_000

# Keys of metadata["uamc"].
KEY_CONVENTION = "display"
KEY_CASE = "case"
KEY_PATH = "path"
KEY_AFFINE = "affine"  # canonical 4x4 affine (voxel [i, j, k] -> RAS mm)
KEY_SHAPE = "shape"  # canonical shape (nx, ny, nz)
KEY_SOURCE = "source"  # SourceGeometry of the file (shape, affine, orientation, header)
KEY_STUDY = "study"  # optional: the study folder the layer belongs to

LayerDataTuple = tuple[Any, dict[str, Any], str]


# --------------------------------------------------------------------------- arrays


def volume_to_layer_data(volume: Volume | np.ndarray) -> np.ndarray:
    """The layer data of a canonical volume (or canonical ``[x, y, z]`` array): a view."""
    array = volume.array if isinstance(volume, Volume) else np.asarray(volume)
    _require_3d(array, "volume")
    return np.flip(array.transpose(2, 1, 0), axis=_FLIPPED_AXES)


def layer_data_to_canonical(data: Any) -> np.ndarray:
    """Invert :func:`volume_to_layer_data`: displayed ``[z, row, column]`` -> canonical ``[x, y, z]``."""
    array = np.asarray(data)
    _require_3d(array, "layer data")
    return np.flip(array, axis=_FLIPPED_AXES).transpose(2, 1, 0)


def display_scale(spacing: tuple[float, float, float]) -> tuple[float, float, float]:
    """Layer ``scale`` for a canonical spacing ``(sx, sy, sz)``: ``(sz, sy, sx)``."""
    sx, sy, sz = (float(s) for s in spacing)
    return (sz, sy, sx)


def canonical_spacing(scale: Any) -> tuple[float, float, float]:
    """Canonical spacing ``(sx, sy, sz)`` from a 3D layer ``scale`` ``(sz, sy, sx)``."""
    sz, sy, sx = (abs(float(s)) for s in tuple(scale)[-3:])
    return (sx, sy, sz)


def canonical_index(displayed_index: Any, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Canonical voxel ``(i, j, k)`` of a displayed ``(slice, row, column)`` index.

    ``shape`` is the canonical shape ``(nx, ny, nz)``.
    """
    k, row, column = (int(round(float(v))) for v in displayed_index)
    nx, ny, _ = shape
    return (nx - 1 - column, ny - 1 - row, k)


def displayed_index(canonical: Any, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Displayed ``(slice, row, column)`` of a canonical voxel ``(i, j, k)`` (inverse of above)."""
    i, j, k = (int(round(float(v))) for v in canonical)
    nx, ny, _ = shape
    return (k, ny - 1 - j, nx - 1 - i)


def _require_3d(array: np.ndarray, what: str) -> None:
    if array.ndim != 3:
        raise InputError(f"{what}: expected a 3D array, got shape {array.shape}")


# --------------------------------------------------------------------------- metadata


def volume_metadata(volume: Volume, *, case: str | None = None, **extra: Any) -> dict[str, Any]:
    """The ``metadata["uamc"]`` dict describing ``volume``'s grid (no voxel data)."""
    source = volume.source
    meta: dict[str, Any] = {
        KEY_CONVENTION: DISPLAY_CONVENTION,
        KEY_CASE: case or volume.name,
        KEY_PATH: str(source.path) if source is not None and source.path is not None else None,
        KEY_AFFINE: np.array(volume.affine, dtype=np.float64),
        KEY_SHAPE: volume.shape,
        KEY_SOURCE: source,
    }
    meta.update(extra)
    return meta


def uamc_metadata(layer_or_meta: Any) -> dict[str, Any] | None:
    """The plugin's geometry dict of a layer (or of a layer kwargs/metadata dict), or None."""
    metadata = _metadata_of(layer_or_meta)
    uamc = metadata.get(META_KEY) if isinstance(metadata, Mapping) else None
    if not isinstance(uamc, Mapping) or KEY_AFFINE not in uamc or KEY_SHAPE not in uamc:
        return None
    return dict(uamc)


def _metadata_of(obj: Any) -> Mapping[str, Any]:
    """``metadata`` of a layer, of a layer kwargs dict, or the dict itself."""
    if isinstance(obj, Mapping):
        if "metadata" in obj and isinstance(obj["metadata"], Mapping):
            return obj["metadata"]
        return obj
    metadata = getattr(obj, "metadata", None)
    return metadata if isinstance(metadata, Mapping) else {}


# --------------------------------------------------------------------------- layer tuples


def contrast_limits(array: np.ndarray) -> tuple[float, float]:
    """Robust display range: the 0.5 and 99.5 percentiles of the finite intensities."""
    flat = np.asarray(array).reshape(-1)
    step = max(1, flat.size // CONTRAST_SAMPLE_VOXELS)
    sample = flat[::step]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return (0.0, 1.0)
    low, high = (float(v) for v in np.percentile(sample, CONTRAST_PERCENTILES))
    if high <= low:
        low, high = float(sample.min()), float(sample.max())
    if high <= low:
        high = low + 1.0
    return (low, high)


def image_layer_tuple(
    volume: Volume, name: str | None = None, *, case: str | None = None, **kwargs: Any
) -> LayerDataTuple:
    """An Image ``LayerDataTuple`` of ``volume`` in the display convention.

    ``kwargs`` go to the layer (e.g. ``colormap``, ``blending``); ``metadata`` given there is
    merged with the geometry. Contrast limits default to robust percentiles.
    """
    data = volume_to_layer_data(volume)
    layer_kwargs: dict[str, Any] = {
        "name": name or volume.name,
        "scale": display_scale(volume.spacing),
        "contrast_limits": contrast_limits(volume.array),
        "colormap": "gray",
    }
    layer_kwargs.update(kwargs)
    layer_kwargs["metadata"] = _merged_metadata(volume, case, kwargs.get("metadata"))
    return (data, layer_kwargs, "image")


def label_layer_tuple(
    volume: Volume, name: str | None = None, *, case: str | None = None, **kwargs: Any
) -> LayerDataTuple:
    """A Labels ``LayerDataTuple`` of an integer ``volume`` in the display convention.

    The metadata carries the grid of ``volume`` (the image it belongs to), which is what the
    writer uses to put the label back on the source's exact grid and affine.
    """
    labels = np.asarray(volume.array)
    if labels.dtype == bool:
        labels = labels.astype(np.uint8)
    elif not np.issubdtype(labels.dtype, np.integer):
        rounded = np.rint(labels)
        if not np.array_equal(rounded, labels):
            raise InputError(f"{volume.name}: a label volume must hold integers, got {labels.dtype}")
        labels = rounded.astype(np.int32)
    data = volume_to_layer_data(labels)
    layer_kwargs: dict[str, Any] = {"name": name or volume.name, "scale": display_scale(volume.spacing)}
    layer_kwargs.update(kwargs)
    layer_kwargs["metadata"] = _merged_metadata(volume, case, kwargs.get("metadata"))
    return (data, layer_kwargs, "labels")


def _merged_metadata(volume: Volume, case: str | None, given: Any) -> dict[str, Any]:
    metadata = dict(given) if isinstance(given, Mapping) else {}
    extra = dict(metadata.get(META_KEY) or {})
    metadata[META_KEY] = {**volume_metadata(volume, case=case), **extra}
    return metadata


# --------------------------------------------------------------------------- back to volumes


def reference_volume_for(layer: Any) -> Volume | None:
    """The grid a layer's data lives on, as a geometry-only :class:`Volume`, or None.

    Rebuilt from ``metadata["uamc"]`` (the source file's shape, affine, orientation and header,
    and the canonical affine); its ``array`` is a zero-memory read-only placeholder of the
    canonical shape, so it serves as ``like`` for writing and for grid checks. Returns None
    when the layer carries no plugin geometry.
    """
    meta = uamc_metadata(layer)
    if meta is None:
        return None
    shape = tuple(int(s) for s in meta[KEY_SHAPE])
    placeholder = np.broadcast_to(np.zeros((), dtype=np.uint8), shape)
    source = meta.get(KEY_SOURCE)
    if not isinstance(source, SourceGeometry):
        source = None
    name = str(meta.get(KEY_CASE) or getattr(layer, "name", None) or "volume")
    return Volume(placeholder, np.asarray(meta[KEY_AFFINE], dtype=np.float64), source, name)


def volume_from_layer(layer: Any, name: str | None = None) -> Volume:
    """Rebuild a canonical :class:`Volume` from a layer (or ``(data, metadata_or_kwargs)``).

    ``layer`` is a napari layer, a ``LayerDataTuple`` ``(data, kwargs, type)``, or a pair
    ``(data, metadata)``. With plugin geometry in ``metadata["uamc"]`` the volume has the
    source's exact affine and source geometry (outputs go back onto the file's grid). A layer
    without it (e.g. a numpy array opened another way) is read in the same display
    convention, with spacing from ``layer.scale``, identity orientation and origin 0; a
    :class:`UserWarning` says so. The array is a view of the layer data (no copy).

    Raises :class:`InputError` for layers that are not one 3D grey volume (2D, RGB, 4D).
    """
    data, metadata, scale, layer_name, rgb = _unpack_layer(layer)
    label = name or layer_name or "layer"
    array = _as_single_3d(data, rgb, label)
    canonical = layer_data_to_canonical(array)
    reference = reference_volume_for(metadata)
    if reference is not None:
        if reference.shape != canonical.shape:
            raise InputError(
                f"{label}: layer data of shape {canonical.shape} (canonical x, y, z) does not "
                f"match its recorded grid {reference.shape}"
            )
        return reference.with_array(canonical, name=name or reference.name)
    warnings.warn(
        f"{label} carries no napari-uamc geometry: using its scale {tuple(scale)} as spacing "
        "with identity orientation and origin 0",
        UserWarning,
        stacklevel=2,
    )
    affine = np.diag([*canonical_spacing(scale), 1.0])
    source = SourceGeometry(
        shape=canonical.shape, affine=affine, orientation=canonical_orientation(), format="array"
    )
    return Volume(canonical, affine, source, label)


def _unpack_layer(layer: Any) -> tuple[Any, Mapping[str, Any], Any, str | None, bool]:
    """(data, metadata, scale, name, rgb) of a layer, a LayerDataTuple or a (data, meta) pair."""
    if isinstance(layer, tuple):
        data = layer[0]
        second = layer[1] if len(layer) > 1 and isinstance(layer[1], Mapping) else {}
        is_kwargs = len(layer) > 2 or any(k in second for k in ("metadata", "scale", "name"))
        kwargs = second if is_kwargs else {}
        metadata = _metadata_of(second)
        scale = kwargs.get("scale")
        if scale is None:
            scale = (1.0,) * np.ndim(data)
        return data, metadata, scale, kwargs.get("name"), bool(kwargs.get("rgb", False))
    data = getattr(layer, "data", None)
    if data is None:
        raise InputError(f"expected a napari layer or (data, metadata), got {type(layer).__name__}")
    scale = getattr(layer, "scale", None)
    if scale is None:
        scale = (1.0,) * np.ndim(data)
    rgb = bool(getattr(layer, "rgb", False))
    return data, _metadata_of(layer), scale, getattr(layer, "name", None), rgb


def _as_single_3d(data: Any, rgb: bool, label: str) -> np.ndarray:
    array = np.asarray(data)
    if rgb:
        raise InputError(f"{label}: an RGB image cannot be segmented; open a single-channel 3D MRI")
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 4:
        raise InputError(
            f"{label}: a 4D series of {array.shape[0]} volumes; napari-uamc takes one 3D volume"
        )
    if array.ndim != 3:
        raise InputError(
            f"{label}: expected a 3D volume, got a {array.ndim}D array of shape {array.shape}"
        )
    return array


def layer_source_path(layer: Any) -> Path | None:
    """The file a plugin layer was read from, if recorded."""
    meta = uamc_metadata(layer)
    path = meta.get(KEY_PATH) if meta else None
    return Path(path) if path else None


# --------------------------------------------------------------------------- axis labels


def label_axes(layer: Any) -> None:
    """Name napari's axes on a 3D layer of the panel (:data:`AXIS_LABELS`): napari shows a layer's
    labels on its sliders (instead of "-3") and drops them when the layer goes. napari < 0.6 has
    no layer labels: nothing is done there."""
    if getattr(layer, "ndim", 0) == 3 and hasattr(layer, "axis_labels"):
        layer.axis_labels = AXIS_LABELS


def forget_axis_labels(viewer: Any) -> None:
    """Once the viewer is empty, napari's own labels again where it kept the panel's: napari keeps
    the last labels when the last layer goes, for the next layer (a person's image then read
    '-3', 'row', 'column')."""
    dims = viewer.dims
    labels = tuple(dims.axis_labels)
    if len(viewer.layers) == 0 and labels and labels == AXIS_LABELS[-len(labels):]:
        dims.axis_labels = tuple(str(axis) for axis in range(-dims.ndim, 0))
