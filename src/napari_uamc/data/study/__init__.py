"""A study: a folder in the Medical Segmentation Decathlon (MSD) layout plus the tool's own state.

The folder's files and what each holds: :mod:`.layout`.

:class:`Study` (:mod:`.facade`) is the way in; the modules beside it hold the parts:
:mod:`.layout` (every folder and file name; imports nothing else of napari-uamc, so even
:mod:`napari_uamc.data.io` takes its suffixes from it), :mod:`.state` (``state.json``),
:mod:`.dataset_json` (``dataset.json``, MSD and nnU-Net v2), :mod:`.history` (earlier accepted
labels, time stamps), :mod:`.versions` (model versions and their :class:`ModelVersionInfo`
record), :mod:`.images` (finding and adding images), :mod:`.checks` (what may go in),
:mod:`.opening` (checking and creating the folder), :mod:`.labels` (accept, restore, drafts,
ground truth), :mod:`.predictions` (model outputs), :mod:`.records` (per-case records in
``state.json``), :mod:`.training_files` (the read-only listing of images and accepted labels
that ``uamc train`` and the fine-tune share).

Every name this module had before it became a package is still importable from it; they load
on first use (PEP 562), so that importing
:mod:`.layout` (as :mod:`napari_uamc.data.io` does) never imports the study code, which
imports :mod:`napari_uamc.data.io`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_uamc.data.study.dataset_json import DEFAULT_LABELS, DEFAULT_MODALITY
    from napari_uamc.data.study.facade import Study
    from napari_uamc.data.study.history import HistoryEntry
    from napari_uamc.data.study.state import CaseInfo, CaseStatus, StudyWarning
    from napari_uamc.data.study.versions import ModelVersionInfo

__all__ = [
    "CaseInfo",
    "CaseStatus",
    "HistoryEntry",
    "ModelVersionInfo",
    "Study",
    "StudyWarning",
    "DEFAULT_LABELS",
    "DEFAULT_MODALITY",
]

#: Submodule of each name loaded on first use.
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ("DATASET_FILE", "DRAFTS_DIR", "GROUND_TRUTH_DIR", "HISTORY_DIR", "IMAGES_DIR", "LABELS_DIR",
         "LOCK_FILE", "MODEL_VERSION_DIGITS", "MODEL_VERSION_PATTERN", "MODELS_DIR", "NIFTI_SUFFIX",
         "NIFTI_SUFFIXES", "PREDICTION_KINDS", "PREDICTIONS_DIR", "STAGING_PREFIX", "STATE_FILE",
         "TEST_IMAGES_DIR", "TOOL_DIR"), "layout"),
    **dict.fromkeys(
        ("_LABEL_DTYPES", "_PREDICTION_DTYPES", "_array_on_grid", "_check_case_name", "_float_map",
         "_integer_label_array", "_jsonable", "_label_dtype", "_uncertainty_value"), "checks"),
    **dict.fromkeys(
        ("DEFAULT_LABELS", "DEFAULT_MODALITY", "NNUNET_V2_KEYS", "SUPPORTED_FILE_ENDINGS",
         "_index_names", "_is_nnunet_v2", "_nnunet_v2_channels", "_nnunet_v2_labels"), "dataset_json"),
    **dict.fromkeys(("CASES_LISTED_IN_ERRORS", "Study"), "facade"),
    **dict.fromkeys(("UNCHANGED", "_unlink_quietly"), "labels"),
    **dict.fromkeys(
        ("HISTORY_STAMP_FORMAT", "HISTORY_STAMP_PATTERN", "HistoryEntry", "_file_time", "_iso",
         "_parse_iso", "_parse_stamp", "_stamp", "_utc_now"), "history"),
    **dict.fromkeys(
        ("NOTHING_ADDED", "_describe_source", "_remove_empty_skeleton", "_source_case_name",
         "_stage_image"), "images"),
    **dict.fromkeys(
        ("STATE_VERSION", "CaseInfo", "CaseStatus", "StudyWarning", "_empty_state", "_new_case_entry",
         "_normalised_case_entry", "_normalised_state"), "state"),
    **dict.fromkeys(("ModelVersionInfo", "_check_model_version", "_model_number"), "versions"),
}
#: Old private names of helpers that are public in their new module.
_RENAMED = {"_find_nifti": "find_nifti", "_nifti_stem": "nifti_stem", "_nifti_suffix": "nifti_suffix"}
_LAZY.update(dict.fromkeys(_RENAMED, "layout"))


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
