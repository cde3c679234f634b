"""``.uamc/state.json``: the per-case records and the current model, read, repaired and written.

The files are the truth: a case's status is derived from them (accepted = a label in
``labelsTr/``, predicted = the three prediction files, otherwise new) and the state is kept in
step with them (:func:`reconciled_state`). A corrupt state file is set aside as
``state.json.corrupt-<time>`` (:func:`quarantine`) and rebuilt from the files.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from napari_uamc._atomic import write_json_atomic
from napari_uamc.data._study_files import read_json, writing
from napari_uamc.data.study.history import _file_time, _iso, _stamp, _utc_now
from napari_uamc.errors import StudyError

__all__ = ["CaseInfo", "CaseStatus", "StudyWarning", "STATE_VERSION"]

STATE_VERSION = 1


class StudyWarning(UserWarning):
    """Something in a study folder was repaired or ignored (corrupt state, stray files)."""


class CaseStatus(StrEnum):
    """Where a case stands in the labelling loop."""

    NEW = "new"
    PREDICTED = "predicted"
    ACCEPTED = "accepted"


@dataclass(frozen=True)
class CaseInfo:
    """A summary of one case, cheap to compute for every case of a study."""

    name: str
    status: CaseStatus
    uncertainty: float | None
    accepted_at: datetime | None
    has_draft: bool
    has_prediction: bool
    has_ground_truth: bool
    prediction_model: str | None = None
    scores: dict[str, Any] = field(default_factory=dict, compare=False)


# -------------------------------------------------------------------------- state records


def _empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "current_model": None, "cases": {}}


def _new_case_entry() -> dict[str, Any]:
    return {
        "status": CaseStatus.NEW.value,
        "uncertainty": None,
        "updated": None,
        "accepted_at": None,
        "note": None,
        "prediction_model": None,
        "scores": {},
        "history": {},
    }


def _normalised_case_entry(raw: Any) -> dict[str, Any]:
    """A case record with every field present and of the right type (bad fields reset)."""
    entry = _new_case_entry()
    if not isinstance(raw, dict):
        return entry
    checks = {
        "status": lambda v: v in {status.value for status in CaseStatus},
        "uncertainty": lambda v: v is None or type(v) in (int, float),
        "scores": lambda v: isinstance(v, dict),
        "history": lambda v: isinstance(v, dict),
    }
    for key, value in raw.items():
        if key in checks and not checks[key](value):
            continue
        entry[key] = value
    return entry


def _normalised_state(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("cases"), dict):
        raise ValueError("not a state object with a 'cases' mapping")
    version = raw.get("version", STATE_VERSION)
    if not isinstance(version, int):
        raise ValueError(f"version {version!r} is not an integer")
    current = raw.get("current_model")
    if current is not None and not isinstance(current, str):
        raise ValueError(f"current_model {current!r} is not text")
    cases = {str(case): _normalised_case_entry(entry) for case, entry in raw["cases"].items()}
    return {"version": version, "current_model": current, "cases": cases}


# ------------------------------------------------------------------------ reading, writing


def quarantine(path: Path) -> Path | None:
    """Move a corrupt file aside as ``<name>.corrupt-<UTC stamp>``; its new path, or ``None``."""
    kept = path.with_name(f"{path.name}.corrupt-{_stamp(_utc_now())}")
    try:
        os.replace(path, kept)
    except OSError:
        return None
    return kept


def load_state(
    path: Path, reconcile: Callable[..., dict[str, Any]], *, repair: bool = False
) -> dict[str, Any]:
    """``state.json`` at ``path`` normalised; if missing or corrupt, ``reconcile(empty state,
    rebuilt=...)``, a state rebuilt from the files.

    With ``repair`` (lock held) a corrupt file is kept as ``state.json.corrupt-<time>``.
    """
    if not path.is_file():
        return reconcile(_empty_state())
    try:
        raw = read_json(path)
        state = _normalised_state(raw)
    except (OSError, ValueError) as exc:
        if repair:
            kept = quarantine(path)
            warnings.warn(
                f"{path} was corrupt ({exc}); rebuilt it from the study's files"
                + (f" (the bad file is kept as {kept.name})" if kept else ""),
                StudyWarning,
                stacklevel=4,
            )
        else:
            message = f"{path} is corrupt ({exc}); using the study's files"
            warnings.warn(message, StudyWarning, stacklevel=4)
        return reconcile(_empty_state(), rebuilt=True)
    if raw.get("version", STATE_VERSION) > STATE_VERSION:
        raise StudyError(
            f"{path} has version {raw['version']}, newer than this napari-uamc understands "
            f"({STATE_VERSION}); update napari-uamc"
        )
    return state


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (its folder made if missing)."""
    with writing("write", path, "the state was not changed"):
        path.parent.mkdir(exist_ok=True)
        write_json_atomic(path, state)


def reconciled_state(
    state: dict[str, Any],
    *,
    root: Path,
    statuses: Mapping[str, CaseStatus],
    label_path: Callable[[str], Path | None],
    versions: Sequence[str],
    rebuilt: bool = False,
) -> dict[str, Any]:
    """``state`` in line with the files: one entry per case of ``statuses`` (the cases of
    ``imagesTr/``, sorted, and their status), ``accepted_at`` from the label files, and a current
    model that is one of ``versions`` (the latest when the state was ``rebuilt``)."""
    old_cases = state["cases"]
    dropped = sorted(set(old_cases) - set(statuses))
    if dropped:
        warnings.warn(
            f"study {root}: forgetting cases whose image is gone: {', '.join(dropped)}",
            StudyWarning,
            stacklevel=5,
        )
    cases = {}
    for case, status in statuses.items():
        entry = _normalised_case_entry(old_cases.get(case))
        if status is CaseStatus.ACCEPTED:
            if entry["status"] != status or entry["accepted_at"] is None:
                entry["accepted_at"] = _iso(_file_time(label_path(case)) or _utc_now())
        elif status is not CaseStatus.ACCEPTED:
            entry["accepted_at"] = None
        entry["status"] = status.value
        cases[case] = entry
    current = state.get("current_model")
    if rebuilt and current is None and versions:
        current = versions[-1]
        message = f"study {root}: using the latest model {current} (state rebuilt)"
        warnings.warn(message, StudyWarning, stacklevel=5)
    elif current is not None and current not in versions:
        message = f"study {root}: the current model {current} is gone; none is selected"
        warnings.warn(message, StudyWarning, stacklevel=5)
        current = None
    return {"version": STATE_VERSION, "current_model": current, "cases": cases}
