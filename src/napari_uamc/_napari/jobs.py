"""Background work as plain descriptions, and a runner that does it on the spot (no Qt).

The session describes each long task as a :class:`Job`: a plain function (from
:mod:`napari_uamc._napari.tasks`), its arguments, the callbacks it reports through while it
runs (``reporters``: called from the worker thread, delivered on the caller's thread) and what
to do when it returns, fails and ends. A runner does the work: :class:`InlineRunner` here runs it
at once in the calling thread (tests, scripts without a GUI); the panel uses the Qt runner of
:mod:`napari_uamc._napari._qt.runner`, which runs it in a napari thread worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


def _nothing(*_args: Any) -> None:
    return None


@dataclass
class Job:
    """One piece of background work and where its results go."""

    name: str
    function: Callable[..., Any]
    kwargs: dict[str, Any]
    #: keyword arguments of ``function`` that are callbacks it calls while running
    reporters: dict[str, Callable[..., None]] = field(default_factory=dict)
    on_returned: Callable[[Any], None] = _nothing
    on_errored: Callable[[BaseException], None] = _nothing
    on_finished: Callable[[], None] = _nothing
    #: the runner's handle (a napari worker for the Qt runner)
    handle: Any = None


class Runner(Protocol):
    def start(self, job: Job) -> None: ...

    def defer(self, function: Callable[[], None]) -> None:
        """Call ``function`` on the caller's thread at its next turn (an event-loop turn in the
        panel), so a long piece of GUI work can be cut into short ones."""

    def wait_all(self, timeout_s: float) -> None: ...


class InlineRunner:
    """Runs a job at once in the calling thread; ``start`` returns when it has ended."""

    def start(self, job: Job) -> None:
        try:
            result = job.function(**job.kwargs, **job.reporters)
        except Exception as error:  # noqa: BLE001 - handed to the job, as a worker would
            job.on_errored(error)
        else:
            job.on_returned(result)
        finally:
            job.on_finished()

    def defer(self, function: Callable[[], None]) -> None:
        function()

    def wait_all(self, timeout_s: float) -> None:
        return None


def in_turns(runner: Runner, steps: list[Callable[[], Any]], then: Callable[[], None]) -> None:
    """Run ``steps`` one per turn of the caller's event loop (``runner.defer``), then ``then``
    (also when a step fails). Putting a volume in a napari layer costs 0.1-0.3 s on the GUI
    thread; one per turn keeps each stall that short instead of their sum."""
    if not steps:
        then()
        return

    def run() -> None:
        try:
            steps[0]()
        except Exception:
            then()
            raise
        in_turns(runner, steps[1:], then)

    runner.defer(run)
