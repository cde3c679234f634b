"""Runs the session's jobs in napari thread workers; their reports arrive on the GUI thread.

A report that arrives after the panel's widgets are gone (a panel that was not docked can be
garbage-collected while a job runs, and PyQt then does not always call Python slots of its
``destroyed`` signal) finds a deleted Qt object: the runner drops that report and calls
``widgets_gone`` (the panel closes its session there), instead of raising in the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, Signal, Slot

from napari_uamc._napari.jobs import Job

#: What PyQt and PySide say when a deleted Qt object is used.
DELETED_OBJECT_TEXTS = ("has been deleted", "already deleted")


def is_deleted_widget_error(error: BaseException | None) -> bool:
    """Whether ``error`` (or what caused it, e.g. inside a psygnal emission) is the use of a deleted Qt object."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, RuntimeError) and any(text in str(error) for text in DELETED_OBJECT_TEXTS):
            return True
        error, seen = error.__cause__ or error.__context__, seen + 1
    return False


class _Relay(QObject):
    """Delivers a call made in a worker thread on the GUI thread (queued signal delivery)."""

    call = Signal(object, object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._deliver)

    @Slot(object, object)
    def _deliver(self, function: Any, args: Any) -> None:
        function(*args)


class QtRunner:
    """A :class:`~napari_uamc._napari.jobs.Runner` on napari's thread workers."""

    def __init__(self) -> None:
        self._relay = _Relay()
        self._workers: set[Any] = set()
        #: called (once per dropped report) when a report found the panel's widgets deleted
        self.widgets_gone: Callable[[], None] = lambda: None

    def guarded(self, function: Any) -> Any:
        """``function`` that drops a report meeting deleted widgets (see the module docstring)."""
        def call(*args: Any) -> Any:
            try:
                return function(*args)
            except Exception as error:
                if not is_deleted_widget_error(error):
                    raise
                self.widgets_gone()
                return None
        return call

    def _relayed(self, function: Any) -> Any:
        guarded = self.guarded(function)
        return lambda *args: self._relay.call.emit(guarded, args)

    def start(self, job: Job) -> None:
        from napari.qt.threading import create_worker

        reporters = {name: self._relayed(callback) for name, callback in job.reporters.items()}
        worker = create_worker(
            job.function, **job.kwargs, **reporters,
            _start_thread=False,
            _ignore_errors=True,  # errors go to job.on_errored
        )
        worker.returned.connect(self.guarded(job.on_returned))
        worker.errored.connect(self.guarded(job.on_errored))
        worker.finished.connect(lambda: self._workers.discard(worker))
        worker.finished.connect(self.guarded(job.on_finished))
        job.handle = worker
        self._workers.add(worker)
        worker.start()

    def defer(self, function: Any) -> None:
        """Run ``function`` at the event loop's next turn (after pending paints and input)."""
        from qtpy.QtCore import QTimer

        QTimer.singleShot(1, self.guarded(function))  # a timer, not a posted event: those run all in one go

    def wait_all(self, timeout_s: float) -> None:
        """Wait for every running worker (each stops at its next check of its stop request)."""
        workers = list(self._workers)
        for worker in workers:
            worker.quit()
        if workers:  # a class method of napari's workers: waits for every running one
            type(workers[0]).await_workers(msecs=int(timeout_s * 1000))
