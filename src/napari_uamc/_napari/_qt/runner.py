"""Runs the session's jobs in napari thread workers; their reports arrive on the GUI thread."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import QObject, Signal, Slot

from napari_uamc._napari.jobs import Job


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

    def _relayed(self, function: Any) -> Any:
        return lambda *args: self._relay.call.emit(function, args)

    def start(self, job: Job) -> None:
        from napari.qt.threading import create_worker

        reporters = {name: self._relayed(callback) for name, callback in job.reporters.items()}
        worker = create_worker(
            job.function, **job.kwargs, **reporters,
            _start_thread=False,
            _ignore_errors=True,  # errors go to job.on_errored
        )
        worker.returned.connect(job.on_returned)
        worker.errored.connect(job.on_errored)
        worker.finished.connect(lambda: self._workers.discard(worker))
        worker.finished.connect(job.on_finished)
        job.handle = worker
        self._workers.add(worker)
        worker.start()

    def defer(self, function: Any) -> None:
        """Run ``function`` at the event loop's next turn (after pending paints and input)."""
        from qtpy.QtCore import QTimer

        QTimer.singleShot(1, function)  # a timer, not a posted event: those run all in one go

    def wait_all(self, timeout_s: float) -> None:
        """Wait for every running worker (each stops at its next check of its stop request)."""
        workers = list(self._workers)
        for worker in workers:
            worker.quit()
        if workers:  # a class method of napari's workers: waits for every running one
            type(workers[0]).await_workers(msecs=int(timeout_s * 1000))
