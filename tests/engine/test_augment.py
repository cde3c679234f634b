"""Augmentation, SDF targets of augmented patches, two-stream sampling, case loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_uamc.engine.augment import (
    AugmentParams,
    crop_rotate_flip,
    draw_params,
    rotated_spacing,
    source_patch_shape,
)
from napari_uamc.engine.dataset import TrainingCase, load_cases_from_folder, read_case_list, split_labeled
from napari_uamc.engine.sampling import CyclicShuffle, TrainingBatches, TwoStreamSampler, batch_loader
from napari_uamc.engine.sdf import sdf_targets_for_labels
from napari_uamc.errors import InputError


def _ramp_volume(shape=(12, 10, 6)) -> np.ndarray:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


@pytest.mark.parametrize("rotations", range(4))
@pytest.mark.parametrize("flip_axis", (0, 1))
def test_whole_volume_sample_is_the_papers_rotate_then_flip(rotations, flip_axis):
    """With no room to crop, the sample is exactly np.flip(np.rot90(volume, k), axis)."""
    patch = (10, 12, 6) if rotations % 2 else (12, 10, 6)  # the rotated volume's shape
    volume = _ramp_volume()
    params = AugmentParams(rotations, flip_axis, (0, 0, 0))
    expected = np.flip(np.rot90(volume, rotations, axes=(0, 1)), axis=flip_axis)
    np.testing.assert_array_equal(crop_rotate_flip(volume, params, patch), expected)


def test_crop_then_rotate_equals_rotate_then_crop():
    """The patch is a window of the paper's rotated-and-flipped volume."""
    volume = _ramp_volume((20, 14, 9))
    rng = np.random.default_rng(0)
    patch = (8, 12, 4)
    for _ in range(20):
        params = draw_params(rng, volume.shape, patch)
        sample = crop_rotate_flip(volume, params, patch)
        assert sample.shape == patch
        full = np.flip(np.rot90(volume, params.rotations, axes=(0, 1)), axis=params.flip_axis)
        # every value is unique, so the window is found by its first voxel
        origin = [int(i[0]) for i in np.nonzero(full == sample[0, 0, 0])]
        window = full[tuple(slice(o, o + p) for o, p in zip(origin, patch))]
        np.testing.assert_array_equal(window, sample)


def test_image_and_label_get_the_same_transform():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(24, 20, 16)).astype(np.float32)
    label = (image > 0.5).astype(np.uint8)
    for _ in range(10):
        params = draw_params(rng, image.shape, (16, 16, 16))
        image_patch = crop_rotate_flip(image, params, (16, 16, 16))
        label_patch = crop_rotate_flip(label, params, (16, 16, 16))
        np.testing.assert_array_equal(label_patch, (image_patch > 0.5).astype(np.uint8))


def test_small_volume_is_zero_padded_to_the_patch():
    volume = np.ones((5, 7, 3), dtype=np.float32)
    rng = np.random.default_rng(2)
    for _ in range(8):
        params = draw_params(rng, volume.shape, (16, 16, 16))
        sample = crop_rotate_flip(volume, params, (16, 16, 16))
        assert sample.shape == (16, 16, 16)
        assert sample.sum() == volume.sum()  # all of it, surrounded by zeros
        assert params.offset == (0, 0, 0)


def test_draw_params_covers_rotations_flips_and_offsets():
    rng = np.random.default_rng(3)
    draws = [draw_params(rng, (40, 30, 20), (16, 16, 16)) for _ in range(300)]
    assert {d.rotations for d in draws} == {0, 1, 2, 3}
    assert {d.flip_axis for d in draws} == {0, 1}
    assert max(d.offset[0] for d in draws) == 40 - 16
    assert min(d.offset[2] for d in draws) == 0 and max(d.offset[2] for d in draws) == 4


def test_spacing_and_shape_follow_the_rotation():
    assert source_patch_shape((32, 16, 8), 1) == (16, 32, 8)
    assert source_patch_shape((32, 16, 8), 2) == (32, 16, 8)
    assert rotated_spacing((0.5, 2.0, 3.0), 3) == (2.0, 0.5, 3.0)
    assert rotated_spacing((0.5, 2.0, 3.0), 2) == (0.5, 2.0, 3.0)


def _box_case(name: str, spacing=(1.0, 2.0, 1.0), labeled=True) -> TrainingCase:
    label = np.zeros((24, 20, 16), np.uint8)
    label[6:15, 4:12, 5:11] = 1
    image = label + np.random.default_rng(len(name)).normal(0, 0.1, label.shape)
    return TrainingCase.from_arrays(name, image, label if labeled else None, spacing)


def test_sdf_target_matches_the_augmented_label_patch_with_rotated_spacing():
    labeled = [_box_case("a")]
    batches = TrainingBatches(
        labeled, [], patch=(16, 16, 16), labeled_per_batch=1, unlabeled_per_batch=0,
        n_classes=2, seed=5, with_sdf=True,
    )
    seen_odd = False
    for iteration in range(12):
        (spec,), _ = batches.specs(iteration)
        batch = batches[iteration]
        label = batch["label"][0].numpy()
        expected = sdf_targets_for_labels(
            label, 2, rotated_spacing(spec.case.spacing, spec.params.rotations)
        )
        np.testing.assert_allclose(batch["sdf"][0].numpy(), expected)
        assert (batch["sdf"][0, 0].numpy()[label == 1] <= 0).all()  # negative inside
        seen_odd |= spec.params.rotations % 2 == 1
    assert seen_odd


def test_batches_put_labeled_first_and_are_reproducible():
    labeled = [_box_case(f"l{i}") for i in range(3)]
    unlabeled = [_box_case(f"u{i}", labeled=False) for i in range(5)]
    kwargs = dict(patch=(16, 16, 16), labeled_per_batch=2, unlabeled_per_batch=3, n_classes=2, seed=7)
    batches = TrainingBatches(labeled, unlabeled, **kwargs)
    batch = batches[4]
    assert batch["image"].shape == (5, 1, 16, 16, 16)
    assert batch["label"].shape == (2, 16, 16, 16)
    assert "sdf" in batch and batch["sdf"].shape == (2, 1, 16, 16, 16)
    again = TrainingBatches(labeled, unlabeled, **kwargs)[4]  # a fresh object: same batch
    assert all((batch[k] == again[k]).all() for k in batch)
    other_rank = TrainingBatches(labeled, unlabeled, rank=1, **kwargs)[4]
    assert not (other_rank["image"] == batch["image"]).all()
    loaded = list(batch_loader(batches, [3, 4]))
    assert (loaded[1]["image"] == batch["image"]).all()


def test_sampler_cycles_each_stream_with_reshuffles():
    sampler = TwoStreamSampler(3, 5, 2, 2, seed=1)
    labeled, unlabeled = zip(*(sampler.batch(i) for i in range(15)))
    flat_labeled = [i for batch in labeled for i in batch]
    flat_unlabeled = [i for batch in unlabeled for i in batch]
    for start in range(0, 30, 3):  # every pass over the labeled stream is a permutation
        assert sorted(flat_labeled[start:start + 3]) == [0, 1, 2]
    for start in range(0, 30, 5):
        assert sorted(flat_unlabeled[start:start + 5]) == [0, 1, 2, 3, 4]
    orders = {tuple(flat_unlabeled[s:s + 5]) for s in range(0, 30, 5)}
    assert len(orders) > 1  # reshuffled between passes
    assert CyclicShuffle(4, 9, 1).take(0, 8) == CyclicShuffle(4, 9, 1).take(0, 8)


def test_sampler_refuses_missing_streams():
    with pytest.raises(ValueError):
        TwoStreamSampler(0, 3, 2, 2, seed=0)
    with pytest.raises(ValueError):
        TwoStreamSampler(2, 0, 2, 2, seed=0)


def test_split_labeled_rules(tmp_path):
    names = ["c", "a", "b", "d"]
    with_label = {"a", "b", "c"}
    assert split_labeled(names, with_label, labeled=2) == (["a", "b"], ["c", "d"])
    assert split_labeled(names, with_label) == (["a", "b", "c"], ["d"])
    assert split_labeled(names, with_label, labeled_names=["c"]) == (["c"], ["a", "b", "d"])
    with pytest.raises(InputError, match="no label"):
        split_labeled(names, with_label, labeled=4)
    with pytest.raises(InputError, match="unknown"):
        split_labeled(names, with_label, labeled_names=["x"])
    with pytest.raises(InputError, match="only 4"):
        split_labeled(names, with_label, labeled=9)
    listing = tmp_path / "train.list"
    listing.write_text("# labeled\nb.nii.gz\n\na\n")
    assert read_case_list(listing) == ["b", "a"]


def _write_nifti(path, array, spacing=(1.0, 1.0, 2.0)):
    import nibabel as nib

    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), str(path))


def test_load_study_folder_ignores_ground_truth(tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("imagesTr", "labelsTr", "groundTruth"):
        (tmp_path / folder).mkdir()
    for index in range(3):
        image = rng.normal(5, 2, (20, 18, 10)).astype(np.float32)
        label = (image > 6).astype(np.uint8)
        _write_nifti(tmp_path / "imagesTr" / f"case{index}.nii.gz", image)
        _write_nifti(tmp_path / "groundTruth" / f"case{index}.nii.gz", label)
        if index == 0:
            _write_nifti(tmp_path / "labelsTr" / f"case{index}.nii.gz", label)
    split = load_cases_from_folder(tmp_path)
    assert [c.name for c in split.labeled] == ["case0"]
    assert [c.name for c in split.unlabeled] == ["case1", "case2"]
    assert all(c.label is None for c in split.unlabeled)
    assert split.spacing == (1.0, 1.0, 2.0)
    image = split.labeled[0].image
    assert image.dtype == np.float32 and abs(float(image.mean())) < 1e-4
    with pytest.raises(InputError, match="no label"):
        load_cases_from_folder(tmp_path, labeled=2)  # case1 has only a groundTruth label


def test_load_h5_folder_with_case_subfolders(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(1)
    for name in ("b_case", "a_case", "c_case"):
        (tmp_path / name).mkdir()
        with h5py.File(tmp_path / name / "mri_norm2.h5", "w") as handle:
            handle["image"] = rng.normal(size=(16, 16, 12)).astype(np.float32)
            handle["label"] = (rng.random((16, 16, 12)) > 0.7).astype(np.uint8)
    split = load_cases_from_folder(tmp_path, labeled=1, h5_spacing=(0.625, 0.625, 0.625))
    assert [c.name for c in split.labeled] == ["a_case"]
    assert [c.name for c in split.unlabeled] == ["b_case", "c_case"]
    assert split.labeled[0].spacing == (0.625, 0.625, 0.625)
    assert split.n_classes() == 2


def test_load_refuses_a_folder_without_images(tmp_path):
    with pytest.raises(InputError, match="no training images"):
        load_cases_from_folder(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        load_cases_from_folder(tmp_path / "missing")


def test_training_case_checks_its_arrays():
    with pytest.raises(InputError, match="differs"):
        TrainingCase.from_arrays("x", np.zeros((4, 4, 4)), np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(InputError, match="NaN"):
        TrainingCase.from_arrays("x", np.full((4, 4, 4), np.nan))
    with pytest.raises(InputError, match="class indices"):
        TrainingCase.from_arrays("x", np.zeros((4, 4, 4)), np.full((4, 4, 4), -1))


def test_worker_processes_build_the_same_batches_in_order():
    labeled = [_box_case(f"l{i}") for i in range(2)]
    unlabeled = [_box_case(f"u{i}", labeled=False) for i in range(2)]
    batches = TrainingBatches(labeled, unlabeled, patch=(16, 16, 16), labeled_per_batch=1,
                              unlabeled_per_batch=1, n_classes=2, seed=2)
    in_workers = list(batch_loader(batches, range(2, 5), workers=2))
    for iteration, batch in zip(range(2, 5), in_workers):
        expected = batches[iteration]
        assert all(torch.equal(batch[k], expected[k]) for k in expected)
