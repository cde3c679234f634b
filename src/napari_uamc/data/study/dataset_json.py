"""``dataset.json``: the MSD metadata of a study (and nnU-Net v2's variant), read and kept in step.

An MSD file maps label and modality indices to names (``{"0": "background", "1": ...}``) and
lists the accepted cases under ``training``. An nnU-Net v2 file maps label names to integers and
has ``channel_names`` and ``file_ending``; it is read as such and stays an nnU-Net v2 file (only
``numTraining`` and what the caller overrides change). Keys napari-uamc does not own are kept.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_uamc._atomic import write_json_atomic
from napari_uamc.data._study_files import read_json, writing
from napari_uamc.data.study.layout import (
    IMAGES_DIR,
    LABELS_DIR,
    NIFTI_SUFFIX,
    NIFTI_SUFFIXES,
    TEST_IMAGES_DIR,
    StudyLayout,
    nifti_stem,
)
from napari_uamc.data.study.state import StudyWarning, quarantine
from napari_uamc.errors import InputError, StudyError

__all__ = ["DEFAULT_LABELS", "DEFAULT_MODALITY", "NNUNET_V2_KEYS", "SUPPORTED_FILE_ENDINGS"]

DEFAULT_LABELS: dict[int, str] = {0: "background", 1: "left atrium"}
DEFAULT_MODALITY: dict[int, str] = {0: "MRI"}
#: Keys that only an nnU-Net v2 ``dataset.json`` has (its labels map names to integers).
NNUNET_V2_KEYS = ("channel_names", "file_ending")
#: Image files a study reads (nnU-Net v2 ``file_ending``).
SUPPORTED_FILE_ENDINGS = NIFTI_SUFFIXES


def _index_names(
    mapping: Mapping[Any, str] | None, default: Mapping[int, str], what: str
) -> dict[str, str]:
    """Validate an MSD ``labels``/``modality`` map; keys become the strings "0", "1", ..."""
    items = dict(default if mapping is None else mapping)
    result: dict[int, str] = {}
    for key, name in items.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise InputError(f"{what}: key {key!r} is not an integer") from None
        if index < 0 or str(key).strip() not in (str(index),):
            raise InputError(f"{what}: key {key!r} must be a non-negative integer")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{what}: the name of {index} must be non-empty text, not {name!r}")
        result[index] = name
    if not result:
        raise InputError(f"{what}: needs at least one entry")
    return {str(index): result[index] for index in sorted(result)}


def _is_nnunet_v2(raw: Mapping[str, Any]) -> bool:
    labels = raw.get("labels")
    named = isinstance(labels, Mapping) and any(not str(k).strip().isdigit() for k in labels)
    return any(key in raw for key in NNUNET_V2_KEYS) or named


def _nnunet_v2_labels(labels: Any, where: str) -> dict[str, str]:
    """nnU-Net v2 ``labels`` (name -> integer) as MSD index -> name; region labels refused."""
    if labels is None:
        return _index_names(None, DEFAULT_LABELS, f"{where} labels")
    if not isinstance(labels, Mapping):
        raise InputError(f"{where}: labels must map class names to integers, not {type(labels).__name__}")
    by_index: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise InputError(
                f"{where}: label {name!r} is a region {list(value)} (nnU-Net region-based training); "
                "napari-uamc supports one integer per class"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{where}: label {name!r} must be a non-negative integer, not {value!r}")
        if value in by_index:
            raise InputError(f"{where}: labels {by_index[value]!r} and {name!r} share the value {value}")
        by_index[value] = str(name)
    return _index_names(by_index, DEFAULT_LABELS, f"{where} labels")


def _nnunet_v2_channels(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    """The single input channel of an nnU-Net v2 study; more channels or other files refused."""
    ending = raw.get("file_ending", NIFTI_SUFFIX)
    if ending not in SUPPORTED_FILE_ENDINGS:
        raise InputError(f"{where}: file_ending {ending!r}; napari-uamc reads NIfTI studies "
                         f"({', '.join(SUPPORTED_FILE_ENDINGS)})")
    channels = raw.get("channel_names") or {"0": DEFAULT_MODALITY[0]}
    if not isinstance(channels, Mapping):
        raise InputError(f"{where}: channel_names must map indices to names")
    if len(channels) != 1:
        raise InputError(f"{where}: {len(channels)} input channels ({', '.join(map(str, channels.values()))}); "
                         "napari-uamc segments single-channel images")
    return _index_names(channels, DEFAULT_MODALITY, f"{where} channel_names")


# ---------------------------------------------------------------------------------- reading


def read_dataset_file(path: Path) -> dict[str, Any] | None:
    """``dataset.json`` exactly as stored, or ``None`` if missing or not a JSON object."""
    if not path.is_file():
        return None
    try:
        data = read_json(path)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        message = f"{path} is unusable ({exc}); using defaults"
        warnings.warn(message, StudyWarning, stacklevel=5)
        return None
    return data


def read_dataset(path: Path, raw: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """``dataset.json`` with MSD ``labels``/``modality`` (index -> name), or ``None`` if it is
    missing or not JSON. An nnU-Net v2 file (labels name -> integer, ``channel_names``) is
    read as such; a file that parses but that napari-uamc cannot support raises
    :class:`StudyError` naming what (it is never renamed or rewritten). ``raw``: the file's
    content when the caller has read it already."""
    if raw is None:
        raw = read_dataset_file(path)
    if raw is None:
        return None
    data = dict(raw)
    where = str(path)
    try:
        if _is_nnunet_v2(raw):
            data["labels"] = _nnunet_v2_labels(raw.get("labels"), where)
            data["modality"] = _nnunet_v2_channels(raw, where)
        else:
            for key, default in (("labels", DEFAULT_LABELS), ("modality", DEFAULT_MODALITY)):
                data[key] = _index_names(raw.get(key), default, f"{where} {key}")
    except InputError as exc:
        raise StudyError(f"{exc}; napari-uamc leaves the file as it is: fix it or use another study") from None
    return data


def dataset_metadata(data: Mapping[str, Any] | None, default_name: str) -> dict[str, Any]:
    """Name, description, labels and modality from parsed ``data`` (defaults where missing)."""
    data = data or {}
    return {
        "name": data.get("name", default_name),
        "description": data.get("description", ""),
        "labels": data.get("labels") or _index_names(None, DEFAULT_LABELS, "labels"),
        "modality": data.get("modality") or _index_names(None, DEFAULT_MODALITY, "modality"),
    }


# ---------------------------------------------------------------------------------- writing


def sync_dataset(
    layout: StudyLayout,
    images: Mapping[str, Path],
    labels: Mapping[str, Path],
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Rewrite ``dataset.json`` from the files, atomically, if it changes (lock held).

    ``images``: case -> image file; ``labels``: the accepted cases (sorted) -> label file. Keys
    napari-uamc does not own are kept; an nnU-Net v2 file stays an nnU-Net v2 file (only
    ``numTraining``, and what ``overrides`` set, change)."""
    path = layout.dataset_path
    raw = read_dataset_file(path)
    existing = read_dataset(path)
    if existing is None and path.is_file():
        quarantine(path)  # not JSON at all: kept aside, never lost
    if raw is not None and _is_nnunet_v2(raw):
        sync_nnunet_v2_dataset(path, raw, len(labels), overrides or {})
        return
    old = existing or {}
    meta = {**dataset_metadata(old, layout.root.name), **(overrides or {})}
    training = [
        {"image": f"./{IMAGES_DIR}/{images[case].name}", "label": f"./{LABELS_DIR}/{label.name}"}
        for case, label in labels.items()
    ]
    test_dir = layout.test_images_dir
    test_files = test_dir.iterdir() if test_dir.is_dir() else ()
    test = sorted(
        f"./{TEST_IMAGES_DIR}/{file.name}"
        for file in test_files
        if nifti_stem(file) is not None and not file.name.startswith(".")
    )
    data = {
        "name": meta["name"],
        "description": meta["description"],
        "tensorImageSize": "3D",
        "modality": meta["modality"],
        "labels": meta["labels"],
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": test,
    }
    data.update({key: value for key, value in old.items() if key not in data})
    if data != existing:
        with writing("write", path):
            write_json_atomic(path, data)


def sync_nnunet_v2_dataset(
    path: Path, raw: dict[str, Any], num_training: int, overrides: Mapping[str, Any]
) -> None:
    """Keep an nnU-Net v2 ``dataset.json`` as it is but for ``numTraining`` and ``overrides``."""
    data = dict(raw)
    data["numTraining"] = num_training
    for key in ("name", "description"):
        if key in overrides:
            data[key] = overrides[key]
    if "labels" in overrides:
        data["labels"] = {name: int(index) for index, name in overrides["labels"].items()}
    if data != raw:
        with writing("write", path):
            write_json_atomic(path, data)
