"""Tests of napari_uamc.data.metrics: analytic shapes, a brute-force reference, conventions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage

from napari_uamc.data.metrics import (
    CaseMetrics,
    compute_metrics,
    dice,
    jaccard,
    metric_key,
    summarize,
    surface,
    surface_distances,
)
from napari_uamc.errors import GridMismatchError, InputError

FACE_OFFSETS = [(1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1)]


# ---------------------------------------------------------------- independent slow reference


def slow_surface_points(mask: np.ndarray) -> list[tuple[int, int, int]]:
    """Foreground voxels with a face neighbour outside the mask or outside the array."""
    points = []
    for i, j, k in itertools.product(*(range(n) for n in mask.shape)):
        if not mask[i, j, k]:
            continue
        for di, dj, dk in FACE_OFFSETS:
            ni, nj, nk = i + di, j + dj, k + dk
            inside = all(0 <= c < n for c, n in zip((ni, nj, nk), mask.shape))
            if not inside or not mask[ni, nj, nk]:
                points.append((i, j, k))
                break
    return points


def slow_directed_distances(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """Minimum over all pairs of physical distances from surface(a) to surface(b)."""
    pa = np.array(slow_surface_points(a), dtype=float) * np.asarray(spacing, dtype=float)
    pb = np.array(slow_surface_points(b), dtype=float) * np.asarray(spacing, dtype=float)
    pairwise = np.sqrt(((pa[:, None, :] - pb[None, :, :]) ** 2).sum(axis=-1))
    return pairwise.min(axis=1)


def slow_percentile(values: np.ndarray, q: float) -> float:
    """Linear-interpolation percentile written out by hand."""
    ordered = sorted(values.tolist())
    position = q / 100 * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def random_blob(seed: int, shape=(12, 12, 12), threshold: float = 0.1) -> np.ndarray:
    """A few smooth random blobs; some touch the array border."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=1.5)
    return noise > threshold


def sphere(shape, center_mm, radius_mm, spacing) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, spacing)), indexing="ij")
    squared = sum((g - c) ** 2 for g, c in zip(grids, center_mm))
    return squared <= radius_mm**2


# ---------------------------------------------------------------- surface


def test_surface_of_single_voxel_is_itself():
    mask = np.zeros((5, 5, 5), bool)
    mask[2, 2, 2] = True
    assert np.array_equal(surface(mask), mask)


def test_surface_of_interior_cube_excludes_its_core():
    mask = np.zeros((7, 7, 7), bool)
    mask[1:6, 1:6, 1:6] = True
    border = surface(mask)
    assert border.sum() == 5**3 - 3**3
    assert not border[2:5, 2:5, 2:5].any()


def test_surface_counts_array_border_as_background():
    full = np.ones((4, 5, 6), bool)
    border = surface(full)
    assert border.sum() == 4 * 5 * 6 - 2 * 3 * 4
    assert border[0].all() and border[-1].all() and border[:, :, 0].all()


def test_surface_uses_face_neighbours_only():
    mask = np.ones((5, 5, 5), bool)
    mask[0, 0, 0] = False  # only diagonal to (1, 1, 1)
    assert not surface(mask)[1, 1, 1]
    assert surface(mask)[1, 0, 0]


@pytest.mark.parametrize("seed", range(4))
def test_surface_matches_explicit_neighbour_loops(seed):
    mask = random_blob(seed)
    expected = np.zeros_like(mask)
    for point in slow_surface_points(mask):
        expected[point] = True
    assert np.array_equal(surface(mask), expected)


# ---------------------------------------------------------------- against brute force


@pytest.mark.parametrize(
    ("seed", "spacing"),
    [(0, (1.0, 1.0, 1.0)), (1, (0.7, 1.3, 2.5)), (2, (2.0, 0.5, 1.0)), (3, (1.0, 1.0, 3.0))],
)
def test_metrics_match_brute_force_on_random_blobs(seed, spacing):
    pred, truth = random_blob(seed), random_blob(seed + 100, threshold=0.0)
    assert pred.any() and truth.any() and not np.array_equal(pred, truth)
    forward = slow_directed_distances(pred, truth, spacing)
    backward = slow_directed_distances(truth, pred, spacing)
    pooled = np.concatenate([forward, backward])

    np.testing.assert_allclose(
        np.sort(surface_distances(pred, truth, spacing)), np.sort(forward), atol=1e-6
    )
    result = compute_metrics(pred, truth, spacing)
    assert result.hd95 == pytest.approx(slow_percentile(pooled, 95), abs=1e-6)
    assert result.asd == pytest.approx(pooled.mean(), abs=1e-6)
    intersection = np.sum(pred & truth)
    assert result.dice == pytest.approx(2 * intersection / (pred.sum() + truth.sum()))
    assert result.jaccard == pytest.approx(intersection / np.sum(pred | truth))


# ---------------------------------------------------------------- analytic shapes


def test_concentric_spheres_isotropic():
    shape, spacing, center = (33, 33, 33), (1.0, 1.0, 1.0), (16.0, 16.0, 16.0)
    inner, outer = sphere(shape, center, 10, spacing), sphere(shape, center, 14, spacing)
    result = compute_metrics(inner, outer, spacing)
    assert result.dice == pytest.approx(2 * inner.sum() / (inner.sum() + outer.sum()))
    assert result.jaccard == pytest.approx(inner.sum() / outer.sum())
    assert result.hd95 == pytest.approx(4.0, abs=1.0)
    assert result.asd == pytest.approx(4.0, abs=1.0)
    # the continuous shapes give Dice 2 * 10^3 / (10^3 + 14^3)
    assert result.dice == pytest.approx(2 * 1000 / (1000 + 14**3), abs=0.03)


def test_concentric_spheres_anisotropic_distances_are_in_mm():
    spacing = (1.0, 1.0, 2.0)
    shape, center = (33, 33, 17), (16.0, 16.0, 16.0)
    inner, outer = sphere(shape, center, 10, spacing), sphere(shape, center, 14, spacing)
    in_mm = compute_metrics(inner, outer, spacing)
    in_voxels = compute_metrics(inner, outer, spacing, unit="voxel")
    assert in_mm.hd95 == pytest.approx(4.0, abs=2.0)
    assert in_mm.asd == pytest.approx(4.0, abs=1.0)
    assert in_mm.dice == in_voxels.dice
    assert in_voxels.asd < in_mm.asd  # z distances count 2 mm per voxel
    assert in_mm.dice == pytest.approx(2 * inner.sum() / (inner.sum() + outer.sum()))


def shifted_cubes(shift: int = 2):
    a = np.zeros((16, 16, 16), bool)
    a[5:11, 5:11, 5:11] = True
    return a, np.roll(a, shift, axis=0)


def test_shifted_cube_has_known_surface_distances():
    a, b = shifted_cubes(2)
    # Of the 152 surface voxels of a 6^3 cube shifted by 2 along x: the trailing face plus
    # the inner 2x2 of the leading face are 2 voxels away (40), the next ring and the
    # 12-voxel ring of the leading face are 1 away (32), the rest lie on b's surface (80).
    expected = np.array([2.0] * 40 + [1.0] * 32 + [0.0] * 80)
    for spacing in (1.0, 1.5):
        np.testing.assert_allclose(
            np.sort(surface_distances(a, b, (spacing,) * 3)), np.sort(expected) * spacing
        )
        result = compute_metrics(a, b, (spacing,) * 3)
        assert result.hd95 == pytest.approx(2.0 * spacing)
        assert result.asd == pytest.approx(112 / 152 * spacing)
        assert result.dice == pytest.approx(2 * 4 / 12)
        assert result.jaccard == pytest.approx(4 / 8)


def test_unit_voxel_ignores_spacing():
    a, b = shifted_cubes(2)
    result = compute_metrics(a, b, (1.5, 1.5, 1.5), unit="voxel")
    assert result.hd95 == pytest.approx(2.0)
    assert result.asd == pytest.approx(112 / 152)


def test_identical_masks_have_zero_distance():
    mask = random_blob(5)
    assert compute_metrics(mask, mask, (0.5, 2, 1)) == CaseMetrics(1.0, 1.0, 0.0, 0.0)


# ---------------------------------------------------------------- cropping invariance


@pytest.mark.parametrize("seed", range(3))
def test_cropping_gives_the_same_distances_as_full_arrays(seed):
    spacing = (0.8, 1.1, 2.0)
    a, b = random_blob(seed, (14, 12, 10)), random_blob(seed + 7, (14, 12, 10))
    full = ndimage.distance_transform_edt(~surface(b), sampling=spacing)[surface(a)]
    np.testing.assert_allclose(surface_distances(a, b, spacing), full, atol=1e-12)


def test_padding_with_background_does_not_change_metrics():
    a, b = random_blob(11), random_blob(12)  # both touch the array border
    padded = [np.pad(m, ((3, 0), (0, 5), (2, 2))) for m in (a, b)]
    assert compute_metrics(*padded, (1, 2, 3)) == compute_metrics(a, b, (1, 2, 3))


def test_border_voxels_stay_surface_after_cropping():
    a = np.zeros((10, 10, 10), bool)
    a[:, :, :5] = True  # touches five sides of the array
    b = np.zeros_like(a)
    b[:, :, :4] = True
    distances = surface_distances(a, b, (1, 1, 1))
    # a's x/y border faces coincide with b's except at z=4, the plane one step above b
    assert distances.max() == pytest.approx(1.0)
    assert np.count_nonzero(distances) == 100  # the z=4 layer of a: its whole top face


# ---------------------------------------------------------------- conventions


def test_both_empty():
    empty = np.zeros((4, 4, 4), np.uint8)
    assert compute_metrics(empty, empty) == CaseMetrics(1.0, 1.0, 0.0, 0.0)


@pytest.mark.parametrize("empty_side", ["pred", "truth"])
def test_exactly_one_empty(empty_side):
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    empty = np.zeros_like(mask)
    pair = (empty, mask) if empty_side == "pred" else (mask, empty)
    assert compute_metrics(*pair) == CaseMetrics(0.0, 0.0, None, None)


def test_label_selects_one_class_and_default_is_any_nonzero():
    truth = np.zeros((8, 8, 8), np.uint8)
    truth[1:4, 1:4, 1:4] = 1
    truth[5:7, 5:7, 5:7] = 2
    pred = truth.copy()
    pred[5:7, 5:7, 5:7] = 0
    assert compute_metrics(pred, truth, label=1).dice == 1.0
    assert compute_metrics(pred, truth, label=2) == CaseMetrics(0.0, 0.0, None, None)
    assert compute_metrics(pred, truth).dice == pytest.approx(2 * 27 / (27 + 35))


def test_dice_and_jaccard_helpers():
    a = np.zeros((4, 4, 4), bool)
    b = np.zeros_like(a)
    a[0, 0, :2] = True
    b[0, 0, 1:4] = True
    assert dice(a, b) == pytest.approx(2 * 1 / 5)
    assert type(dice(a, b)) is float and type(jaccard(a, b)) is float  # JSON-ready
    assert jaccard(a, b) == pytest.approx(1 / 4)
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0
    assert jaccard(np.zeros_like(a), np.zeros_like(a)) == 1.0
    d = dice(random_blob(1), random_blob(2))
    assert jaccard(random_blob(1), random_blob(2)) == pytest.approx(d / (2 - d))


def test_summarize_excludes_undefined_values_and_counts_them():
    results = {
        "a": CaseMetrics(0.8, 0.6, 2.0, 1.0),
        "b": CaseMetrics(0.0, 0.0, None, None),
        "c": CaseMetrics(0.6, 0.4, 4.0, 3.0),
    }
    summary = summarize(results)
    assert summary["mean"] == pytest.approx(
        {"dice": 1.4 / 3, "jaccard": 1.0 / 3, "hd95": 3.0, "asd": 2.0}
    )
    assert summary["undefined"] == {"dice": 0, "jaccard": 0, "hd95": 1, "asd": 1}
    only_undefined = summarize({"b": results["b"]})
    assert only_undefined["mean"]["hd95"] is None
    assert only_undefined["mean"]["dice"] == 0.0


def test_as_dict_keys_carry_the_unit():
    case = CaseMetrics(0.5, 0.25, 3.0, None)
    assert case.as_dict("mm") == {"dice": 0.5, "jaccard": 0.25, "hd95_mm": 3.0, "asd_mm": None}
    assert set(case.as_dict("voxel")) == {"dice", "jaccard", "hd95_vox", "asd_vox"}
    assert metric_key("dice", "voxel") == "dice"


# ---------------------------------------------------------------- bad inputs


def test_shape_mismatch_is_refused():
    with pytest.raises(GridMismatchError, match=r"\(4, 4, 4\).*\(4, 4, 5\)"):
        compute_metrics(np.ones((4, 4, 4)), np.ones((4, 4, 5)))


@pytest.mark.parametrize("spacing", [(1, 1), (1, 0, 1), (1, -2, 1), (1, float("nan"), 1)])
def test_bad_spacing_is_refused(spacing):
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(InputError, match="spacing"):
        compute_metrics(mask, mask, spacing)


def test_bad_unit_and_dimensionality_are_refused():
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(InputError, match="unit"):
        compute_metrics(mask, mask, unit="cm")
    with pytest.raises(InputError, match="3D"):
        compute_metrics(np.ones((3, 3)), np.ones((3, 3)))
    with pytest.raises(InputError, match="3D"):
        surface(np.ones((3, 3)))


def test_distances_to_an_empty_mask_are_refused():
    with pytest.raises(InputError, match="empty"):
        surface_distances(np.ones((3, 3, 3), bool), np.zeros((3, 3, 3), bool))
    assert surface_distances(np.zeros((3, 3, 3)), np.ones((3, 3, 3))).size == 0
