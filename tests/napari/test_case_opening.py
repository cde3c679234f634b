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


def test_a_case_opens_at_the_middle_slice_of_its_segmentation(session, tiny_study):
    """Next case opened at the previous case's slice number (64 of 87, try-out on real scans)."""
    from napari_uamc._napari.styling import SEGMENTATION_SUFFIX

    viewer = session.viewer
    session.open_study(tiny_study)
    first = session.case
    image = viewer.layers[first]
    assert viewer.dims.point[0] == pytest.approx((image.data.shape[0] // 2) * image.scale[0])  # no label
    session.segment()
    seg = viewer.layers[first + SEGMENTATION_SUFFIX]
    painted = np.zeros_like(seg.data)
    painted[1:4] = 1  # slices 1 to 3: the middle is slice 2
    seg.data = painted
    viewer.dims.point = (image.data.shape[0] - 1) * image.scale[0], *viewer.dims.point[1:]  # the last slice
    other = next(case for case in session.study.cases() if case != first)
    session.open_case(other)  # not segmented: the middle of its volume, not the slice left
    image = viewer.layers[other]
    assert viewer.dims.point[0] == pytest.approx((image.data.shape[0] // 2) * image.scale[0])
    session.open_case(first)  # its draft: the middle of what is painted
    assert viewer.dims.point[0] == pytest.approx(2 * viewer.layers[first].scale[0])


def test_the_middle_slice_comes_with_the_read_case_and_is_set_with_the_image(session, tiny_study):
    """Opening a case stalled napari up to 170 ms more than napari's own cost: its last turn scanned
    the whole label on the GUI thread and re-sliced every layer once more. The worker that reads the
    case finds the slice; the image's own turn puts the slider there, from that value alone."""
    from napari_uamc._napari.case_layers import middle_slice, read_case

    session.open_study(tiny_study, open_first_case=False)
    study = session.study
    case = study.cases()[0]
    shape = study.read_image(case).array.shape
    assert read_case(study, case).middle_slice == shape[2] // 2  # no label: the middle of the volume
    painted = np.zeros(shape, np.uint8)
    painted[:, :, 3:8] = 1  # canonical z = napari's slice: 3 to 7, the middle is 5
    study.save_draft(case, painted)
    files = read_case(study, case)  # as the worker reads it
    assert files.middle_slice == 5 == middle_slice(files.draft, files.volume)
    assert middle_slice(np.zeros(shape, np.uint8), files.volume) == shape[2] // 2  # an empty label
    files.middle_slice = 9  # not the label's middle: the GUI turn must not look at the label again
    viewer = session.viewer
    steps = session.layers.case_steps(files)
    steps[0]()  # the image's turn
    image = viewer.layers[case]
    assert viewer.dims.point[0] == pytest.approx(9 * image.scale[0])  # set there, with the image
    points = []
    viewer.dims.events.point.connect(lambda event: points.append(event.value))
    for step in steps[1:]:  # the maps and the segmentation: no turn moves the slider again
        step()
    assert case + " segmentation" in viewer.layers and points == []
    assert viewer.dims.point[0] == pytest.approx(9 * image.scale[0])
