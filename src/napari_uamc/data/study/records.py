"""A study's per-case records in ``state.json``: case information, ranking for labeling, the
uncertainty and scores of each case, the current model, and the locked way to change them.

:class:`~napari_uamc.data.study.facade.Study` keeps the public methods; they call the functions
here with themselves as ``study``. Reading and repairing the file itself is
:mod:`~napari_uamc.data.study.state`'s job.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from napari_uamc.data.study.checks import _jsonable, _uncertainty_value
from napari_uamc.data.study.history import _file_time, _iso, _parse_iso, _utc_now
from napari_uamc.data.study.state import CaseInfo, CaseStatus, _new_case_entry, reconciled_state
from napari_uamc.data.study.versions import record_decision
from napari_uamc.errors import InputError, StudyError

#: The :class:`~napari_uamc.data.study.facade.Study` that calls in (not imported: the facade
#: imports this module, and the import graph has no circles).
_Study = Any


@contextlib.contextmanager
def editing_state(study: _Study) -> Iterator[dict[str, Any]]:
    """Lock, read the latest ``state.json``, let the caller change it, write it back atomically.

    Do not nest: an inner edit would be overwritten by the outer one.

    Raises:
        StudyError: the study is read-only, or ``state.json`` could not be written.
    """
    study._require_writable()
    with study._lock.hold():
        state = study._load_state(repair=True)
        before = json.dumps(state, sort_keys=True)
        yield state
        if json.dumps(state, sort_keys=True) != before or not study.state_path.is_file():
            study._write_state(state)


def sync_with_files(study: _Study) -> None:
    """Under the lock, bring ``state.json`` and ``dataset.json`` in line with the files.

    Raises:
        StudyError: a record could not be read or written.
    """
    with study._lock.hold():
        state = study._load_state(repair=True)
        reconciled = study._reconciled(state)
        if reconciled != state or not study.state_path.is_file():
            study._write_state(reconciled)
        study._sync_dataset()


def reconciled(study: _Study, state: dict[str, Any], *, rebuilt: bool = False) -> dict[str, Any]:
    """``state`` in line with the files: cases from ``imagesTr/``, statuses from the labels."""
    return reconciled_state(
        state,
        root=study.root,
        statuses={case: study.status(case) for case in study.cases()},
        label_path=study.label_path,
        versions=study.model_versions(),
        rebuilt=rebuilt,
    )


def case_info(study: _Study, case: str, entry: dict[str, Any]) -> CaseInfo:
    """What the files and the state ``entry`` say about ``case``."""
    status = study.status(case)
    accepted_at = None
    if status is CaseStatus.ACCEPTED:
        accepted_at = _parse_iso(entry.get("accepted_at")) or _file_time(study.label_path(case))
    return CaseInfo(
        name=case,
        status=status,
        uncertainty=entry.get("uncertainty"),
        accepted_at=accepted_at,
        has_draft=study.draft_path(case).is_file(),
        has_prediction=study.has_prediction(case),
        has_ground_truth=study.ground_truth_path(case) is not None,
        prediction_model=entry.get("prediction_model"),
        scores=dict(entry.get("scores") or {}),
    )


def ranked_for_labeling(study: _Study) -> list[str]:
    """Unlabeled cases, most uncertain first (cases without a score last, by name)."""
    cases = study._load_state()["cases"]

    def key(case: str) -> tuple[bool, float, str]:
        score = cases.get(case, {}).get("uncertainty")
        return (score is None, -(score or 0.0), case)

    return sorted(study.unlabeled_cases(), key=key)


def set_uncertainty(study: _Study, case: str, score: float | None) -> None:
    """:meth:`Study.set_uncertainty`: store the case's score (nats; ``None`` clears it)."""
    study._require_case(case)
    value = _uncertainty_value(score, case)
    with editing_state(study) as state:
        entry = state["cases"].setdefault(case, _new_case_entry())
        entry.update(uncertainty=value, updated=_iso(_utc_now()))


def record_score(study: _Study, case: str, key: str, value: Any) -> None:
    """:meth:`Study.record_score`: store ``value`` under the case's ``scores[key]``."""
    study._require_case(case)
    if not isinstance(key, str) or not key:
        raise InputError(f"score key must be non-empty text, not {key!r}")
    data = _jsonable(value, f"score {key!r} of case {case!r}")
    with editing_state(study) as state:
        entry = state["cases"].setdefault(case, _new_case_entry())
        entry["scores"][key] = data
        entry["updated"] = _iso(_utc_now())


def set_current_model(study: _Study, version: str | None) -> None:
    """Make ``version`` (one with a ``.pt`` file, or ``None``) the study's current model, and record
    in its ``.json`` that it was adopted (the first time)."""
    if version is not None and version not in study.model_versions():
        known = ", ".join(study.model_versions()) or "none"
        raise StudyError(f"study {study.root} has no model {version!r} (its models: {known})")
    with editing_state(study) as state:
        state["current_model"] = version
    if version is not None:
        record_decision(study.model_info_path(version), version, "adopted")
