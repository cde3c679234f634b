"""The panel's session without Qt: a napari ViewerModel, jobs run on the spot (InlineRunner)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from napari.components import ViewerModel  # noqa: E402

from _helpers import accept_box  # noqa: E402
from napari_uamc._napari import layers as layer_io  # noqa: E402
from napari_uamc._napari.corrections import DRAFT  # noqa: E402
from napari_uamc._napari.session import Session  # noqa: E402
from napari_uamc._napari.styling import (  # noqa: E402
    CHANGES_SUFFIX,
    DISAGREEMENT_SUFFIX,
    SDF_SUFFIX,
    SEGMENTATION_SUFFIX,
    UNCERTAINTY_SUFFIX,
)
from napari_uamc.data.study import Study  # noqa: E402


@pytest.fixture
def session():
    viewer = ViewerModel()
    made = Session(viewer)
    made.mc_samples = 2
    yield made
    made.close()


def _record(signal):
    seen = []
    signal.connect(lambda *args: seen.append(args))
    return seen


def _paint(session, image, box):
    """Flip ``box`` of ``<image> segmentation`` (1 <-> 0), so it differs from any prediction."""
    layer = session.viewer.layers[image + SEGMENTATION_SUFFIX]
    data = np.array(layer.data)
    data[box] = 1 - np.minimum(data[box], 1)
    layer.data = data
    return data


def test_no_qt_is_imported():
    import subprocess
    import sys

    code = ("import sys; import napari_uamc._napari.session; "
            "print([m for m in sys.modules if m.startswith(('qtpy', 'PyQt', 'PySide'))])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_panel_module_imports_neither_torch_nor_scipy():
    """Both are seconds of imports on the GUI thread when the panel opens (scipy.ndimage alone
    0.5 s here: an offer preview's module-level metrics import once made the panel open in 609 ms);
    the workers import them when work starts."""
    import subprocess
    import sys

    code = ("import sys; import napari_uamc._napari.panel; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'scipy')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_open_study_opens_the_suggested_case_and_says_so(session, tiny_study):
    cases, studies = _record(session.case_changed), _record(session.study_changed)
    session.open_study(tiny_study)
    assert session.case in session.study.cases()
    assert session.image_name == session.case and session.case in session.viewer.layers
    assert (session.case,) in cases and studies
    assert session.models.selected.version == "v001"


def test_segment_makes_the_layers_and_keeps_helpers_inactive(session, tiny_study):
    session.open_study(tiny_study)
    case = session.case
    session.show_disagreement = True
    session.segment()
    assert not session.segmenting
    layers = session.viewer.layers
    for suffix in (SEGMENTATION_SUFFIX, SDF_SUFFIX, UNCERTAINTY_SUFFIX, DISAGREEMENT_SUFFIX):
        assert case + suffix in layers
    assert layers.selection.active is layers[case + SEGMENTATION_SUFFIX]
    assert "mL" in session.texts["segment"][0]
    # one plain space: a <code> span's fixed-pitch space read as "uamc  segment" (issue 12)
    assert "'uamc segment'" in session.texts["segment"][0] and "<code>" not in session.texts["segment"][0]
    assert session.study.has_prediction(case)
    session.set_disagreement(False)
    session.set_disagreement(True)  # toggled again after Segment: still painting the segmentation
    assert layers.selection.active is layers[case + SEGMENTATION_SUFFIX]


def test_segment_keeps_painted_voxels_as_a_draft(session, tiny_study):
    session.open_study(tiny_study)
    case = session.case
    session.segment()
    painted = _paint(session, case, np.s_[2:6, 4:12, 4:12])
    session.segment()  # the new prediction replaces the layer on screen...
    draft = session.study.read_draft(case)  # ...and the painted voxels are in the draft
    assert draft is not None and np.array_equal(draft.array, layer_io.layer_data_to_canonical(painted))
    assert "draft" in session.texts["accept"][0]
    rows = _record(session.history_changed)
    session.corrections.refresh_history()
    assert rows[-1][0][0][1] == DRAFT
    session.corrections.restore(DRAFT)  # brings the painted voxels back on screen
    assert np.array_equal(session.viewer.layers[case + SEGMENTATION_SUFFIX].data, painted)


def test_segment_of_an_unedited_prediction_leaves_no_draft(session, tiny_study):
    session.open_study(tiny_study)
    session.segment()
    session.segment()
    assert session.study.read_draft(session.case) is None


def test_segment_outside_a_study_sets_the_painted_layer_aside(session, tiny_study):
    study = Study.open(tiny_study)
    image = study.read_image(study.cases()[0])
    data, kwargs, _ = layer_io.image_layer_tuple(image, name="loose")
    session.viewer.add_image(data, **kwargs)
    session.models.choices[0].path = study.model_path("v001")  # the tiny model, not the packaged one
    session.select_image("loose")
    session.segment()
    painted = _paint(session, "loose", np.s_[1:3, 2:6, 2:6])
    session.segment()
    kept = [layer for layer in session.viewer.layers if layer.name.startswith("loose segmentation (")]
    assert len(kept) == 1 and np.array_equal(kept[0].data, painted)
    assert session.viewer.layers.selection.active is session.viewer.layers["loose" + SEGMENTATION_SUFFIX]


def test_layers_a_next_case_has_no_use_for_go_in_a_turn_of_their_own(session, tiny_study):
    """Issue 12 part 9: napari collects garbage once per batch of removed layers (0.1-0.2 s), so
    the layers the case left has and the next case lacks are hidden when it takes over and
    removed in the next turn, alone (before the image is refilled: see case_steps)."""
    session.open_study(tiny_study)
    first = session.case
    session.segment()  # the first case: image, segmentation, uncertainty, SDF
    unsegmented = next(case for case in session.study.cases()
                       if case != first and session.study.read_prediction(case) is None)
    turns, defer = [], session.runner.defer
    session.runner.defer = lambda function: (
        turns.append({layer.name: layer.visible for layer in session.viewer.layers}), defer(function))
    removed_in_turn = []
    session.viewer.layers.events.removed.connect(lambda event: removed_in_turn.append(len(turns)))
    session.open_case(unsegmented)
    assert session.case == unsegmented
    assert [layer.name for layer in session.viewer.layers] == [unsegmented]
    assert len(turns) == 3  # take over the image, remove the rest, refill the image
    assert removed_in_turn == [2, 2, 2]  # one batch, alone in its turn
    before_removal = turns[1]
    left_over = {name: visible for name, visible in before_removal.items() if name != unsegmented}
    assert len(left_over) == 3 and not any(left_over.values())  # hidden since the take-over


def test_a_reopened_segmented_case_says_its_saved_prediction(session, tiny_study):
    """A try-out: a reopened, already segmented case showed 0 % and no line in Segment."""
    session.open_study(tiny_study)
    first = session.case
    session.segment()
    progress = []
    session.segment_progress.connect(lambda done, total: progress.append((done, total)))
    session.open_case(next(case for case in session.study.cases() if case != first))
    assert not session.texts.get("segment", ("", ""))[0]  # never segmented: nothing to say
    session.open_case(first)
    text = session.texts["segment"][0]
    assert text.startswith(f"{first}: the saved prediction of ") and "uncertainty score" in text
    assert progress[-1] == (1, 1)


def test_next_case_keeps_the_draft(session, tiny_study):
    session.open_study(tiny_study)
    first = session.case
    session.segment()
    painted = _paint(session, first, np.s_[3:5, 6:10, 6:10])
    session.open_next_case()
    assert session.case != first and first not in session.viewer.layers
    draft = session.study.read_draft(first)
    assert draft is not None and np.array_equal(draft.array, layer_io.layer_data_to_canonical(painted))


def test_next_case_says_why_this_case_and_that_it_is_not_segmented(session, tiny_study):
    said = _record(session.status)
    session.open_study(tiny_study)  # no case segmented yet: the first case, in list order
    first = session.case
    assert first == session.study.cases()[0]
    rest = ("in list order: no unaccepted case has an uncertainty score to rank by yet (Segment gives one); "
            "not segmented yet: Segment to see the model's labels")
    assert ("study", f"opening {first}, {rest}…", "info") in said
    assert session.texts["study"] == (f"{first}, {rest}", "info")  # it stays once on screen
    session.open_next_case()
    second = session.study.cases()[1]
    assert session.case == second
    assert session.texts["study"][0] == f"{second}, {rest.replace('no unaccepted', 'no other unaccepted')}"


def test_next_case_says_it_follows_the_uncertainty_ranking(session, tiny_study):
    session.open_study(tiny_study)
    session.segment()  # the open case gets a score; another case is scored higher
    first = session.case
    other = session.study.cases()[-1]
    session.study.set_uncertainty(other, 0.25)
    session.open_next_case()
    assert session.case == other != first
    assert session.texts["study"][0].startswith(
        f"{other}, the most uncertain other unaccepted case (uncertainty score 0.2500 nats)")
    session.open_case(first)  # opened by name: no reason to give
    assert session.texts["study"][0] == ""


def test_next_case_says_when_the_case_left_still_ranks_first(session, tiny_study):
    """Try-out: after segmenting every case, Next case opened #2 without saying why not #1."""
    session.open_study(tiny_study)
    first, second, *_ = session.study.cases()
    session.study.set_uncertainty(first, 0.5)  # the only case scored: the next one in list order
    session.open_case(first)
    session.open_next_case()
    assert session.case == second
    assert session.texts["study"][0].startswith(f"{second}, in list order: ")
    assert session.texts["study"][0].endswith(f"; {first}, the case you left, still ranks first")
    session.study.set_uncertainty(second, 0.25)
    session.open_case(first)
    session.open_next_case()
    assert session.case == second
    assert session.texts["study"][0] == (
        f"{second}, the most uncertain other unaccepted case (uncertainty score 0.2500 nats); "
        f"{first}, the case you left, still ranks first")


def test_the_next_case_note_goes_when_its_case_is_accepted(session, tiny_study):
    session.open_study(tiny_study)
    first, *_, other = session.study.cases()
    session.study.set_uncertainty(other, 0.25)
    session.open_next_case()
    assert "most uncertain" in session.texts["study"][0]
    session.segment()  # scores the case again; it still ranks first among the unaccepted
    assert "most uncertain" in session.texts["study"][0]
    session.accept()
    assert other in session.study.labeled_cases()
    assert "most uncertain" not in session.texts["study"][0]


def test_the_next_case_note_does_not_outlive_a_re_ranking(session, tiny_study):
    """After Adopt re-scored the cases, the study line named the open case the most uncertain
    while the table showed another one higher (try-out on real scans)."""
    session.open_study(tiny_study)
    first, *_, other = session.study.cases()
    session.study.set_uncertainty(other, 0.25)
    session.open_next_case()
    assert session.case == other
    session.study_changed.emit()  # nothing re-scored: the note stays
    assert "most uncertain" in session.texts["study"][0]
    session.study.set_uncertainty(other, 0.3)  # re-scored, still the first: said again, new score
    session.models_changed.emit()
    assert session.texts["study"][0] == (
        f"{other}, the most uncertain unaccepted case (uncertainty score 0.3000 nats)")
    session.study.set_uncertainty(first, 0.5)  # another case ranks higher now: the note goes
    session.study_changed.emit()
    assert session.texts["study"][0] == ""
    session.study.set_uncertainty(first, 0.1)  # and does not come back by itself
    session.study_changed.emit()
    assert session.texts["study"][0] == ""


def test_napari_removing_its_layers_keeps_the_draft(session, tiny_study):
    """napari's Viewer.close() clears the layers before it closes the window."""
    session.open_study(tiny_study)
    case = session.case
    session.segment()
    painted = _paint(session, case, np.s_[3:5, 6:10, 6:10])
    session.viewer.layers.clear()
    draft = Study.open(tiny_study).read_draft(case)
    assert draft is not None and np.array_equal(draft.array, layer_io.layer_data_to_canonical(painted))


def test_shutdown_keeps_the_draft(session, tiny_study):
    session.open_study(tiny_study)
    case = session.case
    session.segment()
    painted = _paint(session, case, np.s_[0:2, 0:4, 0:4])
    session.shutdown(timeout_s=1)
    assert np.array_equal(Study.open(tiny_study).read_draft(case).array, layer_io.layer_data_to_canonical(painted))


def test_changes_layer_is_a_view(session, tiny_study):
    session.open_study(tiny_study)
    case = session.case
    session.segment()
    _paint(session, case, np.s_[2:4, 2:8, 2:8])
    session.show_changes()
    changes = session.viewer.layers[case + CHANGES_SUFFIX]
    assert not changes.editable
    assert session.viewer.layers.selection.active is session.viewer.layers[case + SEGMENTATION_SUFFIX]


def test_accept_records_the_honest_score_and_clears_the_draft(session, tiny_study):
    from napari_uamc._napari.versions import honest_scores, version_rows

    session.open_study(tiny_study)
    case = session.case
    session.segment()
    _paint(session, case, np.s_[2:6, 4:12, 4:12])
    session.keep_draft()
    assert session.study.read_draft(case) is not None
    session.accept()
    assert session.study.read_draft(case) is None
    said = session.texts["accept"][0]
    # the case once, the file where it went, and no jargon (issue 12)
    assert said.startswith(f"accepted {case} (labelsTr/") and said.count(case) == 2  # name + file name
    assert "against your label" in said and "honest" not in said
    assert "v001" in honest_scores(session.study)
    rows = dict((version, text) for text, version in version_rows(session.study))
    assert "against the labels you then accepted (1 case)" in rows["v001"]
    assert not session.layers.is_edited(case)  # what is on screen is saved: nothing to keep on leaving
    session.open_next_case()
    assert session.study.read_draft(case) is None


def test_accept_says_how_many_voxels_changed_and_a_dice_that_does_not_round_to_one(session, tiny_study):
    """Clinician try-out: after a visible 173-voxel edit Accept said 'the model's prediction had Dice
    1.000 against your label' (0.99951 at 3 decimals)."""
    from napari_uamc._words import dice_text
    from napari_uamc.data.metrics import dice

    session.open_study(tiny_study)
    case = session.case
    session.segment()
    layer = session.viewer.layers[case + SEGMENTATION_SUFFIX]
    predicted = np.array(layer.data)
    inside = np.argwhere(predicted == 1)[:3]
    assert len(inside) == 3 and np.count_nonzero(predicted) > 1000  # the tiny model segments most voxels
    edited = predicted.copy()
    edited[tuple(inside.T)] = 0  # 3 voxels of thousands: Dice 0.9999
    layer.data = edited
    session.accept()
    said = session.texts["accept"][0]
    score = dice(predicted != 0, edited != 0)
    assert 0.9995 <= score < 1
    from napari_uamc._words import format_ml

    ml = format_ml(3 * float(np.prod(layer.scale)) / 1000.0)  # and in mL: the unit of the Segment line
    assert (f"; you changed 3 voxels ({ml}); the model's prediction had Dice {dice_text(score)} "
            "against your label") in said
    assert "Dice 1.000" not in said
    edited = predicted.copy()
    edited[tuple(inside[:1].T)] = 0  # one voxel against the same prediction
    layer.data = edited
    session.accept()
    assert "; you changed 1 voxel (" in session.texts["accept"][0]


def test_texts_about_the_previous_case_go_when_another_opens(session, tiny_study):
    session.open_study(tiny_study)
    session.segment()
    assert session.texts["segment"][0]
    other = next(case for case in session.study.cases() if case != session.case)
    session.open_case(other)
    assert session.texts["segment"][0] == "" and session.texts["accept"][0] == ""


def _reopened(tiny_study, case):
    """A fresh session (as after restarting napari) that opens ``case`` of the study."""
    reopened = Session(ViewerModel())
    regions = _record(reopened.regions_changed)
    reopened.open_study(tiny_study, open_first_case=False)
    reopened.open_case(case)
    return reopened, regions


def test_a_reopened_case_lists_where_to_correct_and_shows_the_disagreement(session, tiny_study):
    from napari_uamc.data.regions import uncertain_regions

    session.open_study(tiny_study)
    case = session.case
    session.segment()
    assert session.outcomes[case].regions  # the tiny model is unsure: there is something to list
    reopened, regions = _reopened(tiny_study, case)
    try:
        saved = reopened.study.read_prediction(case)
        expected = uncertain_regions(saved["uncertainty"].array, saved["uncertainty"].spacing)
        assert regions and regions[-1][0] == expected and expected  # from the saved uncertainty
        assert reopened.disagreement_note() == ""
        reopened.set_disagreement(True)
        layer = reopened.viewer.layers[case + DISAGREEMENT_SUFFIX]
        assert np.allclose(layer_io.layer_data_to_canonical(layer.data),
                           session.outcomes[case].result.disagreement, atol=0.006)
        assert reopened.outcomes[case].model_version == "v001"  # Accept's honest score names it
    finally:
        reopened.close()


def test_a_reopened_case_without_a_saved_disagreement_says_why(session, tiny_study):
    session.open_study(tiny_study)
    case = session.case
    session.segment()
    session.study.layout.optional_prediction_files(case)["disagreement"].unlink()  # an older prediction
    reopened, regions = _reopened(tiny_study, case)
    try:
        notices = _record(reopened.notice)
        assert regions[-1][0]  # the regions still come from the saved uncertainty
        assert "Segment again" in reopened.disagreement_note()
        reopened.set_disagreement(True)
        assert case + DISAGREEMENT_SUFFIX not in reopened.viewer.layers
        assert notices and "Segment again" in notices[-1][0]
    finally:
        reopened.close()


def test_a_draft_that_cannot_be_written_leaves_the_edit_on_screen(session, tiny_study, monkeypatch):
    from napari_uamc.errors import StudyError

    session.open_study(tiny_study)
    first = session.case
    session.segment()
    painted = _paint(session, first, np.s_[2:6, 4:12, 4:12])

    def refuse(case, label):
        raise StudyError("disk full")

    monkeypatch.setattr(session.study, "save_draft", refuse)
    session.open_next_case()  # the draft fails in the background: the painted layer is set aside
    kept = [layer for layer in session.viewer.layers if layer.name.startswith(f"{first} segmentation (")]
    assert len(kept) == 1 and np.array_equal(kept[0].data, painted) and kept[0].editable
    assert session.texts["accept"][1] == "error" and "disk full" in session.texts["accept"][0]
    assert session.case != first


def test_errors_are_said_in_their_section(session):
    session.segment()
    assert session.texts["segment"] == (
        "no image layer to segment: open an MRI (File > Open) or a study case", "error")
    session.finetuning.start()
    assert session.texts["finetune"][1] == "error" and "open a study" in session.texts["finetune"][0]


def test_use_version_and_back_to_the_default(session, tiny_study):
    session.open_study(tiny_study)
    assert session.models.selected.version == "v001"
    session.use_version(None)
    assert session.study.current_model is None and session.models.selected.version is None
    session.use_version("v001")
    assert Study.open(tiny_study).current_model == "v001"


def _finetune(session, iterations=2):
    tuning = session.finetuning
    tuning.budget_unit, tuning.budget = "iterations", iterations
    tuning.start()
    return tuning


def test_a_finetune_offers_its_version_and_the_model_stays(session, tiny_study):
    """The old panel made every new version current at once; now it is offered (issue 12, part 8)."""
    session.open_study(tiny_study)
    accept_box(session.study)
    offers = _record(session.finetuning.offered)
    tuning = _finetune(session)
    offer = tuning.offer
    assert offer is not None and offers[-1] == (offer,)
    assert offer.version == "v002" and offer.parent == "v001" and not offer.stopped_early
    assert Study.open(tiny_study).current_model == "v001"  # not adopted
    assert session.models.selected.version == "v001"  # Segment still uses v001
    assert [c.version for c in session.models.choices] == [None, "v001", "v002"]  # but it can be picked
    assert set(offer.before) == set(offer.after) == {session.study.cases()[0]}
    assert len(offer.change) == 3 and offer.others == 3  # COMPARE_CASES = 3: every other case of the tiny study
    text = " ".join(offer.lines())
    case = session.study.cases()[0]
    assert "v001 stays in use" in text and f"Accepted case {case}, agreement with your label (Dice): v001" in text
    assert "per case" not in text  # one accepted case: one line (issue 12)
    assert "Other cases: Dice between v001's and v002's predictions" in text and "on 3 of 3" in text
    assert "<b>v002</b> trained: 2 iterations in" in session.texts["finetune"][0]


def test_adopt_makes_the_offer_current_and_refreshes_the_ranking(session, tiny_study):
    session.open_study(tiny_study)
    accept_box(session.study)
    tuning = _finetune(session)
    tuning.adopt()
    study = Study.open(tiny_study)
    assert study.current_model == "v002" and tuning.offer is None
    assert session.models.selected.version == "v002"
    assert "now using <b>v002</b>" in session.texts["versions"][0] and "was v001" in session.texts["versions"][0]
    for case in study.unlabeled_cases():
        assert study.case_info(case).prediction_model == "v002"
    assert "ranking refreshed" in session.texts["finetune"][0]


def test_discard_removes_the_weights_and_keeps_the_record(session, tiny_study):
    import json

    session.open_study(tiny_study)
    accept_box(session.study)
    tuning = _finetune(session)
    stages: list[str] = []
    tuning.stage.connect(stages.append)
    tuning.discard()
    assert stages and stages[-1] == ""  # no stale "wrote model v002 ... not adopted" line is left
    study = Study.open(tiny_study)
    assert study.current_model == "v001" and study.model_versions() == ["v001"] and tuning.offer is None
    record = json.loads(study.model_info_path("v002").read_text())
    assert record["discarded"] and record["parent"] == "v001"
    assert [c.version for c in session.models.choices] == [None, "v001"]
    _finetune(session, iterations=1)
    assert tuning.offer.version == "v003"  # a discarded number is never reused


def test_a_version_stopped_early_is_offered_never_adopted(session, tiny_study, monkeypatch):
    from napari_uamc._napari import tasks

    monkeypatch.setattr(tasks, "STOP_GRACE_SECONDS", 600.0)  # no wall-clock limit in a test
    session.open_study(tiny_study)
    accept_box(session.study)
    tuning = session.finetuning
    stopping = _record(tuning.stopping)
    said: list[str] = []
    session.status.connect(lambda section, text, level: said.append(text) if section == "finetune" else None)
    tuning.stepped.connect(lambda *args: tuning.stop())  # Stop after the first step
    _finetune(session, iterations=10_000)
    offer = tuning.offer
    assert offer is not None, said
    assert offer.stopped_early and offer.barely_trained
    assert stopping == [()] and any(text.startswith("stopping…") for text in said)  # acknowledged at once
    assert Study.open(tiny_study).current_model == "v001"
    assert "Stopped early" in " ".join(offer.lines()) and "barely trained" in " ".join(offer.lines())
    assert "s after Stop" in session.texts["finetune"][0]  # how long the stop took


def test_one_model_choice_for_segment_and_finetune(session, tiny_study):
    session.open_study(tiny_study)
    session.select_model(0)  # the Segment picker: the packaged default
    assert Study.open(tiny_study).current_model is None  # the study's model, hence the fine-tune's start
    assert session.models.selected.version is None
    assert "now using <b>the default model</b>" in session.texts["versions"][0]
    session.select_model(1)
    assert Study.open(tiny_study).current_model == "v001"


def test_a_stop_before_training_writes_nothing(session, tiny_study):
    session.open_study(tiny_study)
    accept_box(session.study)
    tuning = session.finetuning
    tuning.on_message = lambda text: tuning.stop()  # Stop during the comparison, the first stage
    _finetune(session, iterations=10_000)
    assert tuning.offer is None and Study.open(tiny_study).model_versions() == ["v001"]
    assert "no model version was written" in session.texts["finetune"][0]


def test_a_child_that_does_not_stop_in_time_is_ended_and_leaves_nothing(tiny_study):
    from napari_uamc._napari.tasks import finetune_in_child
    from napari_uamc.engine.inference import Cancelled

    study = Study.open(tiny_study)
    accept_box(study)
    with pytest.raises(Cancelled, match="did not end within 0 s of Stop and was ended"):
        finetune_in_child(tiny_study, iterations=10_000, device="cpu", adopt=False,
                          should_stop=lambda: True, stop_grace_s=0.0)
    assert sorted(p.name for p in study.models_dir.iterdir()) == ["v001.json", "v001.pt"]


def test_an_offer_shows_each_accepted_case_so_a_mean_hides_no_loss():
    from napari_uamc._napari.finetuning import PER_CASE_SHOWN, Offer

    offer = Offer("v002", "v001", 40, False, before={"a": 0.862, "b": 0.9995}, after={"a": 0.872, "b": 0.982})
    text = "\n".join(offer.lines())
    assert "mean agreement with your labels (Dice): v001 0.931, v002 0.927" in text  # the means alone look close
    assert "per case: b 0.9995 -> 0.982; a 0.862 -> 0.872" in text  # the loss comes first
    many = {f"c{i}": 0.9 for i in range(PER_CASE_SHOWN + 1)}
    worse = {**many, "c3": 0.8}
    text = "\n".join(Offer("v002", "v001", 40, False, before=many, after=worse).lines())
    assert "lost most: c3 0.900 -> 0.800" in text and "c0" not in text


def test_an_offer_with_one_accepted_case_says_it_once():
    """Issue 12: one accepted case gave a mean line and a per-case line saying the same; one other
    case compared was still called the 'most changed'."""
    from napari_uamc._napari.finetuning import Offer

    offer = Offer("v002", "v001", 40, False, before={"a": 0.918}, after={"a": 0.916}, change={"b": 0.97},
                  others=1)
    lines = offer.lines()
    text = "\n".join(lines)
    assert "Accepted case a, agreement with your label (Dice): v001 0.918, v002 0.916" in text
    assert "per case" not in text and sum("0.918" in line for line in lines) == 1
    assert "on 1 of 1" in text and "most changed" not in text
    two = Offer("v002", "v001", 40, False, before={"a": 0.918}, after={"a": 0.916},
                change={"b": 0.97, "c": 0.9}, others=2)
    assert "most changed: c 0.90" in "\n".join(two.lines())


def test_a_version_written_while_napari_was_closed_is_offered_when_the_study_opens(
    session, tiny_study, write_unreviewed
):
    import json

    weights = write_unreviewed(tiny_study)
    session.finetuning.refresh_after = False  # no re-segmenting: the decision is under test
    session.open_study(tiny_study, open_first_case=False)
    offer = session.finetuning.offer
    assert offer is not None and offer.version == "v002" and offer.from_file
    text = " ".join(offer.lines())
    assert "Stopped early after 3 iterations: v002 is barely trained" in text and "v001 0.750, v002 0.800" in text
    assert "never adopted or discarded" in session.texts["finetune"][0]
    assert "not reviewed" in session.models.choices[2].label
    session.finetuning.adopt()
    study = Study.open(tiny_study)
    assert study.current_model == "v002" and session.finetuning.offer is None
    record = json.loads(study.model_info_path("v002").read_text())
    assert record["adopted"] and record["iterations"] == 3  # the decision added, the rest kept
    assert study.model_path("v002").read_bytes() == weights  # the model file is never rewritten


def test_a_reopened_offer_can_be_discarded_and_is_not_offered_again(session, tiny_study, write_unreviewed):
    import json

    write_unreviewed(tiny_study)
    session.open_study(tiny_study, open_first_case=False)
    session.finetuning.discard()
    study = Study.open(tiny_study)
    record = json.loads(study.model_info_path("v002").read_text())
    assert record["discarded"] and record["parent"] == "v001" and study.model_versions() == ["v001"]
    again = Session(ViewerModel())
    try:
        again.open_study(tiny_study, open_first_case=False)
        assert again.finetuning.offer is None  # decided: never offered again
    finally:
        again.close()


def test_picking_an_unreviewed_version_offers_it_instead_of_adopting_it(session, tiny_study, write_unreviewed):
    write_unreviewed(tiny_study, stopped_early=False, iterations=40)
    session.open_study(tiny_study, open_first_case=False)
    session.finetuning.set_offer(None)  # the person closed nothing, but looks elsewhere
    session.select_model(2)  # the Model list: v002
    assert Study.open(tiny_study).current_model == "v001" and session.models.selected.version == "v001"
    assert session.finetuning.offer is not None and session.finetuning.offer.version == "v002"
    assert "not adopted yet" in session.texts["versions"][0]


def test_a_now_using_line_goes_with_later_actions(session, tiny_study, write_unreviewed):
    session.finetuning.refresh_after = False
    session.open_study(tiny_study)
    session.use_version(None)
    assert "now using" in session.texts["versions"][0]
    session.open_next_case()
    assert session.texts["versions"][0] == ""  # Next case: it was about an earlier action
    session.use_version("v001")
    write_unreviewed(tiny_study)
    session.finetuning.offer_version("v002")
    assert session.texts["versions"][0] == ""  # a new offer: the model in use is said there


def test_the_time_left_agrees_with_the_elapsed_time_and_the_budget(session):
    from types import SimpleNamespace

    tuning = session.finetuning
    now = [10.0]
    tuning.clock = lambda: now[0]
    tuning.budget_seconds = 60.0

    def step(iteration, eta):  # the engine's eta counts from its own start and may say less
        return SimpleNamespace(iteration=iteration, total=100_000, losses={"total": 0.5},
                               seconds_per_iteration=8.0, eta_seconds=eta)

    tuning.on_step(step(1, 52.0))  # the first report comes after its step: 8 s in
    assert "8 s of 60 s of training, about 52 s of training left" in session.texts["finetune"][0]
    now[0] = 53.0
    tuning.on_step(step(6, 1.0))
    assert "51 s of 60 s of training, about 9 s of training left" in session.texts["finetune"][0]


def test_when_training_ends_the_bar_turns_busy_and_the_status_names_each_stage(session):
    """Clinician try-out: for 20-30 s after training the bar showed 100 % and the status 'iteration
    3/3, about 0 s left' (or '60 s of 60 s, about 0 s left') while BatchNorm recalibration,
    scoring, writing and comparing still ran."""
    from types import SimpleNamespace

    tuning = session.finetuning
    bars, now = _record(tuning.progress), [10.0]
    tuning.clock = lambda: now[0]
    tuning.budget_seconds = 60.0

    def step(iteration):
        return SimpleNamespace(iteration=iteration, total=100_000, losses={"total": 0.5},
                               seconds_per_iteration=8.0, eta_seconds=0.0)

    tuning.on_step(step(1))
    now[0] = 62.0  # the budget is used up: this is the last step
    tuning.on_step(step(8))
    said = session.texts["finetune"][0]
    assert bars[-1] == (0, 0)  # busy: no fraction of the rest is known, and it is not done
    assert "0 s left" not in said and said.startswith("training done: 8 iterations in 60 s")
    for message, stage in (("recalibrating BatchNorm statistics on the study's images", "recalibrating BatchNorm…"),
                           ("scoring the accepted cases (training Dice)", "scoring the accepted cases…"),
                           ("writing model v003", "writing v003…"),
                           ("wrote model v003 (/s/.uamc/models/v003.pt); not adopted", "writing v003…"),
                           ("comparing the new version v003 with v002 on the other cases",
                            "comparing v003 with the model in use…")):
        tuning.on_message(message)
        assert session.texts["finetune"][0] == f"training done: 8 iterations in 60 s. Now {stage}"
        assert bars[-1] == (0, 0)
    tuning.on_progress(1, 3)  # the comparison counts its cases: a bar of its own
    assert bars[-1] == (1, 3)
    assert session.texts["finetune"][0].endswith("Now comparing v003 with the model in use on 3 cases: 1 of 3 done…")


def test_an_iterations_budget_never_says_0_s_left_at_its_last_step(session):
    from types import SimpleNamespace

    tuning = session.finetuning
    bars, now = _record(tuning.progress), [0.0]
    tuning.clock = lambda: now[0]

    def step(iteration, eta):
        return SimpleNamespace(iteration=iteration, total=3, losses={"total": 0.5}, seconds_per_iteration=8.0,
                               eta_seconds=eta)

    now[0] = 8.0
    tuning.on_step(step(1, 16.0))
    assert "iteration 1/3, about 16 s of training left" in session.texts["finetune"][0] and bars[-1] == (1, 3)
    now[0] = 24.0
    tuning.on_step(step(3, 0.0))
    assert session.texts["finetune"][0] == "training done: 3 iterations in 24 s. Now finishing the new version…"
    assert bars[-1] == (0, 0)
    tuning.stop()  # a Stop now: training was done, the finishing stops
    tuning.on_message("recalibrating BatchNorm statistics on the study's images")
    assert session.texts["finetune"][0].startswith("stopping… training done: 3 iterations")


def test_a_real_finetune_says_each_stage_after_training_and_never_0_s_left(session, tiny_study):
    """The same on a real (tiny) run, so the stages follow the engine's own messages."""
    session.open_study(tiny_study)
    accept_box(session.study)
    tuning = session.finetuning
    said: list[str] = []
    session.status.connect(lambda section, text, level: said.append(text) if section == "finetune" else None)
    bars = _record(tuning.progress)
    _finetune(session, iterations=2)
    assert tuning.offer is not None and not any("0 s left" in text for text in said)
    last_step = max(i for i, text in enumerate(said) if text.startswith("iteration "))
    after = said[last_step + 1:]
    assert after[0].startswith("training done: 2 iterations in ")
    for stage in ("recalibrating BatchNorm…", "scoring the accepted cases…", "writing v002…",
                  "comparing v002 with the model in use on 3 cases: 0 of 3 done…"):
        assert any(text.endswith("Now " + stage) for text in after), (stage, after)
    assert (2, 2) not in bars and bars.index((0, 0)) < bars.index((0, 3)) and bars[-1] == (1, 1)  # busy, then 0 of 3
    assert ", 1 of 3 done" not in said[-1] and said[-1].startswith("<b>v002</b> trained: 2 iterations in ")
    assert " of training, " in said[-1] and " in all; see the offer above" in said[-1]


def test_counts_are_written_in_the_right_number(session, tiny_study):
    """Clinician try-out: 'fine-tuning ... on 1 accepted cases', '1 iterations', 'Stopped early after 1
    iterations'."""
    from napari_uamc._napari.finetuning import Offer

    session.open_study(tiny_study)
    accept_box(session.study)
    started: list[str] = []
    session.status.connect(lambda section, text, level: started.append(text) if section == "finetune" else None)
    _finetune(session, iterations=1)
    assert started[0].startswith("fine-tuning v001 on 1 accepted case: 1 iteration of training")
    offer = Offer("v003", "v001", 1, True, before={"a": 0.9}, after={"a": 0.9}, seconds=20.0)
    text = " ".join(offer.lines()) + " " + offer.summary()
    assert "1 iterations" not in text and "(from v001, 1 iteration)" in text
    assert "Stopped early after 1 iteration:" in text and "stopped early: 1 iteration in 20 s" in text
    only_before = " ".join(Offer("v003", "v001", 1, True, before={"a": 0.9}).lines())
    assert "1 accepted case: v001 agreed with your label at Dice 0.900; v003 was not scored" in only_before
