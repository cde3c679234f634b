"""Tests of the signed distance target (negative inside) and its smooth inverse."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_uamc.engine.sdf import sdf_targets_for_labels, sdf_to_mask, signed_distance_target
from napari_uamc.errors import InputError


def _cube(shape=(16, 16, 16), lo=4, hi=12):
    mask = np.zeros(shape, dtype=bool)
    mask[lo:hi, lo:hi, lo:hi] = True
    return mask


def test_sign_convention_boundary_and_range():
    mask = _cube()
    sdf = signed_distance_target(mask)
    assert sdf.dtype == np.float32 and sdf.shape == mask.shape
    boundary = mask.copy()
    boundary[5:11, 5:11, 5:11] = False  # the cube's one-voxel shell
    assert np.all(sdf[boundary] == 0)
    assert np.all(sdf[mask & ~boundary] < 0)  # negative inside
    assert np.all(sdf[~mask] > 0)  # positive outside
    assert sdf.min() == pytest.approx(-1.0) and sdf.max() == pytest.approx(1.0)


def test_hand_computed_line():
    # Foreground at 2, 3, 4 on a line of 5: outside distances 2, 1 (max 2); inside 1, 2, 3
    # (max 3; the array border is not background); the first foreground voxel is the boundary.
    mask = np.array([0, 0, 1, 1, 1], dtype=np.uint8).reshape(5, 1, 1)
    expected = np.array([1.0, 0.5, 0.0, -2 / 3, -1.0]).reshape(5, 1, 1)
    np.testing.assert_allclose(signed_distance_target(mask), expected, atol=1e-6)
    # Spacing along the only axis with distances scales both parts alike: same normalised SDF.
    np.testing.assert_allclose(signed_distance_target(mask, (2.5, 1, 1)), expected, atol=1e-6)


def test_anisotropic_spacing_gives_physical_distances():
    mask = np.zeros((5, 5, 1), dtype=bool)
    mask[2, 2, 0] = True  # a single voxel: it is its own boundary (0)
    spacing = (1.0, 3.0, 1.0)
    i, j = np.meshgrid(np.arange(5), np.arange(5), indexing="ij")
    distance_mm = np.sqrt(((i - 2) * spacing[0]) ** 2 + ((j - 2) * spacing[1]) ** 2)
    expected = (distance_mm / distance_mm.max())[..., None]
    sdf = signed_distance_target(mask, spacing)
    np.testing.assert_allclose(sdf, expected, atol=1e-6)
    # Isotropic spacing gives another field: two voxels along x and along y are then equal.
    iso = signed_distance_target(mask)
    assert iso[0, 2, 0] == pytest.approx(iso[2, 0, 0])
    assert sdf[0, 2, 0] < sdf[2, 0, 0]


def _brute_force_sdf(mask, spacing):
    """Reference: physical distance of every voxel to the nearest voxel of the other side."""
    coords = np.argwhere(np.ones_like(mask)) * np.asarray(spacing, dtype=float)
    flat = mask.ravel()
    pairwise = np.linalg.norm(coords[:, None, :] - coords[None, :, :], axis=-1)
    to_fg = np.where(flat[None, :], pairwise, np.inf).min(axis=1)
    to_bg = np.where(~flat[None, :], pairwise, np.inf).min(axis=1)
    outside = np.where(flat, 0.0, to_fg)
    inside = np.where(flat, to_bg, 0.0)
    sdf = outside / outside.max() - inside / inside.max()
    return sdf.reshape(mask.shape)


def test_sphere_in_millimetres_on_anisotropic_grid():
    spacing = (1.0, 1.0, 2.0)
    shape = (13, 13, 7)
    centre = np.array([6, 6, 3])
    coords = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    mask = np.linalg.norm((coords - centre) * spacing, axis=-1) <= 4.5  # a 4.5 mm ball
    sdf = signed_distance_target(mask, spacing)
    expected = _brute_force_sdf(mask, spacing)
    interior = ~(mask & (sdf == 0))  # the brute force has no boundary rule
    np.testing.assert_allclose(sdf[interior], expected[interior], atol=1e-5)
    # The ball is round in mm, so the SDF is symmetric in mm: 2 mm along x (2 voxels) equals
    # 2 mm along z (1 voxel). Ignoring the spacing breaks that.
    assert sdf[8, 6, 3] == pytest.approx(sdf[6, 6, 4], abs=1e-6)
    iso = signed_distance_target(mask)
    assert abs(iso[8, 6, 3] - iso[6, 6, 4]) > 0.05
    assert np.abs(iso - expected).max() > 0.1


def test_degenerate_patches():
    empty = signed_distance_target(np.zeros((4, 4, 4), dtype=np.uint8))
    full = signed_distance_target(np.ones((4, 4, 4), dtype=np.uint8))
    assert np.all(empty == 1.0) and np.all(full == -1.0)
    assert empty.dtype == full.dtype == np.float32


def test_targets_per_foreground_class():
    label = np.zeros((16, 16, 16), dtype=np.int16)
    label[2:8, 2:8, 2:8] = 1
    label[10:14, 10:14, 10:14] = 2
    targets = sdf_targets_for_labels(label, n_classes=3, spacing=(1, 1, 1))
    assert targets.shape == (2, 16, 16, 16) and targets.dtype == np.float32
    np.testing.assert_array_equal(targets[0], signed_distance_target(label == 1))
    np.testing.assert_array_equal(targets[1], signed_distance_target(label == 2))
    binary = sdf_targets_for_labels((label > 0).astype(np.uint8), n_classes=2)
    assert binary.shape == (1, 16, 16, 16)


@pytest.mark.parametrize(
    "call",
    [
        lambda: signed_distance_target(np.zeros((4, 4))),
        lambda: signed_distance_target(np.zeros((4, 4, 4)), spacing=(1, 0, 1)),
        lambda: signed_distance_target(np.zeros((4, 4, 4)), spacing=(1, 1)),
        lambda: signed_distance_target(np.zeros((4, 4, 4)), spacing="abc"),
        lambda: sdf_targets_for_labels(np.full((4, 4, 4), 3), n_classes=3),
        lambda: sdf_targets_for_labels(np.full((4, 4, 4), -1), n_classes=2),
        lambda: sdf_targets_for_labels(np.zeros((4, 4, 4)), n_classes=1),
    ],
)
def test_bad_inputs_raise_input_error(call):
    with pytest.raises(InputError):
        call()


def test_smooth_inverse():
    sdf = torch.tensor([-0.5, -0.001, 0.0, 0.001, 0.5])
    mask = sdf_to_mask(sdf)
    expected = 1 / (1 + np.exp(1500 * sdf.numpy()))
    np.testing.assert_allclose(mask.numpy(), expected, rtol=1e-5)
    assert mask[0] > 0.999 and mask[-1] < 0.001 and mask[2] == 0.5
    assert sdf_to_mask(torch.tensor([0.01]), k=10)[0] == pytest.approx(1 / (1 + np.exp(0.1)))


def test_matches_full_array_distance_transforms_on_random_blobs():
    """The implementation crops the inside transform; compare with the plain formula."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    six = ndimage.generate_binary_structure(3, 1)
    for _ in range(20):
        shape = tuple(int(n) for n in rng.integers(3, 14, size=3))
        mask = ndimage.binary_dilation(rng.random(shape) < 0.03, iterations=int(rng.integers(0, 3)))
        if rng.random() < 0.3:
            mask[0] = True  # touches the array border
        if not mask.any() or mask.all():
            continue
        spacing = tuple(float(s) for s in rng.uniform(0.5, 3.0, size=3))
        outside = ndimage.distance_transform_edt(~mask, sampling=spacing)
        inside = ndimage.distance_transform_edt(mask, sampling=spacing)
        expected = outside / outside.max() - inside / inside.max()
        expected[mask & ~ndimage.binary_erosion(mask, six, border_value=1)] = 0
        np.testing.assert_allclose(signed_distance_target(mask, spacing), expected, atol=1e-6)
