"""Crash-safe file writing and the inter-process lock used by :mod:`napari_uamc.data.study`.

Every file is replaced atomically (temporary file in the same folder, fsync, rename, fsync of the
folder), so a reader sees the old file or the new one, never half of one. OS failures (full disk,
read-only folder) become :class:`StudyError` messages that name the file and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from napari_uamc._atomic import atomic_path
from napari_uamc.errors import StudyError, UamcError

try:  # POSIX advisory locks; elsewhere only the threads of one process are serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

UNCHANGED = "nothing was changed"
OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
    errno.EROFS: "the file system is read-only",
}


def atomic_copy(source: Path, target: Path, *, compress: bool = False) -> None:
    """Copy ``source`` to ``target`` byte for byte (gzip-wrapped when ``compress``), atomically."""
    with open(source, "rb") as reader, atomic_path(target) as temp, open(temp, "wb") as writer:
        if compress:  # no file name in the gzip header: the same bytes whatever the temp name
            with gzip.GzipFile(filename="", fileobj=writer, mode="wb", mtime=0) as gz:
                shutil.copyfileobj(reader, gz)
        else:
            shutil.copyfileobj(reader, writer)


def os_failure(action: str, path: Path, exc: OSError, consequence: str = "") -> StudyError:
    """A :class:`StudyError` saying what could not be done to ``path``, why, and what it means."""
    reason = exc.strerror or str(exc)
    hint = OS_ERROR_HINTS.get(exc.errno or 0)
    message = f"could not {action} {path}: {reason}"
    if hint:
        message += f" ({hint})"
    if consequence:
        message += f"; {consequence}"
    return StudyError(message)


def os_cause(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (the IO layer wraps them in :class:`UamcError`), if any."""
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, UamcError) and isinstance(exc.__cause__, OSError):
        return exc.__cause__
    return None


@contextlib.contextmanager
def writing(
    action: str, path: Path, consequence: str = "", undo: Callable[[], None] | None = None
) -> Iterator[None]:
    """Turn a failed write (permissions, full disk) into a :class:`StudyError`, after ``undo``."""
    try:
        yield
    except BaseException as exc:
        if undo is not None:
            undo()
        cause = os_cause(exc)
        if cause is None:
            raise
        raise os_failure(action, path, cause, consequence) from exc


def read_json(path: Path) -> Any:
    """The JSON content of ``path`` (raises OSError or ValueError)."""
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


class InterProcessLock:
    """An exclusive ``flock`` on a file between processes.

    Re-entrant within a thread; the threads sharing one instance take turns. Two instances
    (in one process or two) exclude each other through the file lock.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            if self._depth == 0:
                self._acquire()
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._release()

    def _acquire(self) -> None:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            try:
                fd = os.open(self._path, os.O_RDONLY)
            except OSError as exc:
                raise os_failure("open the lock file", self._path, exc, UNCHANGED) from exc
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd

    def _release(self) -> None:
        if self._fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


