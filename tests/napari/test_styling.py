"""How the panel's layers look: the decisions of styling.py, asserted on napari layers (no Qt)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from napari.components import ViewerModel

from napari_uamc._napari import styling
from napari_uamc._napari.case_layers import CaseLayers
from napari_uamc.data.regions import DEFAULT_RELATIVE_THRESHOLD
from napari_uamc.data.volume import Volume


def _rgba(layer, values):
    """The colours napari draws for data values of an Image layer (contrast limits, then colormap)."""
    low, high = layer.contrast_limits
    return layer.colormap.map((np.asarray(values, float) - low) / (high - low))


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(12, 10, 8)).astype(np.float32)
    volume = Volume(image, np.diag([1.0, 1.0, 2.0, 1.0]))
    viewer = ViewerModel()
    viewer.add_image(image.transpose(2, 1, 0), name="c")
    layers = CaseLayers(viewer)
    uncertainty = np.full(image.shape, 0.05, np.float32)
    uncertainty[3:6, 3:6, 2:4] = 0.6
    sdf = np.tanh(rng.normal(size=image.shape)).astype(np.float32)
    layers.put_maps("c", volume, sdf, uncertainty)
    label = (sdf < 0).astype(np.uint8)
    layers.put_segmentation("c", volume, label, baseline=label)
    yield viewer, layers, volume
    layers.close()


def test_uncertainty_is_transparent_below_the_listed_level_and_translucent_above(case):
    viewer, _, _ = case
    layer = viewer.layers["c uncertainty"]
    level = DEFAULT_RELATIVE_THRESHOLD * math.log(2)  # where "Where to correct" counts a voxel
    assert layer.blending == "translucent"  # never added: the MRI under it keeps its grey levels
    assert layer.contrast_limits == pytest.approx((0.0, math.log(2)))  # absolute, not per case
    below, above, top = _rgba(layer, [0.99 * level, 1.01 * level, math.log(2)])
    assert below[3] == 0
    assert 0.2 < above[3] < top[3] <= styling.UNCERTAINTY_MAX_ALPHA + 1e-6 < 1  # the MRI shows through
    assert top[0] > top[2]  # warm colours


def test_uncertainty_limits_do_not_follow_the_data():
    viewer = ViewerModel()
    low = viewer.add_image(np.zeros((4, 4, 4), np.float32))
    high = viewer.add_image(np.zeros((4, 4, 4), np.float32))
    styling.style_uncertainty(low, np.full((4, 4, 4), 0.01, np.float32))
    styling.style_uncertainty(high, np.full((4, 4, 4), 0.69, np.float32))
    assert low.contrast_limits == high.contrast_limits  # a model unsure everywhere looks unsure


def test_sdf_is_diverging_transparent_near_zero_with_an_opaque_zero_level(case):
    viewer, _, _ = case
    layer = viewer.layers["c SDF"]
    assert not layer.visible  # hidden at first
    assert layer.contrast_limits == pytest.approx((-1.0, 1.0))
    inside, near_in, zero, near_out, outside = _rgba(layer, [-1.0, -0.1, 0.0, 0.1, 1.0])
    assert inside[2] > inside[0] and outside[0] > outside[2]  # blue inside, red outside
    assert near_in[3] < 0.1 and near_out[3] < 0.1  # transparent on either side of the surface
    assert zero[3] == pytest.approx(1.0)  # the zero level is drawn, opaque
    assert inside[3] < 1 and outside[3] < 1


def test_disagreement_is_visible_above_its_level_only(case):
    viewer, layers, volume = case
    disagreement = np.zeros(volume.array.shape, np.float32)
    layer = layers.put_disagreement("c", volume, disagreement)
    assert layer.blending == "translucent"
    below, above, top = _rgba(layer, [0.9 * styling.DISAGREEMENT_LEVEL, 1.1 * styling.DISAGREEMENT_LEVEL, 1.0])
    assert below[3] == 0 and above[3] >= 0.5 and top[3] >= above[3]


def test_segmentation_is_a_blue_fill():
    viewer = ViewerModel()
    layer = viewer.add_labels(np.zeros((4, 4, 4), np.uint8))
    styling.style_segmentation(layer)
    assert layer.opacity == styling.SEGMENTATION_OPACITY
    assert tuple(layer.colormap.map(np.array([1]))[0]) == pytest.approx(styling.SEGMENTATION_COLOR)
    assert layer.colormap.map(np.array([0]))[0][3] == 0


def test_3d_shows_a_surface_over_a_dimmed_mri_and_2d_comes_back(case):
    viewer, layers, volume = case
    before = {layer.name: (layer.visible, layer.opacity) for layer in viewer.layers}
    viewer.dims.ndisplay = 3
    assert viewer.layers["c"].opacity == styling.MRI_OPACITY_3D
    seg = viewer.layers["c segmentation"]
    assert seg.rendering == "iso_categorical" and seg.opacity == 1.0
    assert not viewer.layers["c uncertainty"].visible and not viewer.layers["c SDF"].visible
    # a map that arrives while in 3D (Segment ended, disagreement ticked) takes the 3D look too
    layers.put_disagreement("c", volume, np.zeros(volume.array.shape, np.float32))
    assert not viewer.layers["c disagreement"].visible
    viewer.dims.ndisplay = 2
    after = {layer.name: (layer.visible, layer.opacity) for layer in viewer.layers if layer.name in before}
    assert after == before
    assert viewer.layers["c disagreement"].visible
