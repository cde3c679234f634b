"""The label files a study writes: accepted labels (accept, restore, with history), drafts and
ground truth, each on its image's exact grid and affine.

:class:`~napari_uamc.data.study.facade.Study` keeps the public methods; they call the functions
here with themselves as ``study``. Accepting or restoring holds the study's lock for the whole
sequence: the current label is copied to ``history/`` first, the new one is written atomically
(temporary file, fsync, rename), then ``state.json`` and ``dataset.json`` follow and the draft
goes. A failed write removes the history copy again and raises :class:`StudyError`.
"""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc.data._study_files import atomic_copy, os_failure, writing
from napari_uamc.data.io import read_label as read_label_file
from napari_uamc.data.io import write_volume
from napari_uamc.data.study.checks import _integer_label_array, _label_dtype
from napari_uamc.data.study.history import HistoryEntry, _iso, _utc_now, new_history_stamp
from napari_uamc.data.study.layout import NIFTI_SUFFIXES, nifti_stem, nifti_suffix
from napari_uamc.data.study.state import CaseStatus, _new_case_entry
from napari_uamc.data.volume import Volume
from napari_uamc.errors import InputError, StudyError

#: The :class:`~napari_uamc.data.study.facade.Study` that calls in (not imported: the facade
#: imports this module, and the import graph has no circles).
_Study = Any

#: What a failed accept or restore says about the accepted label.
UNCHANGED = "the accepted label was not changed"


def accept(study: _Study, case: str, label: np.ndarray | Volume, *, note: str | None, allow_empty: bool) -> Path:
    """:meth:`Study.accept`: write ``label`` as the accepted label, the previous one to history."""
    study._require_writable()
    image = study.read_image(case)
    what = f"label for case {case!r}"
    array = _integer_label_array(label, image, what)
    max_value = check_label_values(study.labels, array, what)
    if max_value == 0 and not allow_empty:
        raise StudyError(
            f"empty label for case {case!r} in study {study.root}: no voxel is foreground; "
            "paint the structure first (or pass allow_empty=True to accept it on purpose)"
        )
    target = study.layout.label_file(case)
    with study._lock.hold():
        pushed = _push_to_history(study, case)
        undo = partial(_unlink_quietly, pushed)
        with writing("write the label", target, UNCHANGED, undo):
            study.labels_dir.mkdir(exist_ok=True)
            write_volume(target, array, like=image, dtype=_label_dtype(max_value, what))
        _label_replaced(study, case, target, pushed, note)
    return target


def restore(study: _Study, case: str, timestamp: str | HistoryEntry) -> Path:
    """:meth:`Study.restore`: an earlier label becomes the accepted one, the current goes to history."""
    study._require_writable()
    stamp = timestamp.timestamp if isinstance(timestamp, HistoryEntry) else str(timestamp)
    entries = {entry.timestamp: entry for entry in study.history(case)}
    if stamp not in entries:
        known = ", ".join(entries) or "none"
        raise StudyError(
            f"case {case!r} of study {study.root} has no history entry {stamp!r} (it has: {known})"
        )
    source = entries[stamp].path
    read_label_file(source, like=study.read_image(case))  # readable, on the image's grid
    target = study.labels_dir / f"{case}{nifti_suffix(source)}"
    with study._lock.hold():
        pushed = _push_to_history(study, case)
        undo = partial(_unlink_quietly, pushed)
        with writing("restore the label to", target, UNCHANGED, undo):
            study.labels_dir.mkdir(exist_ok=True)
            atomic_copy(source, target)
        _label_replaced(study, case, target, pushed, f"restored from history {stamp}")
    return target


def check_label_values(labels: dict[int, str], array: np.ndarray, what: str) -> int:
    """Refuse classes that ``labels`` (``dataset.json``'s) do not name; returns the largest value.

    Raises:
        InputError: ``array`` holds a value other than 0 and the keys of ``labels``.
    """
    max_value = int(array.max(initial=0))
    known = set(labels) | {0}
    if max_value > max(known):
        unknown = [max_value]
    else:
        unnamed = (value for value in range(max_value + 1) if value not in known)
        unknown = [value for value in unnamed if np.any(array == value)]
    if unknown:
        names = ", ".join(f"{index} = {name}" for index, name in labels.items())
        raise InputError(f"{what} contains values {unknown} that the study's labels ({names}) do not name")
    return max_value


def _push_to_history(study: _Study, case: str) -> Path | None:
    """Copy the current accepted label (if any) to ``history/<case>/<UTC stamp>``."""
    current = study.label_path(case)
    if current is None:
        return None
    folder = study.history_dir / case
    target = folder / f"{new_history_stamp(study.history(case))}{nifti_suffix(current)}"
    with writing("keep the previous label in", folder, UNCHANGED):
        folder.mkdir(parents=True, exist_ok=True)
        atomic_copy(current, target)
    return target


def _label_replaced(study: _Study, case: str, target: Path, pushed: Path | None, note: str | None) -> None:
    """Bookkeeping after a new accepted label is in place (lock held)."""
    for suffix in NIFTI_SUFFIXES:
        stale = study.labels_dir / f"{case}{suffix}"
        if stale != target:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
    now = _iso(_utc_now())
    try:
        with study._editing_state() as state:
            entry = state["cases"].setdefault(case, _new_case_entry())
            if pushed is not None:
                stamp = nifti_stem(pushed)
                entry["history"][stamp] = {
                    "accepted_at": entry.get("accepted_at"),
                    "note": entry.get("note"),
                }
            entry.update(status=CaseStatus.ACCEPTED.value, accepted_at=now, updated=now, note=note)
        study._sync_dataset()
    except StudyError as exc:
        raise StudyError(
            f"the label was saved to {target}, but the study's records were not updated: {exc}"
        ) from exc
    with contextlib.suppress(OSError):
        study.draft_path(case).unlink(missing_ok=True)


def _unlink_quietly(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


# ------------------------------------------------------------------ ground truth, drafts


def save_ground_truth(study: _Study, case: str, label: np.ndarray | Volume) -> Path:
    """:meth:`Study.save_ground_truth`: write a reference label to ``groundTruth/``."""
    study._require_writable()
    image = study.read_image(case)
    array = _integer_label_array(label, image, f"ground truth for case {case!r}")
    target = study.layout.ground_truth_file(case)
    dtype = _label_dtype(int(array.max(initial=0)), case)
    with writing("write the ground truth", target):
        study.ground_truth_dir.mkdir(exist_ok=True)
        write_volume(target, array, like=image, dtype=dtype)
    return target


def save_draft(study: _Study, case: str, label: np.ndarray | Volume) -> Path:
    """:meth:`Study.save_draft`: keep unaccepted edits (overwrites the previous draft)."""
    study._require_writable()
    image = study.read_image(case)
    what = f"draft for case {case!r}"
    array = _integer_label_array(label, image, what)
    target = study.draft_path(case)
    dtype = _label_dtype(int(array.max(initial=0)), what)
    with writing("save the draft", target):
        study.drafts_dir.mkdir(exist_ok=True)
        write_volume(target, array, like=image, dtype=dtype)
    return target


def read_draft(study: _Study, case: str) -> Volume | None:
    """:meth:`Study.read_draft`: the draft on the image's grid, or ``None``."""
    path = study.draft_path(case)
    return read_label_file(path, like=study.read_image(case)) if path.is_file() else None


def discard_draft(study: _Study, case: str) -> bool:
    """:meth:`Study.discard_draft`: delete the draft; returns whether there was one."""
    study._require_writable()
    path = study.draft_path(case)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise os_failure("delete the draft", path, exc) from exc
    return True
