"""napari-uamc as napari's preferred reader for MRI files, set once, undoable (no Qt).

When several plugins can read a file, napari asks which one to use (File > Open, drag and
drop) unless ``settings.plugins.extension2reader`` names one for the file's pattern. The first
time the panel opens, :func:`claim_reader_patterns` names napari-uamc for each pattern in
:data:`PATTERNS` that no preference covers yet (a reader the person chose stays theirs), and
records that it did so in the plugin's cache folder, so it never does it again, even after the
person removed the preference. :func:`undo_claim` takes back exactly what was set (the notice's
*Undo*); napari's Preferences > Plugins shows and edits the same table.
"""

from __future__ import annotations

import json
from fnmatch import fnmatch
from typing import Any

from napari_uamc._cache import cache_folder
from napari_uamc.data.io import FILE_SUFFIXES

#: The plugin's name, as napari's reader preferences spell it.
PLUGIN = "napari-uamc"
#: File patterns made to open with napari-uamc (DICOM is left to the person: other DICOM readers
#: are common, and this one needs the optional ``dicom`` extra).
PATTERNS = tuple(f"*{suffix}" for suffix in FILE_SUFFIXES)
#: File in the cache folder recording what was set (and whether it was undone).
RECORD_FILE = "reader-preference.json"


def _settings(settings: Any) -> Any:
    if settings is not None:
        return settings
    from napari.settings import get_settings

    return get_settings()


def _covered(pattern: str, preferences: dict[str, str]) -> bool:
    """Whether a preference already decides files of ``pattern`` (the same or a wider pattern)."""
    example = "scan" + pattern.lstrip("*")
    return pattern in preferences or any(fnmatch(example, key) for key in preferences)


def read_record() -> dict[str, Any] | None:
    path = cache_folder() / RECORD_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_record(record: dict[str, Any]) -> bool:
    folder = cache_folder()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECORD_FILE).write_text(json.dumps(record, indent=1))
    except OSError:
        return False
    return True


def claim_reader_patterns(settings: Any = None) -> list[str]:
    """On first use, make napari-uamc the preferred reader where none is set; returns what was set.

    Returns an empty list when this was done before (or the cache folder cannot record it,
    so a removed preference is never set again behind the person's back).
    """
    if read_record() is not None:
        return []
    settings = _settings(settings)
    current = dict(settings.plugins.extension2reader)
    claimed = [pattern for pattern in PATTERNS if not _covered(pattern, current)]
    if not _write_record({"claimed": claimed, "undone": False}):
        return []
    if claimed:
        settings.plugins.extension2reader = {**current, **{pattern: PLUGIN for pattern in claimed}}
    return claimed


def undo_claim(settings: Any = None) -> list[str]:
    """Remove the preferences :func:`claim_reader_patterns` set (those still naming napari-uamc)."""
    record = read_record() or {}
    settings = _settings(settings)
    current = dict(settings.plugins.extension2reader)
    removed = [pattern for pattern in record.get("claimed", []) if current.get(pattern) == PLUGIN]
    if removed:
        settings.plugins.extension2reader = {k: v for k, v in current.items() if k not in removed}
    _write_record({**record, "undone": True})
    return removed


def claim_message(claimed: list[str]) -> str:
    names = ", ".join(pattern.lstrip("*") for pattern in claimed)
    return (f"napari-uamc now opens {names} files without asking which reader to use "
            "(Preferences > Plugins to change; Undo to take it back)")
