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
    # a script's choice shows in the list too (try-out: it kept saying "automatic")
    assert tuning.set_replay(None) and box.replay.currentText() == "none" and not box.replay_note.isVisibleTo(panel)
    assert tuning.set_replay(str(earlier)) and box.replay.currentText() == shown_path(earlier)
    panel.session.runner.wait_all(60.0)  # the panel's warm-up worker ends before the widgets go


@pytest.fixture
def fake_runs(monkeypatch, tiny_study, write_unreviewed):
    """Fine-tunes that write their version at once (``write_unreviewed``) after two steps, instead of
    training in a child process; the versions they wrote, in order."""
    from types import SimpleNamespace

    from napari_uamc._napari import finetuning

    written: list[str] = []

    def run(study_root, *, on_step=None, **_options):
        version = f"v{len(written) + 2:03d}"  # v002, v003...: a discarded number is never reused
        for iteration in (1, 2):
            on_step(SimpleNamespace(iteration=iteration, total=2, losses={"total": 0.5 / iteration},
                                    seconds_per_iteration=0.1, eta_seconds=0.0, last=iteration == 2))
        write_unreviewed(tiny_study, version=version)
        written.append(version)
        result = SimpleNamespace(version=version, parent="v001", iterations=2, stopped_early=False,
                                 starting_agreement={}, training_dice={}, unlabeled=[], seconds=1.0, replay={})
        return SimpleNamespace(result=result, change=None, stop_seconds=None)

    monkeypatch.setattr(finetuning, "finetune_in_child", run)
    return written


def _fine_tuned(panel, qtbot):
    """Click Fine-tune and wait for the offer (and the end of the run)."""
    panel.finetune_button.click()
    qtbot.waitUntil(lambda: panel.session.finetuning.offer is not None and panel._finetune_worker is None,
                    timeout=60_000)
    return panel.session.finetuning.offer


def test_the_loss_curve_goes_with_the_offered_version_it_trained(make_napari_viewer, qtbot, tiny_study, fake_runs):
    """After Discard, the discarded run's curve stayed under the model still in use. The curve names
    no version, so it goes with its version's offer: on Discard and on Adopt alike."""
    from _helpers import accept_box

    panel = UamcPanel(make_napari_viewer())
    panel.open_study(tiny_study, open_first_case=False)
    accept_box(panel.study)
    panel.session.finetuning.refresh_after = False  # no re-segmenting after Adopt: the curve is under test
    assert _fine_tuned(panel, qtbot).version == "v002"
    assert panel.loss_curve.series("total") == [(1, 0.5), (2, 0.25)]  # the run's curve, beside its offer
    panel.offer_box.discard_button.click()
    assert panel.session.finetuning.offer is None and panel.loss_curve.series("total") == []
    assert _fine_tuned(panel, qtbot).version == "v003"
    assert panel.loss_curve.series("total")
    panel.offer_box.adopt_button.click()
    assert panel.study.current_model == "v003" and panel.loss_curve.series("total") == []
    panel.session.runner.wait_all(60.0)


def test_fine_tune_starts_nothing_while_a_version_is_offered_and_says_why(
        make_napari_viewer, qtbot, tiny_study, fake_runs):
    """A second Fine-tune replaced the offer without a word (v002 left on disk, undecided)."""
    from _helpers import accept_box

    panel = UamcPanel(make_napari_viewer())
    panel.open_study(tiny_study, open_first_case=False)
    accept_box(panel.study)
    assert not panel.finetune_button.toolTip().startswith("Adopt or Discard")
    _fine_tuned(panel, qtbot)
    assert panel.finetune_button.toolTip().startswith("Adopt or Discard v002 first")  # said before the click
    panel.finetune_button.click()  # a second run while v002 is offered
    assert fake_runs == ["v002"] and panel.session.finetuning.offer.version == "v002"  # nothing started
    said = panel.finetune_status.text()
    assert ">Adopt or Discard v002 first (its offer is at the top of the panel)" in said
    assert "would leave v002 on disk, neither adopted nor discarded" in said
    panel.offer_box.discard_button.click()
    assert not panel.finetune_button.toolTip().startswith("Adopt or Discard")
    assert _fine_tuned(panel, qtbot).version == "v003"  # decided: Fine-tune runs again
    panel.session.runner.wait_all(60.0)
