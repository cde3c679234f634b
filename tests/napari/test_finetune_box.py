"""The Fine-tune box's replay choice: automatic, none, or a folder picked in a dialog and checked."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui

pytest.importorskip("torch")

from napari_uamc._napari._qt.study_box import shown_path  # noqa: E402
from napari_uamc._napari.panel import UamcPanel  # noqa: E402
from napari_uamc.data.phantoms import write_phantom_study  # noqa: E402


def test_the_replay_folder_is_picked_checked_and_kept_for_the_session(make_napari_viewer, tiny_study, tmp_path):
    panel = UamcPanel(make_napari_viewer())
    panel.open_study(tiny_study, open_first_case=False)
    box, tuning = panel.finetune_box, panel.session.finetuning
    assert box.replay.currentText() == "automatic" and box.replay.count() == 2  # the default, as before
    assert "Replay against forgetting" in box.replay.toolTip() and box.replay_label.text() == "Replay"
    # before any run, in grey under the choice: what automatic does for the model in use (v001 here)
    assert box.replay_note.isVisibleTo(panel) and box.replay_note.text().startswith("automatic: v001's training folder")
    tuning.refresh_after = False  # no re-segmenting: the note is under test
    panel.session.use_version(None)
    assert box.replay_note.text().startswith("automatic: none for the packaged model")

    (tmp_path / "empty").mkdir()
    box.ask_folder = lambda: str(tmp_path / "empty")  # the person's pick in the folder dialog
    box.replay_button.click()
    assert "holds no training images" in panel.finetune_status.text()  # the problem, named
    assert tuning.replay == "auto" and box.replay.currentText() == "automatic" and box.replay.count() == 2

    earlier = write_phantom_study(tmp_path / "earlier", cases=3, seed=5, shape=(32, 32, 16), labeled=2)
    box.ask_folder = lambda: str(earlier)
    box.replay_button.click()
    assert tuning.replay == str(earlier) and box.replay.currentText() == shown_path(earlier)
    assert "the first 2 of its 2 labeled cases" in panel.finetune_status.text()

    box.ask_folder = lambda: ""  # the dialog cancelled: nothing changes
    box.replay_button.click()
    assert tuning.replay == str(earlier)

    box.replay.setCurrentIndex(1)
    box.replay.activated.emit(1)  # the person picks "none"
    assert tuning.replay is None and box.replay.currentText() == "none"
    assert not box.replay_note.isVisibleTo(panel)  # about automatic only
    assert box.replay.count() == 3  # the folder stays in the list, to go back to
    box.replay.setCurrentIndex(2)
    box.replay.activated.emit(2)
    assert tuning.replay == str(earlier)
    box.replay.setCurrentIndex(0)
    box.replay.activated.emit(0)
    assert tuning.replay == "auto"
    panel.session.runner.wait_all(60.0)  # the panel's warm-up worker ends before the widgets go
