"""Whole-case teacher targets (engine/teacher_targets.py): their schedule, their crops, and a
trainer step that uses them instead of the teacher's per-step passes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _helpers import noisy_sphere
from napari_uamc.engine.augment import AugmentParams, crop_rotate_flip
from napari_uamc.engine.config import ALL_TERMS, TrainConfig
from napari_uamc.engine.dataset import TrainingCase
from napari_uamc.engine.sampling import SampleSpec
from napari_uamc.engine.teacher_targets import CaseTargets, TeacherTargets, target_threshold
from napari_uamc.engine.training import Trainer
from napari_uamc.engine.ugmcl_step import UGMCLStep

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(width=2, patch=(16, 16, 16), iterations=4, mc_samples=2, precision="float32", seed=3,
            batch_size=3, labeled_batch_size=2, finetune=True)


def _case(seed: int, labeled: bool, shape=(24, 20, 16)) -> TrainingCase:
    image, label = noisy_sphere(seed, shape, shift=2, radius=(4, 6))
    return TrainingCase.from_arrays(f"case{seed}", image, label if labeled else None, (1.0, 1.0, 1.0))


def _targets(n_cases: int, **cfg) -> TeacherTargets:
    cases = [_case(10 + i, labeled=False) for i in range(n_cases)]
    return TeacherTargets(cases, TrainConfig(**{**TINY, **cfg}), device=torch.device("cpu"), dtype=torch.float32)


def test_all_cases_at_the_start_then_one_every_n_steps_in_turn():
    targets = _targets(3, teacher_refresh=2, teacher_start=5)
    assert [targets.due(step) for step in range(5)] == [[]] * 5
    targets.maps = [object()] * 3  # what update() leaves at the start step (the schedule only)
    assert [targets.due(step) for step in range(5, 13)] == [[0], [], [1], [], [2], [], [0], []]


def test_crops_follow_the_patch_augmentation_and_padding_reads_as_uncertain():
    targets = _targets(1, teacher_refresh=1)
    case = targets.cases[0]
    shape = case.image.shape
    ramp = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / np.prod(shape)
    targets.maps[0] = CaseTargets(np.stack([1 - ramp, ramp]).astype(np.float16), ramp[None].astype(np.float16),
                                  np.full(shape, math.log(2) - 0.1, np.float16), step=0)
    params = AugmentParams(rotations=1, flip_axis=0, offset=(0, 1, 0))  # z: 16 of 16, no padding needed
    assert not targets.taught_cases
    crops = targets.crops([SampleSpec(case, params)])
    assert targets.taught_cases == {0}  # a step used its trusted targets: it taught the student
    expected = crop_rotate_flip(ramp.astype(np.float16), params, (16, 16, 16)).astype(np.float32)
    assert crops.probabilities.shape == (1, 2, 16, 16, 16) and crops.sdf.shape == (1, 1, 16, 16, 16)
    np.testing.assert_array_equal(crops.probabilities[0, 1].numpy(), expected)
    np.testing.assert_allclose(crops.uncertainty.numpy(), 0.1, atol=1e-3)
    # a volume smaller than the patch: the padding beyond it must never be a trusted target
    small = _targets(1, teacher_refresh=1, patch=(32, 16, 16))
    small.maps[0] = CaseTargets(np.zeros((2, *shape), np.float16), np.zeros((1, *shape), np.float16),
                                np.full(shape, math.log(2), np.float16), step=0)  # certain everywhere
    crop = small.crops([SampleSpec(small.cases[0], AugmentParams(0, 0, (0, 0, 0)))]).uncertainty[0]
    assert float(crop[:4].min()) >= target_threshold(small.cfg)  # padded rows (24 -> 32: 4 each side)
    assert float(crop[4:28].max()) < target_threshold(small.cfg)


def test_a_step_with_cached_targets_runs_no_teacher_pass(monkeypatch):
    labeled = [_case(i, labeled=True) for i in range(2)]
    unlabeled = [_case(10 + i, labeled=False) for i in range(2)]

    def no_teacher_pass(self, x):
        raise AssertionError("the teacher must not run inside a step with cached targets")

    monkeypatch.setattr(UGMCLStep, "teacher_outputs", no_teacher_pass)
    # an untrained network is unsure everywhere: trust every target below ln 2 to see the term
    cfg = TrainConfig(**TINY, terms=ALL_TERMS, teacher_refresh=2, teacher_start=1, tau_base=1.0)
    trainer = Trainer(cfg, labeled, unlabeled, device="cpu")
    reports = list(trainer.steps())
    assert [r.iteration for r in reports] == [1, 2, 3, 4]
    assert reports[0].losses["itc"] == 0.0 and reports[0].mask_fraction == 0.0  # before teacher_start
    assert all(r.losses["itc"] > 0.0 and 0.0 < r.mask_fraction <= 1.0 for r in reports[1:])
    assert all(math.isfinite(v) for r in reports for v in r.losses.values())
    assert [m.step for m in trainer.targets.maps] == [3, 1]  # both at step 1, then case 0 again at 3
    assert trainer.targets.seconds > 0


def test_a_resumed_trainer_computes_every_target_again_at_its_first_step():
    labeled = [_case(i, labeled=True) for i in range(2)]
    unlabeled = [_case(10 + i, labeled=False) for i in range(2)]
    cfg = TrainConfig(**TINY, terms=ALL_TERMS, teacher_refresh=2)
    first = Trainer(cfg, labeled, unlabeled, device="cpu")
    steps = first.steps()
    for _ in range(3):
        next(steps)
    assert [m.step for m in first.targets.maps] == [2, 0]  # case 1's targets date from step 0
    resumed = Trainer(cfg, labeled, unlabeled, device="cpu")
    resumed.load_state_dict(first.state_dict())
    assert resumed.iteration == 3 and all(m is None for m in resumed.targets.maps)  # not in the state
    next(resumed.steps())
    assert [m.step for m in resumed.targets.maps] == [3, 3]


def test_the_refreshing_teacher_uses_the_students_batchnorm_statistics():
    from napari_uamc.engine.teacher_targets import _refreshing_network

    labeled = [_case(i, labeled=True) for i in range(2)]
    trainer = Trainer(TrainConfig(**TINY, terms=ALL_TERMS, teacher_refresh=1), labeled,
                      [_case(10, labeled=False)], device="cpu")
    list(trainer.steps())
    net = _refreshing_network(trainer.teacher, trainer.student)
    student_stats = dict(trainer.student.named_buffers())
    teacher_stats = dict(trainer.teacher.named_buffers())
    name = next(n for n in student_stats if n.endswith("running_mean"))
    assert torch.equal(dict(net.named_buffers())[name], student_stats[name])
    assert not torch.equal(student_stats[name], teacher_stats[name])  # the student's moved, the teacher's not
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), trainer.teacher.parameters()))
    assert not net.training


def _ball_maps(shape, radius: float, sdf_radius: float | None = None):
    """Teacher maps of a ball: probabilities [2, ...] and an SDF [1, ...] whose zero level is a
    ball of ``sdf_radius`` (default: the same ball)."""
    distance = np.sqrt(((np.indices(shape) - np.array(shape)[:, None, None, None] / 2) ** 2).sum(0))
    inside = (distance < radius).astype(np.float32)
    sdf = (distance - (radius if sdf_radius is None else sdf_radius))[None].astype(np.float32)
    return np.stack([1 - inside, inside]), sdf, int(inside.sum())


def test_a_plausible_segmentation_passes_the_gate_and_an_empty_or_inconsistent_one_does_not():
    from napari_uamc.engine.teacher_targets import case_plausibility

    shape = (24, 24, 24)
    probabilities, sdf, n = _ball_maps(shape, 6)
    volumes = [(n // 2 + 1, n)]  # the labeled cases' range holds this ball's volume
    assert case_plausibility(probabilities, sdf, volumes).plausible
    # a teacher that misses the structure with confidence: nothing predicted
    empty = np.stack([np.ones(shape, np.float32), np.zeros(shape, np.float32)])
    assert not case_plausibility(empty, sdf, volumes).plausible
    # a volume 3x the largest labeled one
    big, big_sdf, _ = _ball_maps(shape, 6 * 3 ** (1 / 3))
    reading = case_plausibility(big, big_sdf, volumes)
    assert reading.volume_ratios[0] > 2 and reading.agreements[0] > 0.95 and not reading.plausible
    # the two heads disagree: the SDF's zero level is a ball half the radius
    reading = case_plausibility(probabilities, _ball_maps(shape, 6, sdf_radius=3)[1], volumes)
    assert reading.volume_ratios == (1.0,) and reading.agreements[0] < 0.3 and not reading.plausible


def test_gated_targets_of_an_implausible_case_are_trusted_nowhere(monkeypatch):
    import napari_uamc.engine.teacher_targets as module

    labeled = [_case(i, labeled=True) for i in range(2)]
    unlabeled = [_case(10 + i, labeled=False) for i in range(2)]
    cfg = TrainConfig(**TINY, terms=ALL_TERMS, teacher_refresh=1, target_gate=True)
    targets = TeacherTargets(unlabeled, cfg, device=torch.device("cpu"), dtype=torch.float32, labeled=labeled)
    shape = unlabeled[0].image.shape
    probabilities, sdf, n = _ball_maps(shape, 5)
    volumes = [int(c.label.sum()) for c in labeled]
    assert targets.volumes == [(min(volumes), max(volumes))]
    empty = np.stack([np.ones(shape, np.float32), np.zeros(shape, np.float32)])
    answers = iter([empty, probabilities])  # case 0: nothing found; case 1: a ball like the labels

    def maps(net, image, *args):
        p = next(answers)
        return p, sdf, np.zeros(shape, np.float32), {}

    monkeypatch.setattr(module, "network_maps", maps)
    targets.update(0, *[Trainer(cfg, labeled, unlabeled, device="cpu").student] * 2)
    assert [m.trusted for m in targets.maps] == [False, True]
    assert targets.update(0, None, None) == []  # once per step: the fine-tune's own call came first
    assert (targets.computed, targets.implausible) == (2, 1)
    assert not targets.taught_cases  # trusted (case 1), but no step used its targets yet
    assert float(targets.maps[0].headroom.max()) == 0.0  # uncertain everywhere: masked out
    assert float(targets.maps[1].headroom.min()) > 0.6  # ln 2 - 0: trusted where certain
    with pytest.raises(ValueError, match="target_gate"):
        TrainConfig(**TINY, target_gate=True)  # without teacher_refresh


def test_the_gate_reads_a_class_no_label_holds_as_plausible_only_where_nothing_is_predicted():
    from napari_uamc.engine.teacher_targets import case_plausibility, labeled_volumes

    shape = (12, 12, 12)
    with_class = np.zeros(shape, np.uint8)
    with_class[2:6, 2:6, 2:6] = 1  # 64 voxels
    empty = np.zeros(shape, np.uint8)
    cases = [TrainingCase.from_arrays(name, np.zeros(shape, np.float32), label, (1.0, 1.0, 1.0))
             for name, label in (("a", with_class), ("b", empty))]
    # an empty label says nothing of the class's size; class 2 is in no label
    assert labeled_volumes(cases, 3) == [(64, 64), (0, 0)]
    probabilities = np.zeros((3, *shape), np.float32)
    probabilities[0] = 1.0
    probabilities[:, 2:6, 2:6, 2:6] = np.array([0.0, 1.0, 0.0])[:, None, None, None]
    sdf = np.ones((2, *shape), np.float32)
    sdf[0, 2:6, 2:6, 2:6] = -1.0
    reading = case_plausibility(probabilities, sdf, labeled_volumes(cases, 3))
    assert reading.plausible and reading.volume_ratios == (1.0, 1.0) and reading.agreements == (1.0, 1.0)
    probabilities[:, 8:10, 8:10, 8:10] = np.array([0.0, 0.0, 1.0])[:, None, None, None]  # class 2 appears
    sdf[1, 8:10, 8:10, 8:10] = -1.0
    reading = case_plausibility(probabilities, sdf, labeled_volumes(cases, 3))
    assert reading.volume_ratios[1] == math.inf and not reading.plausible


def test_the_method_sentence_says_how_many_other_cases_taught_the_version():
    from napari_uamc.engine.finetune_start import method_sentence

    before = method_sentence(True, False, 5)
    assert "it also learns from the 5 other cases" in before and "taught" not in before
    assert "the 5 other cases taught it too" in method_sentence(True, False, 5, taught=5)
    assert "2 of the 5 other cases taught it too" in method_sentence(True, False, 5, taught=2)
    assert "only the accepted cases taught it" in method_sentence(True, False, 5, taught=0)
