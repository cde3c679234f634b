"""The ring that marks a *Where to correct* region's focus (``<image> region focus``), without Qt."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("torch")

from napari.components import ViewerModel  # noqa: E402

from napari_uamc._napari.session import Session  # noqa: E402
from napari_uamc._napari.styling import FOCUS_SUFFIX  # noqa: E402


@pytest.fixture
def session():
    made = Session(ViewerModel())
    made.mc_samples = 2
    yield made
    made.close()


def _rings(viewer, image):
    layer = viewer.layers[image + FOCUS_SUFFIX] if image + FOCUS_SUFFIX in viewer.layers else None
    return 0 if layer is None else len(layer.data)


def test_a_new_segment_takes_the_ring_of_an_earlier_region_click_away(session, tiny_study):
    """The ring stayed on a spot of the Segment before, which the new list of regions may not hold."""
    session.open_study(tiny_study)
    case, viewer = session.case, session.viewer
    session.segment()
    session.jump_to_region(SimpleNamespace(focus=(10, 12, 5)))  # a click in Where to correct
    assert _rings(viewer, case) == 1
    session.segment()
    assert _rings(viewer, case) == 0
    session.jump_to_region(SimpleNamespace(focus=(11, 12, 6)))  # the next click marks again
    assert _rings(viewer, case) == 1
    other = next(name for name in session.study.cases() if name != case)
    session.open_case(other)  # and another case takes it away with the case left
    assert session.case == other and not any(layer.name.endswith(FOCUS_SUFFIX) for layer in viewer.layers)
