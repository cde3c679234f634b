"""Preview on this case: the offered version's segmentation of the image on screen, before
Adopt / Discard (offer_preview.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from napari.components import ViewerModel  # noqa: E402

from napari_uamc._napari.offer_preview import SECTION  # noqa: E402
from napari_uamc._napari.panel import UamcPanel  # noqa: E402
from napari_uamc._napari.session import Session  # noqa: E402


@pytest.fixture
def session():
    made = Session(ViewerModel())
    yield made
    made.close()


def _offered_and_segmented(session, tiny_study, write_unreviewed):
    """v002 offered, a case open and segmented with v001; returns the case."""
    write_unreviewed(tiny_study)
    session.finetuning.refresh_after = False
    session.open_study(tiny_study)
    assert session.finetuning.offer is not None and session.case is not None
    session.segment()
    assert session.layers.segmentation(session.case) is not None
    return session.case


def test_a_preview_is_an_outline_on_the_images_grid_that_goes_on_discard(session, tiny_study, write_unreviewed):
    case = _offered_and_segmented(session, tiny_study, write_unreviewed)
    segmentation = session.layers.segmentation(case)
    active = session.viewer.layers.selection.active
    session.preview.start()
    name = f"{case} preview v002"
    layer = session.viewer.layers[name]
    np.testing.assert_allclose(layer.scale, segmentation.scale)
    np.testing.assert_allclose(layer.translate, segmentation.translate)
    np.testing.assert_allclose(layer.affine.affine_matrix, segmentation.affine.affine_matrix)
    assert layer.data.shape == segmentation.data.shape and not layer.editable and layer.contour
    assert session.viewer.layers.selection.active is active  # the segmentation stays the painting target
    line = session.texts[SECTION][0]
    assert line.startswith(f"Preview of v002 on {case}") and "Dice with the segmentation on screen " in line
    assert "accepted label" not in line  # the case has none
    # painting the compared segmentation afterwards: the line says its Dice is of the one before
    segmentation.paint((0, 0, 0), 1)
    edited = session.texts[SECTION][0]
    assert edited.startswith(line.removesuffix(".")) and "before your latest edits" in edited
    segmentation.paint((0, 0, 1), 1)  # said once
    assert session.texts[SECTION][0] == edited
    # in 3D an outline is a solid volume over the surface (try-out): hidden there, back in 2D
    session.viewer.dims.ndisplay = 3
    assert not layer.visible
    session.viewer.dims.ndisplay = 2
    assert layer.visible
    session.finetuning.discard()
    assert name not in session.viewer.layers and session.texts[SECTION][0] == ""


def test_a_preview_goes_when_the_case_changes_and_compares_with_the_accepted_label(
    session, tiny_study, write_unreviewed
):
    case = _offered_and_segmented(session, tiny_study, write_unreviewed)
    session.preview.start()
    assert f"{case} preview v002" in session.viewer.layers
    session.study.accept(case, np.asarray(session.layers.edited_canonical(case)), allow_empty=True)
    session.open_case(session.next_case())
    assert not any(" preview " in layer.name for layer in session.viewer.layers)
    session.open_case(case)
    session.preview.start()
    assert "with your accepted label " in session.texts[SECTION][0]


def test_a_preview_without_an_image_or_weights_says_why(session, tiny_study, write_unreviewed):
    write_unreviewed(tiny_study)
    session.open_study(tiny_study, open_first_case=False)
    session.preview.start()
    text, level = session.texts[SECTION]
    assert level == "error" and "no image layer to segment" in text
    session.open_case(session.study.cases()[0])
    session.study.model_path("v002").unlink()
    session.preview.start()
    text, level = session.texts[SECTION]
    assert level == "error" and "v002's weights are missing" in text
    assert not any(" preview " in layer.name for layer in session.viewer.layers)


def test_the_offer_boxs_preview_button_runs_in_the_background(make_napari_viewer, qtbot, tiny_study,
                                                              write_unreviewed):
    write_unreviewed(tiny_study)
    viewer = make_napari_viewer()
    panel = UamcPanel(viewer)
    panel.session.finetuning.refresh_after = False
    panel.open_study(tiny_study)
    qtbot.waitUntil(lambda: panel.session.case is not None and not panel.session.opening, timeout=60_000)
    box, case = panel.offer_box, panel.session.case
    box.preview_button.click()
    assert not box.preview_button.isEnabled()  # until it ends
    qtbot.waitUntil(lambda: box.preview_button.isEnabled(), timeout=60_000)
    assert f"{case} preview v002" in viewer.layers
    assert box.preview_line.text().count("Preview of v002") == 1
    box.discard_button.click()
    assert f"{case} preview v002" not in viewer.layers and not box.preview_line.isVisibleTo(box)
