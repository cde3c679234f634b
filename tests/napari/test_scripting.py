"""Driving the panel from a script: a script without the ``__main__`` guard, re-run by the
fine-tune's child process (multiprocessing's spawn start method imports the main script again)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

SCRIPT = textwrap.dedent('''
    import multiprocessing

    from napari.components import ViewerModel
    from napari_uamc._napari.session import Session

    session = Session(ViewerModel())  # no `if __name__ == "__main__":` guard
    print("the script's loop ran", flush=True)
    child = multiprocessing.get_context("spawn").Process(target=abs, args=(-1,))
    child.start()  # as the fine-tune starts its child, later, from a worker thread
    child.join()
    print("child exit code", child.exitcode, flush=True)
''')


def test_a_script_without_the_main_guard_is_stopped_in_the_child_with_the_reason(tmp_path):
    """The try-out's child opened a second napari and repeated the script's loop."""
    script = tmp_path / "drive_the_panel.py"
    script.write_text(SCRIPT)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert run.stdout.count("the script's loop ran") == 1  # not again in the child
    assert "child exit code 1" in run.stdout
    assert 'if __name__ == "__main__":' in run.stderr and "spawn" in run.stderr


def test_the_panels_session_is_refused_only_while_a_spawned_child_starts(monkeypatch):
    import multiprocessing

    from napari.components import ViewerModel

    from napari_uamc._napari.session import Session
    from napari_uamc.errors import UamcError

    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(UamcError, match="__main__"):
        Session(ViewerModel())
    monkeypatch.undo()
    Session(ViewerModel()).close()  # an ordinary process
