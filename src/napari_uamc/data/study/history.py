"""Earlier accepted labels (``.uamc/history/<case>/<UTC stamp>.nii.gz``) and the study's times.

A label that is replaced (by :meth:`Study.accept` or :meth:`Study.restore`) is first copied to
the history under its stamp: the UTC time of the move, sortable, microsecond resolution, always
later than the case's previous stamp. ``state.json`` keeps, per stamp, when that label had been
accepted and its note.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from napari_uamc.data.study.layout import nifti_stem

__all__ = ["HistoryEntry", "HISTORY_STAMP_FORMAT", "HISTORY_STAMP_PATTERN"]

#: History file names: UTC time of the move to history, sortable, microsecond resolution.
HISTORY_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
HISTORY_STAMP_PATTERN = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")


@dataclass(frozen=True)
class HistoryEntry:
    """An earlier accepted label kept in ``.uamc/history/<case>/``.

    ``timestamp`` is the file's UTC stamp (when it was replaced), ``accepted_at`` and ``note``
    describe the label as it was when accepted (``None`` if the state no longer knows).
    """

    timestamp: str
    path: Path
    accepted_at: datetime | None = None
    note: str | None = None

    @property
    def time(self) -> datetime:
        return _parse_stamp(self.timestamp)


# ------------------------------------------------------------------------------------ times


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_iso(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(HISTORY_STAMP_FORMAT)


def _parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, HISTORY_STAMP_FORMAT).replace(tzinfo=timezone.utc)


def _file_time(path: Path | None) -> datetime | None:
    if path is None:
        return None
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    except OSError:
        return None


# ---------------------------------------------------------------------------------- history


def list_history(folder: Path, meta: Mapping[str, Any]) -> list[HistoryEntry]:
    """The history files in ``folder`` (one case's), oldest first, described by ``meta``
    (the case's ``history`` record of ``state.json``: stamp -> accepted_at, note)."""
    if not folder.is_dir():
        return []
    entries = []
    for path in folder.iterdir():
        stamp = nifti_stem(path)
        if stamp is None or not HISTORY_STAMP_PATTERN.match(stamp):
            continue
        info = meta.get(stamp) if isinstance(meta.get(stamp), dict) else {}
        accepted_at = _parse_iso(info.get("accepted_at"))
        entries.append(HistoryEntry(stamp, path, accepted_at, info.get("note")))
    return sorted(entries, key=lambda entry: entry.timestamp)


def new_history_stamp(existing: list[HistoryEntry]) -> str:
    """A stamp later than every one of ``existing`` (sorted; robust to clock steps)."""
    moment = _utc_now()
    if existing and _stamp(moment) <= existing[-1].timestamp:
        moment = existing[-1].time + timedelta(microseconds=1)
    return _stamp(moment)
