"""Opening a study case without Qt (a napari ViewerModel, jobs run on the spot): napari's axes."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from napari.components import ViewerModel  # noqa: E402

from napari_uamc._napari.session import Session  # noqa: E402

NAPARI_LABELS = ("-3", "-2", "-1")  # napari's own axis labels of a 3D viewer


@pytest.fixture
def session():
    made = Session(ViewerModel())
    yield made
    made.close()


def test_a_study_case_names_the_axes_in_a_viewer_of_its_own(session, tiny_study):
    """The slider said '-3' (try-out shot s5a_next_case): it says 'slice' now."""
    viewer = session.viewer
    session.open_study(tiny_study)
    assert viewer.dims.axis_labels == ("slice", "row", "column")
    session.open_case(next(case for case in session.study.cases() if case != session.case))
    assert viewer.dims.axis_labels == ("slice", "row", "column")  # the next case too
    session.close_case()  # the viewer empty: napari would keep ('row', 'column') for the next layer
    viewer.add_image(np.zeros((4, 5, 6), np.float32), name="mine")
    assert viewer.dims.axis_labels == NAPARI_LABELS


def test_a_persons_own_layers_keep_their_axis_labels(session, tiny_study):
    viewer = session.viewer
    viewer.add_image(np.zeros((4, 5, 6), np.float32), name="mine")
    session.open_study(tiny_study)
    assert session.case is not None
    assert viewer.dims.axis_labels == NAPARI_LABELS  # not the panel's alone: napari's labels stay
    labelled = ViewerModel()
    labelled.add_image(np.zeros((4, 5, 6), np.float32), name="mine", axis_labels=("t", "y", "x"))
    other = Session(labelled)
    try:
        other.open_study(tiny_study)
        assert other.case is not None
        assert labelled.dims.axis_labels == ("t", "y", "x")  # a person's own labels are theirs
    finally:
        other.close()
