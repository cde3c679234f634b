"""Loss terms, ramps, threshold and EMA against values computed here with plain numpy."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from napari_uamc.engine.config import TrainConfig, ablation_terms
from napari_uamc.engine.ema import ema_decay, update_ema
from napari_uamc.engine.losses import (
    consistency_weight,
    cross_task_consistency,
    dice_loss,
    entropy,
    intra_task_consistency,
    ramp,
    supervised_loss,
    uncertainty_threshold,
)
from napari_uamc.engine.model import DualTaskVNet

K = 1500.0


def np_softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_dice_loss(p, g, eps=1e-5):
    return 1 - (2 * np.sum(p * g) + eps) / (np.sum(p * p) + np.sum(g * g) + eps)


def np_t_inv(sdf):
    return 1 / (1 + np.exp(K * sdf))


# Tiny explicit 2x2x2 example, one labeled sample.
LOGITS = np.array(
    [[[[0.2, -1.0], [1.5, 0.3]], [[-0.4, 0.8], [2.0, -2.0]]],
     [[[1.0, 0.5], [-0.5, 0.0]], [[0.6, -0.2], [1.0, 1.0]]]]
)[None]  # [1, 2, 2, 2, 2]
LABEL = np.array([[[1, 1], [0, 0]], [[1, 0], [0, 1]]])[None]  # [1, 2, 2, 2]
SDF = np.array([[[-0.001, -0.002], [0.001, 0.0]], [[-0.0005, 0.003], [0.002, -0.001]]])[None, None]
SDF_TARGET = np.array([[[-0.5, -1.0], [0.5, 0.25]], [[0.0, 0.5], [1.0, -0.25]]])[None, None]


def _t(a, dtype=torch.float32):
    return torch.tensor(a, dtype=dtype)


def test_dice_loss_formula():
    p = np.array([0.9, 0.2, 0.6, 0.0])
    g = np.array([1.0, 0.0, 1.0, 1.0])
    assert dice_loss(_t(p), _t(g)).item() == pytest.approx(np_dice_loss(p, g), rel=1e-6)
    # 2*(0.9+0.6)/(0.81+0.04+0.36+0+3) by hand
    assert dice_loss(_t(p), _t(g), eps=0).item() == pytest.approx(1 - 3.0 / 4.21, rel=1e-6)
    assert dice_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(0.0)


def test_supervised_loss_against_numpy():
    cfg = TrainConfig(sdf_mse_weight=0.3)
    out = supervised_loss(_t(LOGITS), _t(SDF), _t(LABEL, torch.long), _t(SDF_TARGET),
                          ablation_terms(6), cfg)
    prob = np_softmax(LOGITS)
    ce = -np.mean(np.log(np.take_along_axis(prob, LABEL[:, None], axis=1)))
    dice = np_dice_loss(prob[:, 1], LABEL == 1)
    dis = np_dice_loss(np_t_inv(SDF[:, 0]), LABEL == 1)
    mse = np.mean((SDF - SDF_TARGET) ** 2)
    assert out["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["dice"].item() == pytest.approx(dice, rel=1e-5)
    assert out["dis_dice"].item() == pytest.approx(dis, rel=1e-5)
    assert out["sdf_mse"].item() == pytest.approx(mse, rel=1e-5)
    assert out["sup"].item() == pytest.approx(0.5 * (ce + dice + dis) + 0.3 * mse, rel=1e-5)


def test_supervised_loss_term_switches():
    cfg = TrainConfig()  # sdf_mse_weight 0: no MSE
    seg_only = supervised_loss(_t(LOGITS), _t(SDF), _t(LABEL, torch.long), None,
                               ablation_terms(1), cfg)
    assert set(seg_only) == {"ce", "dice", "sup"}
    assert seg_only["sup"].item() == pytest.approx(
        0.5 * (seg_only["ce"].item() + seg_only["dice"].item()), rel=1e-6)
    with_dis = supervised_loss(_t(LOGITS), _t(SDF), _t(LABEL, torch.long), None,
                               ablation_terms(2), cfg)
    assert set(with_dis) == {"ce", "dice", "dis_dice", "sup"}
    with pytest.raises(ValueError, match="sdf_target"):
        supervised_loss(_t(LOGITS), _t(SDF), _t(LABEL, torch.long), None, ablation_terms(2),
                        TrainConfig(sdf_mse_weight=0.3))


def test_supervised_loss_three_classes_averages_foreground_dice():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 2, 2, 2))
    label = rng.integers(0, 3, size=(2, 2, 2, 2))
    sdf = rng.uniform(-0.003, 0.003, size=(2, 2, 2, 2, 2))
    out = supervised_loss(_t(logits), _t(sdf), _t(label, torch.long), None,
                          ablation_terms(2), TrainConfig(n_classes=3))
    prob = np_softmax(logits)
    dice = np.mean([np_dice_loss(prob[:, c], label == c) for c in (1, 2)])
    dis = np.mean([np_dice_loss(np_t_inv(sdf[:, c - 1]), label == c) for c in (1, 2)])
    assert out["dice"].item() == pytest.approx(dice, rel=1e-5)
    assert out["dis_dice"].item() == pytest.approx(dis, rel=1e-5)


def test_supervised_loss_backpropagates_under_bfloat16_inputs():
    logits = _t(LOGITS).bfloat16().requires_grad_()
    out = supervised_loss(logits, _t(SDF).bfloat16(), _t(LABEL, torch.long), None,
                          ablation_terms(2), TrainConfig())
    assert out["sup"].dtype == torch.float32
    out["sup"].backward()
    assert torch.isfinite(logits.grad.float()).all()


def test_ramp_values():
    assert ramp(0, 100) == pytest.approx(math.exp(-5))
    assert ramp(50, 100) == pytest.approx(math.exp(-5 * 0.25))
    assert ramp(100, 100) == 1.0 and ramp(250, 100) == 1.0
    assert ramp(0, 0) == 1.0 and ramp(7, 0) == 1.0


def test_uncertainty_threshold_and_consistency_weight():
    cfg = TrainConfig(iterations=100)
    assert uncertainty_threshold(0, 100, 2, cfg) == pytest.approx(
        (0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert uncertainty_threshold(100, 100, 2, cfg) == pytest.approx(math.log(2))
    assert uncertainty_threshold(100, 100, 3, cfg) == pytest.approx(math.log(3))
    assert consistency_weight(0, cfg) == pytest.approx(0.1 * math.exp(-5))
    assert consistency_weight(100, cfg) == pytest.approx(0.1)
    assert consistency_weight(10, cfg.replace(consistency_rampup=10)) == pytest.approx(0.1)
    assert consistency_weight(0, cfg.replace(finetune=True)) == pytest.approx(0.1)


def test_entropy_in_nats():
    p = torch.tensor([[0.5, 1.0, 0.9], [0.5, 0.0, 0.1]])[None]  # [1, C=2, 3 voxels]
    expected = [math.log(2), 0.0, -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))]
    np.testing.assert_allclose(entropy(p)[0].numpy(), expected, rtol=1e-6)


def test_intra_task_consistency_against_numpy():
    rng = np.random.default_rng(1)
    ps = np_softmax(rng.normal(size=(2, 2, 2, 2, 2)))
    pt = np_softmax(rng.normal(size=(2, 2, 2, 2, 2)))
    ss, st = rng.uniform(-1, 1, size=(2, 2, 1, 2, 2, 2))
    u = rng.uniform(0, math.log(2), size=(2, 2, 2, 2))
    threshold, beta = 0.5, 0.75
    m = (u < threshold)[:, None]
    seg = np.sum(m * (ps - pt) ** 2) / (2 * m.sum())
    sdf = np.sum(m * (ss - st) ** 2) / (1 * m.sum())
    loss, fraction = intra_task_consistency(_t(ps), _t(ss), _t(pt), _t(st), _t(u), threshold, beta)
    assert loss.item() == pytest.approx(beta * seg + (1 - beta) * sdf, rel=1e-5)
    assert fraction.item() == pytest.approx(m.mean())
    # beta = 1: segmentation only, SDFs not needed; [B, 1, ...] uncertainty accepted.
    loss1, _ = intra_task_consistency(_t(ps), None, _t(pt), None, _t(u)[:, None], threshold, 1.0)
    assert loss1.item() == pytest.approx(seg, rel=1e-5)
    with pytest.raises(ValueError):
        intra_task_consistency(_t(ps), None, _t(pt), None, _t(u), threshold, 0.5)


def test_intra_task_consistency_empty_mask_and_teacher_detached():
    ps = torch.rand(1, 2, 2, 2, 2, requires_grad=True)
    pt = torch.rand(1, 2, 2, 2, 2, requires_grad=True)
    loss, fraction = intra_task_consistency(ps, None, pt, None, torch.ones(1, 2, 2, 2), 0.5, 1.0)
    assert loss.item() == 0.0 and fraction.item() == 0.0
    loss, _ = intra_task_consistency(ps, None, pt, None, torch.zeros(1, 2, 2, 2), 0.5, 1.0)
    loss.backward()
    assert ps.grad is not None and pt.grad is None


def test_cross_task_consistency_against_numpy():
    rng = np.random.default_rng(2)
    prob = np_softmax(rng.normal(size=(2, 3, 2, 2, 2)))
    sdf = rng.uniform(-0.003, 0.003, size=(2, 2, 2, 2, 2))
    per_class = [np.mean((np_t_inv(sdf[:, c - 1]) - prob[:, c]) ** 2) for c in (1, 2)]
    value = cross_task_consistency(_t(prob), _t(sdf), K).item()
    assert value == pytest.approx(np.mean(per_class), rel=1e-5)


def test_ema_decay_and_update():
    assert ema_decay(0) == 0.0
    assert ema_decay(5) == pytest.approx(1 - 1 / 6)
    assert ema_decay(1000) == 0.99
    assert ema_decay(500, alpha_max=0.999) == pytest.approx(1 - 1 / 501)

    torch.manual_seed(0)
    student = DualTaskVNet(width=2)
    teacher = DualTaskVNet(width=2)
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.encoder[0][0].norm.running_mean.fill_(3.0)
    assert update_ema(teacher, student, step=0) == 0.0
    for t, s in zip(teacher.parameters(), student.parameters()):
        assert torch.equal(t, s)
    assert torch.all(teacher.encoder[0][0].norm.running_mean == 3.0)  # buffers untouched

    before = copy.deepcopy(teacher)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    alpha = update_ema(teacher, student, step=5)
    assert alpha == pytest.approx(5 / 6)
    for t, b, s in zip(teacher.parameters(), before.parameters(), student.parameters()):
        torch.testing.assert_close(t, alpha * b + (1 - alpha) * s)

    with pytest.raises(ValueError):
        update_ema(DualTaskVNet(width=4), student, step=1)
