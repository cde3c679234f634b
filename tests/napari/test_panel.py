"""The whole napari loop under Xvfb: open -> Segment -> edit -> Accept -> Fine-tune -> Stop -> Segment."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.gui

torch = pytest.importorskip("torch")

from _helpers import accept_box  # noqa: E402
from napari_uamc._napari import layers as layer_io  # noqa: E402
from napari_uamc._napari.panel import (  # noqa: E402
    CHANGES_SUFFIX,
    DISAGREEMENT_SUFFIX,
    SDF_SUFFIX,
    SEGMENTATION_SUFFIX,
    UNCERTAINTY_SUFFIX,
    UamcPanel,
    honest_scores,
)
from napari_uamc.data.phantoms import write_phantom_study  # noqa: E402
from napari_uamc.data.study import Study  # noqa: E402
from napari_uamc.engine.checkpoint import ModelMeta, save_checkpoint  # noqa: E402
from napari_uamc.engine.model import DualTaskVNet  # noqa: E402

SHAPE = (32, 32, 16)  # the tiny study's shape (conftest.py)


def _wait(qtbot, panel, attribute, timeout=60_000):
    qtbot.waitUntil(lambda: getattr(panel, attribute) is None, timeout=timeout)


def _segmented(viewer, qtbot, study, mc_samples: int):
    """A panel on ``study`` whose first case is segmented with ``mc_samples``: (panel, case)."""
    panel = UamcPanel(viewer)
    panel.open_study(study)
    panel.mc_spin.setValue(mc_samples)
    panel.segment()
    _wait(qtbot, panel, "_segment_worker")
    return panel, panel.case


def _assert_draft_is(study, case: str, painted) -> None:
    """The case's draft on disk holds exactly the painted layer data (in canonical order)."""
    draft = study.read_draft(case)
    assert draft is not None and np.array_equal(draft.array, layer_io.layer_data_to_canonical(painted))


def _paint_box(viewer, case, box):
    """Add a ``<case> segmentation`` Labels layer on the case's image with ``box`` painted 1."""
    image = viewer.layers[case]
    painted = np.zeros(image.data.shape, np.uint8)
    painted[box] = 1
    viewer.add_labels(painted, name=case + SEGMENTATION_SUFFIX, scale=image.scale, metadata=image.metadata)
    return painted


def test_whole_loop(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    viewer.window.add_dock_widget(panel)
    panel.open_study(tiny_study)
    study = panel.study
    case = panel.case
    assert case in study.cases()
    assert panel.selected_model().version == "v001"
    image_layer = viewer.layers[case]
    panel.mc_spin.setValue(2)

    # Segment: three layers on the image's scale
    panel.segment()
    _wait(qtbot, panel, "_segment_worker")
    for suffix in (SEGMENTATION_SUFFIX, SDF_SUFFIX, UNCERTAINTY_SUFFIX):
        layer = viewer.layers[case + suffix]
        assert np.allclose(layer.scale, image_layer.scale)
        assert layer.data.shape == image_layer.data.shape
    assert type(viewer.layers[case + SEGMENTATION_SUFFIX]).__name__ == "Labels"
    sdf_layer = viewer.layers[case + SDF_SUFFIX]
    low, high = sdf_layer.contrast_limits
    assert low == pytest.approx(-high)
    assert viewer.layers[case + UNCERTAINTY_SUFFIX].blending == "translucent"
    assert "mL" in panel.segment_status.text()
    assert study.has_prediction(case)

    # Edit the Labels layer (paint a block), then Accept
    seg = viewer.layers[case + SEGMENTATION_SUFFIX]
    edited = np.array(seg.data)
    edited[4:10, 10:20, 10:20] = 1 - edited[4:10, 10:20, 10:20]  # flip a block
    edited[0, 0, 0] = 1  # never empty
    seg.data = edited
    panel.show_changes()
    changes = viewer.layers[case + CHANGES_SUFFIX].data
    assert np.count_nonzero(changes[4:10, 10:20, 10:20]) >= 6 * 10 * 10 - 1
    # the changes layer is a view: painting stays on the segmentation, which Accept saves
    assert viewer.layers.selection.active is seg and not viewer.layers[case + CHANGES_SUFFIX].editable
    panel.accept()
    label_path = study.label_path(case)
    assert label_path is not None and label_path.is_file()
    written = nib.load(label_path)
    source = nib.load(study.image_path(case))
    assert written.shape == source.shape
    assert np.allclose(written.affine, source.affine, atol=1e-6)
    expected = layer_io.layer_data_to_canonical(edited)
    assert np.array_equal(study.read_label(case).array, expected)
    assert "v001" in honest_scores(study)

    # Accept again after another edit: the first label goes to history and can be restored
    edited2 = edited.copy()
    edited2[4:10, 10:12, 10:12] = 0
    seg.data = edited2
    panel.accept()
    assert len(study.history(case)) == 1
    assert panel.history_list.count() == 1

    # Fine-tune a few iterations in the worker; Stop ends it early and still writes a version
    panel.budget_unit.setCurrentText("iterations")
    panel.budget_spin.setValue(1000)
    stepped = []  # training steps, not a stage before the first one (a stop there writes nothing)
    panel.session.finetuning.stepped.connect(lambda *args: stepped.append(True))
    panel.finetune()
    qtbot.waitUntil(lambda: len(stepped) >= 2, timeout=120_000)
    box = panel.finetune_box
    box.stop_button.click()
    assert box.stop_button.text() == "Stopping…" and not box.stop_button.isEnabled()  # at once
    assert panel.finetune_status.text().startswith("stopping…")
    _wait(qtbot, panel, "_finetune_worker", timeout=120_000)
    assert box.stop_button.text() == "Stop"
    versions = study.model_versions()
    assert versions == ["v001", "v002"]
    info = json.loads(study.model_info_path("v002").read_text())
    assert info["stopped_early"] is True
    assert info["parent"] == "v001"
    # offered, not imposed: the old panel made v002 current here (and Next case used it)
    assert Study.open(tiny_study).current_model == "v001"
    assert panel.selected_model().version == "v001"
    offer = panel.offer_box
    assert offer.isVisibleTo(panel) and "Stopped early" in offer.offer_text.text()
    assert offer.adopt_button.text() == "Adopt v002"
    assert panel.loss_curve.series("total")
    offer.adopt_button.click()
    _wait(qtbot, panel, "_finetune_worker", timeout=120_000)  # the ranking refresh
    assert Study.open(tiny_study).current_model == "v002" and not offer.isVisibleTo(panel)
    assert panel.selected_model().version == "v002" and panel.model_combo.currentIndex() == 2
    assert "v002" in box.start_model.text()  # the fine-tune starts from the Segment model
    assert box.start_model.text().endswith(", the Segment model")  # not two bracket groups in a row

    # Segment again with the new version
    panel.segment()
    _wait(qtbot, panel, "_segment_worker")
    assert panel.session.outcomes[case].model_version == "v002"

    # Roll back to v001
    for row in range(panel.versions_list.count()):
        if panel.versions_list.item(row).data(256) == "v001":  # Qt.UserRole
            panel.versions_list.setCurrentRow(row)
    panel.use_selected_version()
    assert Study.open(tiny_study).current_model == "v001"
    said = panel.versions_box.status.text()
    assert "now using <b>v001</b>" in said and "was v002" in said
    assert panel.model_combo.currentIndex() == 1
    _wait(qtbot, panel, "_finetune_worker", timeout=120_000)  # the ranking refresh with v001
    assert "ranking refreshed" in panel.finetune_status.text() and "v001" in panel.finetune_status.text()


def test_moving_between_cases_keeps_a_draft(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel, first = _segmented(viewer, qtbot, tiny_study, 0)
    seg = viewer.layers[first + SEGMENTATION_SUFFIX]
    edited = np.array(seg.data)
    edited[2:5, 3:9, 3:9] = 1 - edited[2:5, 3:9, 3:9]
    seg.data = edited
    other = next(c for c in panel.study.cases() if c != first)
    panel.open_case(other)
    assert panel.case == other
    assert first not in viewer.layers
    draft = panel.study.read_draft(first)
    assert draft is not None
    assert np.array_equal(draft.array, layer_io.layer_data_to_canonical(edited))
    panel.open_case(first)  # the draft comes back
    assert np.array_equal(viewer.layers[first + SEGMENTATION_SUFFIX].data, edited)


def test_clear_messages_for_bad_actions(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    # no image at all
    panel.segment()
    assert "no image layer" in panel.segment_status.text()
    # an RGB image cannot be segmented
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), rgb=True, name="photo")
    panel.image_combo.setCurrentText("photo")
    panel.segment()
    assert "RGB" in panel.segment_status.text()
    # a 2D image
    viewer.add_image(np.zeros((16, 16), np.float32), name="slice")
    panel.image_combo.setCurrentText("slice")
    panel.segment()
    assert "3D" in panel.segment_status.text()
    # accept without a study
    viewer.add_image(np.random.rand(16, 32, 32).astype(np.float32), name="loose")
    viewer.add_labels(np.zeros((16, 32, 32), np.uint8), name="loose" + SEGMENTATION_SUFFIX)
    panel.image_combo.setCurrentText("loose")
    panel.accept()
    assert "not part of an open study" in panel.accept_status.text()
    # an empty label in a study
    panel.open_study(tiny_study)
    case = panel.case
    image = viewer.layers[case]
    viewer.add_labels(np.zeros(image.data.shape, np.uint8), name=case + SEGMENTATION_SUFFIX,
                      scale=image.scale, metadata=image.metadata)
    panel.image_combo.setCurrentText(case)
    panel.accept()
    assert "empty label" in panel.accept_status.text()
    # fine-tune without any accepted case
    panel.finetune()
    assert "accept at least one label" in panel.finetune_status.text()


def test_closing_napari_during_finetune_stops_cleanly(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    viewer.window.add_dock_widget(panel)
    panel.open_study(tiny_study)
    study = panel.study
    accept_box(study)
    panel.budget_unit.setCurrentText("iterations")
    panel.budget_spin.setValue(10_000)
    stepped = []  # a training step, not just a stage before the first one (a stop there writes nothing)
    panel.session.finetuning.stepped.connect(lambda *args: stepped.append(True))
    panel.finetune()
    qtbot.waitUntil(lambda: bool(stepped), timeout=120_000)
    viewer.close()  # closes the main window, as its close button does: it waits for the worker
    assert panel.session.finetuning.stop_requested
    reopened = Study.open(tiny_study)
    assert reopened.model_versions() == ["v001", "v002"]
    assert json.loads(reopened.model_info_path("v002").read_text())["stopped_early"] is True
    leftovers = [p.name for p in reopened.models_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_accept_on_a_read_only_study_keeps_the_edit(make_napari_viewer, qtbot, tiny_study, monkeypatch):
    from napari_uamc.errors import StudyError

    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study)
    case = panel.case
    painted = _paint_box(viewer, case, np.s_[4:8, 10:20, 10:20])

    def refuse(*args, **kwargs):
        raise StudyError(f"cannot write the label of {case}: the study folder is read-only")

    monkeypatch.setattr(panel.study, "accept", refuse)
    panel.accept()
    assert "read-only" in panel.accept_status.text()
    assert np.array_equal(viewer.layers[case + SEGMENTATION_SUFFIX].data, painted)
    assert panel.study.label_path(case) is None


def test_sample_study_layer_opens_its_study(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UAMC_CACHE", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    viewer.open_sample("napari-uamc", "phantom_study")
    assert panel.study is not None
    assert panel.case in panel.study.cases()
    assert panel.image_combo.currentText() == panel.case
    assert panel.case_table.rowCount() == len(panel.study.cases())


def test_finetune_then_ranking_refresh(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study)
    study = panel.study
    accept_box(study)
    panel.mc_spin.setValue(1)
    panel.budget_unit.setCurrentText("iterations")
    panel.budget_spin.setValue(2)
    assert panel.finetune_method.currentIndex() == 0  # the measured default
    panel.finetune_method.setCurrentText("UG-MCL consistency (slower steps)")
    panel.finetune()
    qtbot.waitUntil(lambda: panel.session.finetuning.offer is not None, timeout=180_000)
    qtbot.waitUntil(lambda: panel._finetune_worker is None, timeout=10_000)
    assert "on 3 of 3, the first that Next case would open" in panel.offer_box.offer_text.text()
    assert not panel.finetune_stage.text()  # the offer box has the comparison; no second copy below
    assert Study.open(tiny_study).current_model == "v001"
    panel.offer_box.adopt_button.click()
    qtbot.waitUntil(lambda: "ranking refreshed" in panel.finetune_status.text(), timeout=180_000)
    qtbot.waitUntil(lambda: panel._finetune_worker is None, timeout=10_000)
    reopened = Study.open(tiny_study)
    assert reopened.current_model == "v002"
    info = json.loads(reopened.model_info_path("v002").read_text())
    assert sorted(info["settings"]["terms"]) == ["ctc", "dis", "itc", "seg"]
    for other in reopened.unlabeled_cases():
        info = reopened.case_info(other)
        assert info.has_prediction and info.uncertainty is not None
        assert info.prediction_model == "v002"


def test_opening_another_study_keeps_the_draft_of_the_first(make_napari_viewer, qtbot, tiny_study, tmp_path):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study)
    first = panel.case
    painted = _paint_box(viewer, first, np.s_[3:6, 5:12, 5:12])
    other = write_phantom_study(tmp_path / "other", cases=1, seed=9, shape=SHAPE, labeled=0)
    panel.open_study(other)
    assert panel.case in Study.open(other).cases()
    assert first not in viewer.layers
    _assert_draft_is(Study.open(tiny_study), first, painted)


def test_region_click_moves_the_viewer(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel, _ = _segmented(viewer, qtbot, tiny_study, 2)
    region_items = [panel.regions_list.item(i) for i in range(panel.regions_list.count())]
    region_items = [item for item in region_items if item.data(256) is not None]
    assert region_items, "the tiny model's seeded MC dropout gives uncertain regions on this phantom"
    region = region_items[0].data(256)
    camera = viewer.scene.camera
    viewer.reset_view()
    fitted = (tuple(camera.center), camera.zoom)
    panel.regions_list.itemClicked.emit(region_items[0])  # a click
    image = viewer.layers[panel.case]
    shape = layer_io.layer_data_to_canonical(image.data).shape
    expected_slice = layer_io.displayed_index(region.focus, shape)[0]
    assert viewer.dims.point[0] == pytest.approx(expected_slice * image.scale[0], abs=image.scale[0])
    # the whole scan stays on the canvas: the view is kept (centring on the region's voxel pushed
    # part of the scan behind the panel); zoomed in elsewhere, the click fits the scan again
    assert (tuple(camera.center), camera.zoom) == fitted
    camera.zoom, camera.center = fitted[1] * 8, (0.0, -1000.0, -1000.0)  # far from the scan
    panel.regions_list.itemClicked.emit(region_items[0])
    assert camera.zoom == pytest.approx(fitted[1]) and camera.center == pytest.approx(fitted[0])
    # one unit of volume in the panel (mL, as the segmented volume), and the focus where napari's
    # status bar shows it under the pointer: world coordinates in mm (a try-out found voxel indices
    # there that the status bar never shows)
    text = region_items[0].text()
    assert " mL" in text
    shown = layer_io.displayed_index(region.focus, shape)
    world = [index * scale for index, scale in zip(shown, image.scale)]
    assert f"slice {shown[0]}  at {', '.join(f'{v:.1f}' for v in world)} mm" in text
    assert list(image.world_to_data(world)) == pytest.approx(list(shown))  # the pointer there is on that voxel
    assert image.data[shown] == layer_io.layer_data_to_canonical(image.data)[region.focus]
    assert f"voxel [slice, row, column] {list(shown)}" in region_items[0].toolTip()
    # the spot is marked: one ring at the focus voxel's world point, never the active layer
    marker = viewer.layers[panel.case + " region focus"]
    assert marker.data.tolist() == [pytest.approx(world)] and not marker.editable
    assert viewer.layers.selection.active is viewer.layers[panel.case + SEGMENTATION_SUFFIX]
    assert list(image.world_to_data(marker.data[0])) == pytest.approx(list(shown))  # on the image's grid
    other = region_items[-1].data(256)
    panel.regions_list.itemClicked.emit(region_items[-1])  # another row: the same ring moves
    assert marker.data.tolist() == [pytest.approx(panel.session.focus_world(other))]
    assert sum(layer.name.endswith(" region focus") for layer in viewer.layers) == 1
    panel.open_case(next(case for case in panel.study.cases() if case != panel.case))
    qtbot.waitUntil(lambda: panel.case is not None and not panel.session.opening, timeout=30_000)
    assert not any(layer.name.endswith(" region focus") for layer in viewer.layers)  # gone with its case


def test_a_reopened_case_lists_where_to_correct_from_its_saved_prediction(make_napari_viewer, qtbot, tiny_study):
    """Reopening a segmented case (another case in between, or after restarting napari): the saved
    maps are enough for the regions list and the disagreement layer."""
    viewer = make_napari_viewer()
    panel, case = _segmented(viewer, qtbot, tiny_study, 2)
    listed = [panel.regions_list.item(i).text() for i in range(panel.regions_list.count())]
    assert listed and panel.regions_list.item(0).data(256) is not None
    panel.open_case(next(other for other in panel.study.cases() if other != case))
    assert panel.regions_list.count() == 0 or panel.regions_list.item(0).data(256) is None
    panel.open_case(case)
    relisted = [panel.regions_list.item(i).text() for i in range(panel.regions_list.count())]
    # the same regions (the saved map is rounded to 1e-4 nats, which may move a tie of the focus)
    assert [text.split("slice")[0] for text in relisted] == [text.split("slice")[0] for text in listed]
    assert panel.regions_box.disagreement_note.isHidden()
    panel.disagreement_check.setChecked(True)
    assert case + DISAGREEMENT_SUFFIX in viewer.layers
    assert viewer.layers.selection.active is viewer.layers[case + SEGMENTATION_SUFFIX]


def test_the_3d_view_shows_a_surface_made_in_the_background_and_closes_stale_toasts(
        make_napari_viewer, qtbot, tiny_study):
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    viewer = make_napari_viewer()
    panel, case = _segmented(viewer, qtbot, tiny_study, 1)
    seg = viewer.layers[case + SEGMENTATION_SUFFIX]
    painted = np.zeros_like(seg.data)
    painted[4:10, 8:20, 8:20] = 1  # whatever the tiny model predicted: a surface to make
    seg.data = painted
    toast = NapariQtNotification("about the 2D view", severity="info")
    toast.show()
    toast.timer_stop()  # as napari does for a toast whose window is not the active one: it stays
    assert toast.isVisible()
    viewer.dims.ndisplay = 3
    assert not toast.isVisible()
    qtbot.waitUntil(lambda: case + " surface" in viewer.layers, timeout=30_000)  # made in a worker
    surface = viewer.layers[case + " surface"]
    assert surface.visible and not seg.visible
    assert np.allclose(surface.scale, seg.scale) and np.allclose(surface.translate, seg.translate)
    # the hidden labels are not the painting target in 3D: the MRI is, and 2D gives them back
    assert viewer.layers.selection.active is viewer.layers[case]
    viewer.dims.ndisplay = 2
    assert seg.visible and not surface.visible
    assert viewer.layers.selection.active is seg
    # hidden in 2D, the surface is not left on top of the layer list: just below its segmentation
    assert list(viewer.layers).index(surface) == list(viewer.layers).index(seg) - 1


def test_2d_after_3d_gives_the_segmentation_back_with_the_viewer_button(make_napari_viewer, qtbot, tiny_study):
    """2D -> 3D -> 2D with napari's own 2D/3D button, after reopening a segmented case and after
    Next case in 3D: the segmentation is the painting target again in 2D; a layer the person
    picked in 3D is kept."""
    viewer = make_napari_viewer(show=True)
    panel, case = _segmented(viewer, qtbot, tiny_study, 1)
    button = viewer.window._qt_viewer.viewerButtons.ndisplayButton
    other = next(name for name in panel.study.cases() if name != case)

    def reopen(name):
        panel.open_case(name)
        qtbot.waitUntil(lambda: panel.case == name and not panel.session.opening, timeout=30_000)

    def round_trip():
        button.click()
        assert viewer.dims.ndisplay == 3
        qtbot.waitUntil(lambda: case + " surface" in viewer.layers, timeout=30_000)
        qtbot.wait(50)  # the surface's worker returned and was put
        assert viewer.layers.selection.active is viewer.layers[case]
        button.click()
        assert viewer.dims.ndisplay == 2
        assert viewer.layers.selection.active is viewer.layers[case + SEGMENTATION_SUFFIX]

    reopen(other)
    reopen(case)  # its saved prediction, layers taken over
    round_trip()
    round_trip()
    button.click()
    reopen(other)
    reopen(case)  # opened while the view is 3D
    button.click()
    assert viewer.layers.selection.active is viewer.layers[case + SEGMENTATION_SUFFIX]
    button.click()
    viewer.layers.selection.active = viewer.layers[case + " SDF"]  # the person's choice in 3D ...
    viewer.layers.selection.active = viewer.layers[case]  # ... then back to the MRI: still the panel's
    button.click()
    assert viewer.layers.selection.active is viewer.layers[case + SEGMENTATION_SUFFIX]
    button.click()
    own = viewer.add_points(name="my points")  # a layer of the person's own, picked in 3D: kept
    button.click()
    assert viewer.layers.selection.active is own


def test_create_study_from_layers_and_restore(make_napari_viewer, qtbot, tmp_path):
    from napari_uamc.data.phantoms import make_phantom
    from napari_uamc.data.volume import Volume

    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    for seed in (1, 2):
        case = make_phantom(seed, shape=SHAPE)
        volume = Volume(case.image, case.affine, name=f"scan{seed}")
        data, kwargs, _ = layer_io.image_layer_tuple(volume, name=f"scan{seed}")
        viewer.add_image(data, **kwargs)
    panel.create_study_from_layers(tmp_path / "new")
    assert panel.study is not None
    assert panel.study.cases() == ["scan1", "scan2"]
    panel.open_case("scan1")
    first = _paint_box(viewer, "scan1", np.s_[2:6, 4:10, 4:10])
    panel.image_combo.setCurrentText("scan1")
    panel.accept()
    # the first label is the current one, not an earlier one: nothing listed, nothing to restore
    assert panel.history_list.count() == 0 and not panel.accept_box.restore_button.isEnabled()
    second = first.copy()
    second[2:6, 4:6, 4:6] = 0
    viewer.layers["scan1" + SEGMENTATION_SUFFIX].data = second
    panel.accept()
    assert panel.history_list.count() == 1
    assert not panel.accept_box.restore_button.isEnabled()  # listed, but not selected yet
    panel.history_list.setCurrentRow(0)
    assert panel.accept_box.restore_button.isEnabled()
    panel.restore_selected()
    assert np.array_equal(panel.study.read_label("scan1").array, layer_io.layer_data_to_canonical(first))
    assert np.array_equal(viewer.layers["scan1" + SEGMENTATION_SUFFIX].data, first)


def test_bad_layers_and_models(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study)
    # a 4D series
    viewer.add_image(np.zeros((3, 16, 32, 32), np.float32), name="series")
    panel.image_combo.setCurrentText("series")
    panel.segment()
    assert "4D series of 3 volumes" in panel.segment_status.text()
    # a Labels layer that does not match its image
    case = panel.case
    panel.image_combo.setCurrentText(case)
    viewer.add_labels(np.ones((4, 4, 4), np.uint8), name=case + SEGMENTATION_SUFFIX)
    panel.accept()
    assert "shape" in panel.accept_status.text()
    # a model with the wrong number of input channels
    model = DualTaskVNet(in_channels=2, width=2)
    meta = ModelMeta.for_model(model, patch=SHAPE)
    study = panel.study
    save_checkpoint(study.model_path("v002"), model, meta)
    panel.session.refresh_models()
    panel.model_combo.setCurrentIndex(panel.model_combo.count() - 1)
    assert panel.selected_model().version == "v002"
    _wait(qtbot, panel, "_finetune_worker")  # the ranking the new model starts fails too: its report first
    panel.segment()
    _wait(qtbot, panel, "_segment_worker")
    assert "channel" in panel.segment_status.text()


def test_a_minutes_budget_shows_elapsed_and_remaining_time(make_napari_viewer):
    from napari_uamc.engine.training import StepReport

    panel = UamcPanel(make_napari_viewer())
    tuning = panel.session.finetuning
    tuning.budget_seconds = 180.0
    tuning.clock = lambda: 100.0  # a fixed clock: 4 steps of 0.5 s done when the first report comes
    report = StepReport(iteration=4, total=100_000, losses={"total": 0.5}, lr=0.001, consistency_weight=0.0,
                        threshold=None, mask_fraction=None, seconds_per_iteration=0.5, eta_seconds=170.0)
    tuning.on_step(report)
    assert panel.finetune_progress.maximum() == 180  # seconds, not the iteration cap
    # they agree, and say it is training time (the whole run takes longer)
    assert "iteration 4, 2 s of 180 s of training, about 178 s of training left" in panel.finetune_status.text()
    assert "100000" not in panel.finetune_status.text()
    assert panel.finetune_box.budget_label.text() == "Training budget"
    assert "whole run takes longer" in panel.finetune_box.budget_label.toolTip()
    assert panel.budget_spin.toolTip() == panel.finetune_box.budget_label.toolTip()
    tuning.budget_seconds = None  # an iterations budget: iterations
    tuning.on_step(report)
    assert panel.finetune_progress.maximum() == 100_000 and "iteration 4/100000" in panel.finetune_status.text()


def test_after_training_the_bar_is_busy_and_the_status_names_the_stage(make_napari_viewer):
    """Clinician try-out: a full bar and 'iteration 3/3, about 0 s left' for 20-30 s of BatchNorm
    recalibration, scoring, writing and comparing."""
    from napari_uamc.engine.training import StepReport

    panel = UamcPanel(make_napari_viewer())
    tuning = panel.session.finetuning
    tuning.clock = lambda: 100.0
    bar = panel.finetune_progress

    def report(iteration):
        return StepReport(iteration=iteration, total=3, losses={"total": 0.5}, lr=0.001, consistency_weight=0.0,
                          threshold=None, mask_fraction=None, seconds_per_iteration=8.0, eta_seconds=0.0)

    tuning.on_step(report(2))
    assert (bar.minimum(), bar.maximum(), bar.value()) == (0, 3, 2)
    tuning.on_step(report(3))
    assert (bar.minimum(), bar.maximum()) == (0, 0)  # Qt's busy bar: no "100 %"
    tuning.on_message("recalibrating BatchNorm statistics on the study's images")
    assert panel.finetune_status.text().endswith("Now recalibrating BatchNorm…")
    assert "0 s left" not in panel.finetune_status.text() and (bar.minimum(), bar.maximum()) == (0, 0)
    assert not panel.finetune_stage.isVisibleTo(panel)  # the status says the stage, once
    tuning.on_message("writing model v002")
    tuning.on_progress(2, 3)
    assert (bar.maximum(), bar.value()) == (3, 2)
    assert panel.finetune_status.text().endswith("Now comparing v002 with the model in use on 3 cases: 2 of 3 done…")


def test_an_offer_that_agrees_less_makes_discard_the_default(make_napari_viewer):
    from napari_uamc._napari.finetuning import Offer

    panel = UamcPanel(make_napari_viewer())
    box, tuning = panel.offer_box, panel.session.finetuning
    tuning.set_offer(Offer("v001", "default", 3, False, before={"a": 0.999}, after={"a": 0.987}))
    assert box.discard_button.isDefault() and box.discard_button.font().bold()
    assert not box.adopt_button.isDefault() and not box.adopt_button.font().bold()
    assert box.adopt_button.isEnabled() and box.discard_button.isEnabled()  # both stay available
    assert "v001 agrees less with your accepted labels than default" in box.offer_text.text()
    tuning.set_offer(Offer("v002", "default", 200, False, before={"a": 0.90}, after={"a": 0.95}))
    assert not box.discard_button.isDefault() and not box.adopt_button.isDefault()
    assert not box.discard_button.font().bold() and "agrees less" not in box.offer_text.text()
    tuning.set_offer(Offer("v003", "default", 2, True, before={"a": 0.90}))  # stopped very early
    assert box.discard_button.isDefault() and "barely trained" in box.offer_text.text()


def _flip_box(layer, box):
    """Paint ``box`` of a Labels layer with the opposite of what is there (differs from any prediction)."""
    data = np.array(layer.data)
    data[box] = 1 - np.minimum(data[box], 1)
    layer.data = data
    return data


def test_segment_keeps_what_was_painted_as_a_draft(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel, case = _segmented(viewer, qtbot, tiny_study, 0)
    painted = _flip_box(viewer.layers[case + SEGMENTATION_SUFFIX], np.s_[2:6, 4:12, 4:12])
    panel.segment()  # again: the new prediction must not swallow the painted voxels
    _wait(qtbot, panel, "_segment_worker")
    _assert_draft_is(panel.study, case, painted)
    assert "draft" in panel.accept_status.text()
    assert panel.history_list.item(0).text().startswith("draft")
    panel.history_list.setCurrentRow(0)
    panel.restore_selected()  # the draft comes back on screen, not accepted
    assert np.array_equal(viewer.layers[case + SEGMENTATION_SUFFIX].data, painted)
    assert panel.study.label_path(case) is None


def test_helper_layers_never_take_the_painting(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study)
    case = panel.case
    panel.mc_spin.setValue(1)
    panel.disagreement_check.setChecked(True)  # before Segment: the layer comes with the result
    panel.segment()
    _wait(qtbot, panel, "_segment_worker")
    seg = viewer.layers[case + SEGMENTATION_SUFFIX]
    assert case + DISAGREEMENT_SUFFIX in viewer.layers
    assert viewer.layers.selection.active is seg
    panel.disagreement_check.setChecked(False)
    panel.disagreement_check.setChecked(True)  # after Segment
    assert case + DISAGREEMENT_SUFFIX in viewer.layers
    assert viewer.layers.selection.active is seg
    panel.show_changes()
    assert viewer.layers.selection.active is seg


def test_next_case_keeps_the_draft(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study)
    first = panel.case
    painted = _paint_box(viewer, first, np.s_[3:6, 5:12, 5:12])
    panel.next_case_button.click()  # the draft is kept at once, the next case's files read in a worker
    qtbot.waitUntil(lambda: not panel.session.opening and panel.case is not None, timeout=30_000)
    assert panel.case != first
    _assert_draft_is(panel.study, first, painted)


def _selected_case(panel):
    rows = panel.case_table.selectionModel().selectedRows()
    return [panel.case_table.item(index.row(), 0).text() for index in rows]


def test_the_case_tables_selection_follows_the_open_case(make_napari_viewer, qtbot, tiny_study, tmp_path):
    """After Next case the selected row stayed on the case left, so Open case reopened it (try-out)."""
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study)
    qtbot.waitUntil(lambda: not panel.session.opening and panel.case is not None, timeout=30_000)
    first = panel.case
    assert _selected_case(panel) == [first]
    panel.next_case_button.click()
    qtbot.waitUntil(lambda: not panel.session.opening and panel.case not in (None, first), timeout=30_000)
    second = panel.case
    assert _selected_case(panel) == [second]
    panel.open_case_button.click()  # opens the case on screen again, not the one left
    qtbot.waitUntil(lambda: not panel.session.opening and panel.case is not None, timeout=30_000)
    assert panel.case == second
    # a row the person picks stays picked while the study's scores change
    other = next(case for case in panel.study.cases() if case not in (first, second))
    row = [panel.case_table.item(r, 0).text() for r in range(panel.case_table.rowCount())].index(other)
    panel.case_table.selectRow(row)
    panel.session.study_changed.emit()
    assert _selected_case(panel) == [other]
    panel.open_case_button.click()
    qtbot.waitUntil(lambda: not panel.session.opening and panel.case == other, timeout=30_000)
    assert _selected_case(panel) == [other]
    panel.session.close_case()
    panel.open_study(write_phantom_study(tmp_path / "two", cases=2, seed=9, shape=SHAPE, labeled=0),
                     open_first_case=False)
    assert _selected_case(panel) == []  # no row of another study stays picked


def test_closing_napari_keeps_the_draft(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    viewer.window.add_dock_widget(panel)
    panel.open_study(tiny_study)
    case = panel.case
    panel.mc_spin.setValue(0)
    panel.segment()
    _wait(qtbot, panel, "_segment_worker")
    painted = _flip_box(viewer.layers[case + SEGMENTATION_SUFFIX], np.s_[1:4, 2:9, 2:9])
    viewer.close()  # napari removes every layer, then closes its window
    _assert_draft_is(Study.open(tiny_study), case, painted)


def test_closing_the_main_window_keeps_the_draft(make_napari_viewer, qtbot, tiny_study):
    from qtpy.QtWidgets import QMainWindow

    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    viewer.window.add_dock_widget(panel)
    panel.open_study(tiny_study)
    case = panel.case
    painted = _paint_box(viewer, case, np.s_[2:5, 6:11, 6:11])
    window = panel.window()
    assert isinstance(window, QMainWindow)
    window.close()  # the window's close button: the layers stay, the panel hears the Close
    _assert_draft_is(Study.open(tiny_study), case, painted)


def test_a_case_opens_in_the_background_and_its_layers_come_in_turns(make_napari_viewer, qtbot, tiny_study):
    """The event-loop budget (issue 12 part 9): the disk is read in a worker, and each layer is
    put on screen in its own event-loop turn, so napari never waits for the sum."""
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study)  # the script method waits for the case
    panel.mc_spin.setValue(1)
    panel.segment()
    _wait(qtbot, panel, "_segment_worker")
    first = panel.case
    other = next(case for case in panel.study.cases() if case != first)
    turns = []
    session = panel.session
    defer = session.runner.defer
    session.runner.defer = lambda function: (turns.append(function), defer(function))
    session.open_case(other)  # as the Open case button: returns before the files are read
    assert session.opening and panel.case is None
    qtbot.waitUntil(lambda: not session.opening, timeout=30_000)
    assert panel.case == other and other in viewer.layers
    assert len(turns) >= 1  # at least the image; the maps and the segmentation each in their own turn
    turns.clear()
    session.open_case(first)  # a segmented case: image, uncertainty, SDF, segmentation
    qtbot.waitUntil(lambda: not session.opening, timeout=30_000)
    # taking over the layers of the case left, removing what this case lacks, the image, three layers
    assert len(turns) == 6
    assert first + SEGMENTATION_SUFFIX in viewer.layers and first + UNCERTAINTY_SUFFIX in viewer.layers



def test_next_case_refills_the_layers_once_the_draft_is_on_disk(make_napari_viewer, qtbot, tiny_study):
    """Issue 12 part 9: the next case takes over the layers (no napari layer added or rebuilt), and
    the draft of the case left is written in a worker but on disk before its layer is refilled."""
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study)
    panel.mc_spin.setValue(1)
    for _ in range(2):  # two segmented cases, so the second has every layer the first has
        panel.segment()
        _wait(qtbot, panel, "_segment_worker")
        if _ == 0:
            first = panel.case
            panel.open_next_case()
    second = panel.case
    layers_before = {layer.name[len(second):]: layer for layer in viewer.layers}
    painted = _flip_box(viewer.layers[second + SEGMENTATION_SUFFIX], np.s_[2:6, 4:12, 4:12])
    session = panel.session
    draft_at_refill = []
    put = session.layers.put_segmentation
    session.layers.put_segmentation = lambda *a, **k: (
        draft_at_refill.append(Study.open(tiny_study).read_draft(second)), put(*a, **k))[1]
    session.open_case(first)
    assert not viewer.layers[second + SEGMENTATION_SUFFIX].editable  # no stroke while it is being left
    qtbot.waitUntil(lambda: not session.opening, timeout=30_000)
    assert draft_at_refill and np.array_equal(draft_at_refill[0].array, layer_io.layer_data_to_canonical(painted))
    for suffix, layer in layers_before.items():  # the same layer objects, now the first case's
        assert viewer.layers[first + suffix] is layer
    image = Study.open(tiny_study).read_image(first)
    shown = viewer.layers[first]
    assert np.array_equal(layer_io.layer_data_to_canonical(shown.data), image.array)
    assert np.allclose(shown.scale, layer_io.display_scale(image.spacing)) and np.allclose(shown.translate, 0)
    assert layer_io.uamc_metadata(shown)["case"] == first
    assert viewer.layers[first + SEGMENTATION_SUFFIX].editable
    assert viewer.layers.selection.active is viewer.layers[first + SEGMENTATION_SUFFIX]


def test_after_shutdown_late_job_reports_reach_no_widget(make_napari_viewer):
    """The window's Close shuts the session down; a job that reports after that (a fine-tune
    failing while napari closes) must not reach the section widgets Qt is deleting."""
    panel = UamcPanel(make_napari_viewer())
    session = panel.session
    assert len(session.status) > 0 and len(session.notice) > 0
    panel.shutdown()
    assert len(session.status) == 0 and len(session.notice) == 0
    session.say("finetune", "a late failure", "error", notify=True)  # reaches no one, raises nothing


def _in_view(widget) -> bool:
    """Whether all of ``widget`` shows: on screen, not scrolled away or clipped by the panel."""
    from qtpy.QtCore import QPoint, QRect
    from qtpy.QtWidgets import QScrollArea

    if not widget.isVisible() or widget.visibleRegion().isEmpty():
        return False
    visible = widget.visibleRegion().boundingRect()
    if visible.size() != widget.size():  # partly clipped by an ancestor (the scroll area's viewport)
        return False
    parent = widget.parentWidget()
    while parent is not None and not isinstance(parent, QScrollArea):
        parent = parent.parentWidget()
    if parent is None:
        return True
    viewport = parent.viewport()
    return viewport.rect().contains(QRect(widget.mapTo(viewport, QPoint(0, 0)), widget.size()))


def test_the_offer_and_the_version_rows_are_in_view_at_a_window_height_of_1000_px(
    make_napari_viewer, qtbot, tiny_study, write_unreviewed
):
    """Clinician try-out: at 1000 px the offer's Adopt / Discard were below the fold and the
    version rows were cut off. The offer is pinned above the scrolling sections; rows wrap."""
    from qtpy.QtWidgets import QScrollArea

    write_unreviewed(tiny_study)
    viewer = make_napari_viewer(show=True)
    panel = UamcPanel(viewer)
    viewer.window.add_dock_widget(panel)
    window = panel.window()
    window.resize(1400, 1000)
    qtbot.waitUntil(lambda: window.height() <= 1000, timeout=5_000)
    panel.open_study(tiny_study)  # v002 was written while napari was closed: offered again
    offer, scroll = panel.offer_box, panel.findChild(QScrollArea)
    assert offer.isVisibleTo(panel) and offer.adopt_button.text() == "Adopt v002"
    for target in (panel.study_box, panel.versions_box):  # wherever the person has scrolled
        scroll.ensureWidgetVisible(target)
        qtbot.waitUntil(lambda: _in_view(offer.adopt_button) and _in_view(offer.discard_button), timeout=5_000)
    assert window.height() <= 1000 and panel.mapTo(window, panel.rect().bottomLeft()).y() <= window.height()
    rows = panel.versions_list
    qtbot.waitUntil(lambda: _in_view(rows), timeout=5_000)  # scrolled to Model versions above
    for row in range(rows.count()):  # each row whole: wrapped, not cut off on the right or below
        assert rows.viewport().rect().contains(rows.visualItemRect(rows.item(row))), rows.item(row).text()
    assert "offered: not adopted" in rows.item(0).text()


def test_picking_an_unreviewed_version_in_the_model_list_offers_it(make_napari_viewer, tiny_study, write_unreviewed):
    write_unreviewed(tiny_study)
    panel = UamcPanel(make_napari_viewer())
    panel.open_study(tiny_study, open_first_case=False)
    panel.session.finetuning.set_offer(None)
    assert not panel.offer_box.isVisibleTo(panel)
    panel.model_combo.setCurrentIndex(2)  # v002 (not reviewed)
    assert Study.open(tiny_study).current_model == "v001" and panel.model_combo.currentIndex() == 1
    assert panel.offer_box.isVisibleTo(panel) and panel.offer_box.adopt_button.text() == "Adopt v002"
    assert "not adopted yet" in panel.versions_box.status.text()


def test_the_case_table_ranks_the_unaccepted_cases_as_next_case_opens_them(make_napari_viewer, qtbot, tiny_study):
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.open_study(tiny_study, open_first_case=False)
    qtbot.waitUntil(lambda: not panel.session.opening, timeout=30_000)
    study = panel.study
    names = study.cases()
    for name, score in zip(names, (0.31, 0.2, 0.5)):
        study.set_uncertainty(name, score)
    assert accept_box(study) == names[0]  # accepted: its score shows, without a rank
    panel.session.study_changed.emit()
    shown = {panel.case_table.item(r, 0).text(): panel.case_table.item(r, 2).text()
             for r in range(panel.case_table.rowCount())}
    assert shown[names[2]] == "#1  0.500" and shown[names[1]] == "#2  0.200" and shown[names[0]] == "0.310"
    assert study.ranked_for_labeling()[0] == names[2] == panel.session.next_case()
    assert "Next case opens first" in panel.case_table.horizontalHeaderItem(2).toolTip()
