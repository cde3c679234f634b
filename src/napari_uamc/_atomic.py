"""Crash-safe file replacement: write beside the target, fsync, rename over it.

A reader of the target sees the old file or the complete new one, never half of one, and a
failed write leaves no temporary file behind. Standard library only (no Qt, no torch), so every
layer can use it; the callers turn OSError into their own :class:`~napari_uamc.errors.UamcError`
messages.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "fsync_folder", "write_json_atomic", "write_text_atomic"]

#: Marks the hidden temporary files (``.<name>.<random>.tmp<suffix>``) beside their targets.
TEMP_MARK = ".tmp"
#: Random bytes in a temporary file's name (hex-encoded).
_TOKEN_BYTES = 4
#: Permission bits of a new file before the umask: what a plain ``open(path, "w")`` gives.
_NEW_FILE_MODE = 0o666


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort: not every platform allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDWR)  # write access: Windows flushes only writable handles
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_temp_file(path: Path, suffix: str) -> Path:
    """Create an empty, hidden file of a fresh random name beside ``path``."""
    while True:
        temp = path.with_name(f".{path.name}.{secrets.token_hex(_TOKEN_BYTES)}{TEMP_MARK}{suffix}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE))
        except FileExistsError:
            continue
        return temp


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str], *, suffix: str = "", parents: bool = False
) -> Iterator[Path]:
    """Yield an empty temporary file beside ``path`` to write; on success it replaces ``path``.

    When the block succeeds the temporary file is fsynced, renamed over ``path`` and the folder
    fsynced; when it raises, the temporary file is removed and the error propagates.
    ``suffix`` ends the temporary name (``.nii.gz`` for writers that choose the format by
    name); ``parents`` creates missing parent folders first.
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    temp = _new_temp_file(path, suffix)
    try:
        yield temp
        _fsync_file(temp)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    fsync_folder(path.parent)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, parents: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, parents=parents) as temp:
        temp.write_bytes(text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, parents: bool = False) -> None:
    """Write ``data`` as indented JSON (NaN refused: ValueError, nothing written), atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n", parents=parents)
