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


# ------------------------------------------------------------------ the active layer in 3D
@pytest.fixture
def segmented():
    """A viewer with image ``c``, its maps and ``c segmentation`` (the active layer), in 2D."""
    from napari_uamc.data.volume import Volume

    rng = np.random.default_rng(0)
    volume = Volume(rng.normal(size=(12, 10, 8)).astype(np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    viewer = ViewerModel()
    viewer.add_image(volume.array.transpose(2, 1, 0), name="c")
    layers = CaseLayers(viewer)
    label = np.zeros(volume.array.shape, np.uint8)
    label[3:9, 2:8, 2:6] = 1
    layers.put_maps("c", volume, np.zeros_like(volume.array), np.zeros_like(volume.array))
    layers.put_segmentation("c", volume, label, baseline=label)
    yield viewer, layers, volume, label
    layers.close()


def test_3d_moves_the_selection_off_the_hidden_segmentation_and_2d_brings_it_back(segmented):
    viewer, layers, _, _ = segmented
    seg, image = viewer.layers["c segmentation"], viewer.layers["c"]
    seg.mode = "paint"
    assert viewer.layers.selection.active is seg
    viewer.dims.ndisplay = 3
    assert not seg.visible
    assert viewer.layers.selection.active is image and image.visible  # nothing paints unseen
    assert set(viewer.layers.selection) == {image}
    viewer.dims.ndisplay = 2
    assert viewer.layers.selection.active is seg and seg.visible and seg.mode == "paint"


def test_a_layer_chosen_in_3d_stays_chosen_in_2d(segmented):
    viewer, _, _, _ = segmented
    viewer.dims.ndisplay = 3
    uncertainty = viewer.layers["c uncertainty"]
    viewer.layers.selection.active = uncertainty  # the person's choice
    viewer.dims.ndisplay = 2
    assert viewer.layers.selection.active is uncertainty


def test_a_segmentation_put_in_3d_is_not_left_active(segmented):
    """Segment ending, a case opening or Show changes while the viewer shows 3D."""
    viewer, layers, volume, label = segmented
    seg, image = viewer.layers["c segmentation"], viewer.layers["c"]
    viewer.dims.ndisplay = 3
    layers.put_segmentation("c", volume, label, baseline=label)
    assert not seg.visible and viewer.layers.selection.active is image
    layers.paint_into(seg)
    assert viewer.layers.selection.active is image
    viewer.dims.ndisplay = 2
    assert viewer.layers.selection.active is seg and seg.visible


def test_a_segmentation_without_its_image_leaves_nothing_active_in_3d():
    from napari_uamc.data.volume import Volume

    viewer = ViewerModel()
    layers = CaseLayers(viewer)
    volume = Volume(np.zeros((6, 6, 4), np.float32), np.eye(4))
    seg = layers.put_segmentation("gone", volume, np.zeros((6, 6, 4), np.uint8), baseline=None)
    viewer.dims.ndisplay = 3
    assert viewer.layers.selection.active is None and len(viewer.layers.selection) == 0
    viewer.dims.ndisplay = 2
    assert viewer.layers.selection.active is seg
    layers.close()


# ------------------------------------------------------------------ forgetting a layer
def test_remove_forgets_the_snapshot_and_baseline_too(segmented):
    viewer, layers, _, _ = segmented
    name = "c segmentation"
    viewer.dims.ndisplay = 3  # its surface made from it
    viewer.dims.ndisplay = 2
    assert name in layers.baselines and name in layers._snapshots and name in layers.surfaces._sources
    layers.remove(name)
    assert name not in viewer.layers
    assert name not in layers.baselines and name not in layers._snapshots
    assert name not in layers._saved_2d and name not in layers.surfaces._sources
    # a layer of that name made afterwards (a person's own) is judged on its own voxels
    viewer.add_labels(np.asarray(viewer.layers["c"].data != 0, np.uint8), name=name)
    assert layers.is_edited("c") and layers.baselines.get(name) is None
