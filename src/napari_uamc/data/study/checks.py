"""Checks of what goes into a study: case names, label and prediction arrays, JSON values.

Each returns the checked value (an array on the image's grid, a plain JSON value, a name) or
raises :class:`InputError` (:class:`GridMismatchError` for a different grid) naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from napari_uamc.data.volume import Volume
from napari_uamc.errors import GridMismatchError, InputError

_LABEL_DTYPES = (np.uint8, np.uint16)
_PREDICTION_DTYPES = {"seg": np.uint8, "sdf": np.float32, "uncertainty": np.float32}


def _check_case_name(name: Any, origin: str) -> str:
    if (
        not isinstance(name, str)
        or not name.strip()
        or name != name.strip()
        or name.startswith(".")
        or any(sep in name for sep in ("/", "\\", "\0"))
    ):
        raise InputError(
            f"{origin}: {name!r} cannot be a case name (it becomes a file name: no slashes, "
            "no leading dot or spaces, not empty)"
        )
    return name


def _jsonable(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (numpy scalars unwrapped); rejects NaN/inf and objects."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not np.isfinite(value):
            raise InputError(f"{what}: {value} is not a finite number")
        return value
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item, what) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, what) for item in value]
    raise InputError(
        f"{what}: cannot store a {type(value).__name__} (numbers, text, lists, dicts only)"
    )


def _uncertainty_value(score: float | None, case: str) -> float | None:
    if score is None:
        return None
    return _jsonable(float(score), f"uncertainty of case {case!r}")


def _array_on_grid(value: np.ndarray | Volume, image: Volume, what: str) -> np.ndarray:
    """The array of ``value``, refused (GridMismatchError) unless it lies on ``image``'s grid."""
    if isinstance(value, Volume):
        image.require_same_grid(value)
        array = value.array
    else:
        array = np.asarray(value)
    if array.shape != image.shape:
        raise GridMismatchError(
            f"{what} has shape {array.shape} but the image {image.name} has shape {image.shape} "
            "(canonical i, j, k order): they must be on the same voxel grid"
        )
    return array


def _integer_label_array(label: np.ndarray | Volume, image: Volume, what: str) -> np.ndarray:
    """Check that ``label`` is a non-negative integer map on ``image``'s canonical grid."""
    array = _array_on_grid(label, image, what)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise InputError(f"{what} contains NaN or infinite values; a label map holds integers")
        if not np.array_equal(array, np.round(array)):
            raise InputError(f"{what} contains non-integer values; a label map holds integers")
    elif array.dtype.kind not in "iu":
        raise InputError(f"{what} has dtype {array.dtype}; a label map holds integers")
    if array.size and array.min() < 0:
        raise InputError(f"{what} contains negative values (minimum {array.min()}); need >= 0")
    return array


def _label_dtype(max_value: int, what: str) -> type[np.unsignedinteger]:
    for dtype in _LABEL_DTYPES:
        if max_value <= np.iinfo(dtype).max:
            return dtype
    raise InputError(f"{what}: label value {max_value} is too large")


def _float_map(value: np.ndarray | Volume, image: Volume, what: str) -> np.ndarray:
    array = _array_on_grid(value, image, what)
    if array.dtype.kind not in "fiub":
        raise InputError(f"{what} has dtype {array.dtype}; expected numbers")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{what} contains NaN or infinite values")
    return array
