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
    inside, halo_in, near_in, zero, near_out, halo_out, outside = _rgba(layer, [-0.95, -0.5, -0.1, 0.0, 0.1, 0.5, 0.95])
    assert halo_in[2] > halo_in[0] and halo_out[0] > halo_out[2]  # blue inside, red outside
    assert near_in[3] < 0.1 and near_out[3] < 0.1  # transparent on either side of the surface
    assert zero[3] == pytest.approx(1.0)  # the zero level is drawn, opaque
    assert 0.2 < halo_in[3] < 1 and 0.2 < halo_out[3] < 1  # a translucent halo near the surface
    assert inside[3] == 0 and outside[3] == 0  # far from it the SDF says little: no wash over the scan


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
    surface = viewer.layers["c surface"]  # the labels volume gives way to its surface
    assert not seg.visible and surface.visible and surface.opacity == 1.0
    assert viewer.layers.selection.active is viewer.layers["c"]  # never the helper nor the hidden labels
    assert not viewer.layers["c uncertainty"].visible and not viewer.layers["c SDF"].visible
    # a map that arrives while in 3D (Segment ended, disagreement ticked) takes the 3D look too
    layers.put_disagreement("c", volume, np.zeros(volume.array.shape, np.float32))
    assert not viewer.layers["c disagreement"].visible
    viewer.dims.ndisplay = 2
    after = {layer.name: (layer.visible, layer.opacity) for layer in viewer.layers if layer.name in before}
    assert after == before
    assert viewer.layers["c disagreement"].visible and not viewer.layers["c surface"].visible


def test_the_3d_surface_drops_small_islands_and_keeps_the_label_and_its_grid():
    from napari_uamc._napari.surfaces import ISLAND_MIN_MM3

    volume = Volume(np.zeros((20, 16, 12), np.float32), np.diag([0.5, 0.5, 2.0, 1.0]))
    viewer = ViewerModel()
    viewer.add_image(volume.array.transpose(2, 1, 0), name="c", scale=(2.0, 0.5, 0.5))
    layers = CaseLayers(viewer)
    label = np.zeros(volume.array.shape, np.uint8)
    label[4:14, 3:12, 2:9] = 1  # the structure: 10 x 9 x 7 voxels of 0.5 mm3
    label[17, 14, 10] = 1  # a stray voxel, far below ISLAND_MIN_MM3
    assert 0.5 < ISLAND_MIN_MM3
    seg = layers.put_segmentation("c", volume, label, baseline=None)
    seg.translate = (1.0, -2.0, 3.0)  # whatever the grid, the surface takes it
    before = np.array(seg.data, copy=True)
    viewer.dims.ndisplay = 3
    surface = viewer.layers["c surface"]
    for key in ("scale", "translate", "rotate", "shear"):
        assert np.allclose(getattr(surface, key), getattr(seg, key)), key
    assert np.allclose(surface.affine.affine_matrix, seg.affine.affine_matrix)
    vertices = surface.data[0]
    structure = np.argwhere(seg.data == 1)
    structure = structure[structure[:, 0] < 10]  # without the stray voxel (z = 10 in display order)
    assert np.all(vertices.min(axis=0) >= structure.min(axis=0) - 0.5 - 1e-6)
    assert np.all(vertices.max(axis=0) <= structure.max(axis=0) + 0.5 + 1e-6)  # the island is not in it
    assert np.array_equal(seg.data, before)  # the label keeps its stray voxel
    layers.close()


def test_the_3d_surface_leaves_out_a_fragment_far_smaller_than_the_structure():
    from napari_uamc._napari.surfaces import surface_mesh

    label = np.zeros((60, 60, 60), np.uint8)
    label[5:55, 5:45, 5:55] = 1  # 100 000 voxels of 1 mm3
    label[50:56, 50:56, 50:56] = 1  # a 216 mm3 fragment: above 50 mm3, under 1 % of the structure
    vertices, _faces = surface_mesh(label, voxel_mm3=1.0)
    assert vertices[:, 1].max() < 45  # the fragment (y 50-55) is not in the surface
    vertices, _faces = surface_mesh(label, voxel_mm3=1.0, min_fraction=0.0)
    assert vertices[:, 1].max() > 50  # with only the absolute size it would be
