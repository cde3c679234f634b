"""Bidirectional copy-paste (engine/copy_paste.py): the mixes, their labels, and a trainer step."""

from __future__ import annotations

import math

import pytest
import torch

from _helpers import noisy_sphere
from napari_uamc.engine.config import TrainConfig
from napari_uamc.engine.copy_paste import BOX_FRACTION, box_masks, copy_paste
from napari_uamc.engine.dataset import TrainingCase
from napari_uamc.engine.training import Trainer
from napari_uamc.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(width=2, patch=(16, 16, 16), iterations=4, mc_samples=2, precision="float32", seed=3,
            batch_size=2, labeled_batch_size=1, finetune=True, terms="seg,dis")


def _case(seed: int, labeled: bool) -> TrainingCase:
    image, label = noisy_sphere(seed, (24, 20, 16), shift=2, radius=(4, 6))
    return TrainingCase.from_arrays(f"case{seed}", image, label if labeled else None, (1.0, 1.0, 1.0))


def test_a_box_mask_is_two_thirds_of_the_patch_inside_it():
    generator = torch.Generator().manual_seed(0)
    masks = box_masks(5, (12, 9, 6), device=torch.device("cpu"), generator=generator)
    for mask in masks:
        found = mask.nonzero()
        sides = (found.max(0).values - found.min(0).values + 1).tolist()
        assert sides == [round(s * BOX_FRACTION) for s in (12, 9, 6)] == [8, 6, 4]
        assert int(mask.sum()) == 8 * 6 * 4  # one solid box


def test_each_mix_takes_image_and_label_from_the_same_source_voxel_by_voxel():
    labeled_x, unlabeled_x = torch.full((1, 1, 6, 6, 6), 1.0), torch.full((1, 1, 6, 6, 6), 2.0)
    label, pseudo = torch.ones((1, 6, 6, 6), dtype=torch.long), torch.zeros((1, 6, 6, 6), dtype=torch.long)
    images, labels = copy_paste(torch.cat([labeled_x, unlabeled_x]), label, pseudo,
                                torch.Generator().manual_seed(1))
    assert images.shape == (2, 1, 6, 6, 6) and labels.shape == (2, 6, 6, 6)
    # where a voxel came from the accepted patch it carries the accepted label, else the pseudo-label
    assert torch.equal(labels, (images[:, 0] == 1.0).long())
    box = labels[0].bool()
    assert int(box.sum()) == 4 ** 3  # the labeled box pasted into the unlabeled patch
    assert torch.equal(labels[1].bool(), ~box)  # and the reverse mix, with the same box


def test_a_batch_without_one_unlabeled_patch_per_labeled_one_is_refused():
    with pytest.raises(ValueError, match="as many unlabeled as labeled"):
        copy_paste(torch.zeros((3, 1, 4, 4, 4)), torch.zeros((1, 4, 4, 4)), torch.zeros((1, 4, 4, 4)))
    with pytest.raises(InputError, match="copy_paste.*teacher_refresh"):
        TrainConfig(**TINY, copy_paste=True)
    with pytest.raises(InputError, match="copy_paste.*batch_size = 2"):
        TrainConfig(**{**TINY, "batch_size": 3}, copy_paste=True, teacher_refresh=2)
    with pytest.raises(InputError, match="copy_paste.*seg and dis"):
        TrainConfig(**{**TINY, "terms": "seg,dis,itc"}, copy_paste=True, teacher_refresh=2)


def test_a_copy_paste_step_trains_on_mixes_once_the_targets_exist(monkeypatch):
    seen: list[tuple[int, float]] = []
    from napari_uamc.engine import ugmcl_step

    real = ugmcl_step.copy_paste

    def spy(x, label, pseudo, generator=None):
        images, labels = real(x, label, pseudo, generator)
        seen.append((images.shape[0], float(labels.float().mean())))
        return images, labels

    monkeypatch.setattr(ugmcl_step, "copy_paste", spy)
    cfg = TrainConfig(**TINY, copy_paste=True, teacher_refresh=2, teacher_start=2)
    trainer = Trainer(cfg, [_case(0, labeled=True)], [_case(10, labeled=False)], device="cpu")
    reports = list(trainer.steps())
    assert [r.iteration for r in reports] == [1, 2, 3, 4]
    assert len(seen) == 2 and all(count == 2 for count, _ in seen)  # steps 2 and 3 mix; 0 and 1 cannot yet
    assert trainer.targets is not None and [m.step for m in trainer.targets.maps] == [2]
    assert all(math.isfinite(v) for r in reports for v in r.losses.values())
