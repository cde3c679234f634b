"""CaseLayers without Qt: a napari ViewerModel (its canvas 800 x 600 pixels)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_uamc._napari.case_layers import CaseLayers


@pytest.fixture
def scan():
    """A viewer showing one 3D scan (40 slices of 200 x 120 voxels at 0.5 mm, 2 mm apart), fitted."""
    viewer = ViewerModel()
    layer = viewer.add_image(np.zeros((40, 200, 120), np.float32), scale=(2.0, 0.5, 0.5), name="scan")
    viewer.reset_view()
    layers = CaseLayers(viewer)
    yield viewer, layer, layers
    layers.close()


def _visible(viewer):
    """The world rectangle on the canvas: (row min, column min), (row max, column max)."""
    camera = viewer.scene.camera
    half = np.asarray(viewer.canvas.size, float) / (2 * camera.zoom)
    centre = np.asarray(camera.center[-2:], float)
    return centre - half, centre + half


def _scan_whole_in_view(viewer, layer):
    low, high = _visible(viewer)
    corner_low = np.asarray(layer.translate[-2:]) - 0.5 * np.asarray(layer.scale[-2:])
    corner_high = corner_low + np.asarray(layer.data.shape[-2:]) * np.asarray(layer.scale[-2:])
    return bool(np.all(low <= corner_low + 1e-6) and np.all(corner_high <= high + 1e-6))


def test_a_jump_moves_the_slider_and_keeps_the_view_when_the_point_is_on_the_canvas(scan):
    viewer, layer, layers = scan
    camera = viewer.scene.camera
    before = (tuple(camera.center), camera.zoom)
    assert _scan_whole_in_view(viewer, layer)
    # a voxel near the scan's top left corner: centring on it put half the scan off the canvas (the try-out)
    layers.jump_to(layers.world_point(layer, (110, 190, 31)))
    assert viewer.dims.point[0] == pytest.approx(31 * 2.0)  # its slice
    assert (tuple(camera.center), camera.zoom) == before  # nothing else moved
    assert _scan_whole_in_view(viewer, layer)


def test_a_jump_to_a_point_off_the_canvas_fits_the_scan(scan):
    viewer, layer, layers = scan
    camera = viewer.scene.camera
    camera.zoom *= 6  # a person zoomed in on the scan's top left corner
    camera.center = (0.0, 5.0, 5.0)
    layers.jump_to(layers.world_point(layer, (5, 5, 12)))  # the bottom right corner
    assert viewer.dims.point[0] == pytest.approx(12 * 2.0)
    assert _scan_whole_in_view(viewer, layer)  # the whole scan, not the point centred at that zoom
    low, high = _visible(viewer)
    assert np.all(high - low <= 1.2 * np.array([100.0, 100.0 * 800 / 600]))  # fitted, not zoomed out
    # the point is on the canvas now: a second jump keeps this view
    fitted = (tuple(camera.center), camera.zoom)
    layers.jump_to(layers.world_point(layer, (110, 190, 3)))
    assert (tuple(camera.center), camera.zoom) == fitted and viewer.dims.point[0] == pytest.approx(6.0)


def test_a_jump_in_3d_moves_the_slider_and_leaves_the_camera(scan):
    viewer, layer, layers = scan
    viewer.dims.ndisplay = 3
    camera = viewer.scene.camera
    before = (tuple(camera.center), camera.zoom, tuple(camera.angles))
    layers.jump_to(layers.world_point(layer, (110, 190, 31)))
    assert (tuple(camera.center), camera.zoom, tuple(camera.angles)) == before
    assert viewer.dims.point[0] == pytest.approx(31 * 2.0)
