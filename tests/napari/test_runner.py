"""The Qt runner: a job's late report that finds the panel's widgets deleted is dropped and closes
the session, instead of raising in napari's event loop (seen in a viewer's teardown)."""

from __future__ import annotations

import pytest

from napari_uamc._napari._qt.runner import QtRunner, is_deleted_widget_error
from napari_uamc._napari.jobs import Job
from napari_uamc._napari.panel import UamcPanel

DELETED = "wrapped C/C++ object of type StatusLine has been deleted"


def test_a_deleted_widget_is_recognised_through_the_errors_that_wrap_it():
    try:
        try:
            raise RuntimeError(DELETED)
        except RuntimeError as inner:
            raise ValueError("while emitting a signal") from inner  # as psygnal's EmitLoopError does
    except ValueError as outer:
        assert is_deleted_widget_error(outer)
    assert not is_deleted_widget_error(RuntimeError("the model expects 2 input channels"))
    assert not is_deleted_widget_error(None)


def test_guarded_reports_drop_only_the_deleted_widget_error(qapp):
    runner = QtRunner()
    gone = []
    runner.widgets_gone = lambda: gone.append(True)

    def deleted():
        raise RuntimeError(DELETED)

    assert runner.guarded(deleted)() is None and gone == [True]
    with pytest.raises(ZeroDivisionError):  # any other error still surfaces
        runner.guarded(lambda: 1 / 0)()
    assert runner.guarded(lambda x: x + 1)(1) == 2 and gone == [True]


def test_a_failure_reported_after_the_panels_status_line_is_deleted_closes_the_session(make_napari_viewer, qtbot):
    from qtpy import sip  # PyQt's own: deletes the C++ object as a garbage-collected panel would

    panel = UamcPanel(make_napari_viewer())
    session = panel.session
    sip.delete(panel.finetune_box.status)  # the widget is gone, the session does not know

    def fail():
        raise RuntimeError("the model expects 2 input channels")

    done = []
    session.runner.start(Job("ranking", fail, {}, on_errored=lambda error: session.job_failed("finetune", error),
                             on_finished=lambda: done.append(True)))
    qtbot.waitUntil(lambda: bool(done), timeout=30_000)
    assert session._closed  # the report was dropped and the session stopped telling the widgets
