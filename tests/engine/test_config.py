"""The training config: paper defaults, JSON round trip, validation, term sets."""

from __future__ import annotations

import json

import pytest

from napari_uamc.engine.config import (
    ALL_TERMS,
    TrainConfig,
    ablation_terms,
    method_terms,
    parse_terms,
)
from napari_uamc.errors import InputError


def test_paper_defaults():
    cfg = TrainConfig()
    assert (cfg.lr, cfg.momentum, cfg.weight_decay) == (0.01, 0.9, 1e-4)
    assert (cfg.lr_step, cfg.lr_gamma, cfg.iterations) == (2500, 0.1, 6000)
    assert (cfg.batch_size, cfg.labeled_batch_size, cfg.unlabeled_batch_size) == (4, 2, 2)
    assert cfg.patch == (112, 112, 80) and cfg.seed == 1337
    assert (cfg.width, cfg.n_classes, cfg.norm, cfg.dropout) == (16, 2, "batch", 0.5)
    assert (cfg.mc_samples, cfg.noise_std, cfg.noise_clip, cfg.ema_alpha) == (8, 0.1, 0.2, 0.99)
    assert (cfg.beta, cfg.consistency, cfg.tau_base, cfg.tau_range) == (0.75, 0.1, 0.75, 0.25)
    assert cfg.sdf_k == 1500 and cfg.sdf_mse_weight == 0.0 and cfg.terms == ALL_TERMS
    assert cfg.teacher_target == "single" and cfg.rampup_length == 6000
    assert not (cfg.finetune or cfg.bn_recalibration or cfg.keep_ema)


def test_learning_rate_schedule_and_finetune():
    cfg = TrainConfig()
    assert cfg.lr_at(0) == 0.01 and cfg.lr_at(2499) == 0.01
    assert cfg.lr_at(2500) == pytest.approx(0.001) and cfg.lr_at(5000) == pytest.approx(1e-4)
    tuned = cfg.replace(finetune=True)
    assert tuned.base_lr == 0.001 and tuned.rampup_length == 0
    assert cfg.replace(consistency_rampup=40).rampup_length == 40


def test_json_round_trip_and_unknown_keys():
    cfg = TrainConfig(terms="seg,dis", patch=[32, 32, 16], width=8, consistency_rampup=100)
    data = json.loads(json.dumps(cfg.to_dict()))
    assert data["terms"] == ["dis", "seg"] and data["patch"] == [32, 32, 16]
    assert TrainConfig.from_dict(data) == cfg
    with pytest.warns(UserWarning, match="from_the_future"):
        again = TrainConfig.from_dict({**data, "from_the_future": 1})
    assert again == cfg
    with pytest.raises(InputError):
        TrainConfig.from_dict(["not", "a", "dict"])
    # a record written before a key was renamed reads the same
    old = {key: value for key, value in data.items() if key != "cold_start_rules"}
    assert TrainConfig.from_dict({**old, "cold_start": False}) == cfg.replace(cold_start_rules=False)


@pytest.mark.parametrize(
    "changes",
    [{"lr": 0}, {"patch": (112, 112, 81)}, {"patch": (16, 16)}, {"labeled_batch_size": 5},
     {"norm": "group"}, {"dropout": 1.0}, {"beta": 1.5}, {"teacher_target": "mean"},
     {"n_classes": 1}, {"terms": {"seg", "foo"}}, {"terms": {"dis"}}, {"iterations": 0},
     {"consistency_rampup": -1}, {"finetune": "yes"}, {"width": 2.5}],
)
def test_invalid_values_raise_input_error(changes):
    with pytest.raises(InputError):
        TrainConfig(**changes)


def test_term_sets():
    assert ablation_terms(1) == {"seg"}
    assert ablation_terms(2) == {"seg", "dis"}
    assert ablation_terms(3) == {"seg", "itc"}
    assert ablation_terms(4) == {"seg", "dis", "itc"}
    assert ablation_terms(5) == {"seg", "dis", "ctc"}
    assert ablation_terms(6) == ALL_TERMS == method_terms("ugmcl")
    assert method_terms("supervised") == {"seg"}
    for bad in (0, 7, True):
        with pytest.raises(InputError):
            ablation_terms(bad)
    with pytest.raises(InputError, match="ugmcl"):
        method_terms("mean-teacher")
    assert parse_terms(" seg, itc ctc") == {"seg", "itc", "ctc"}


def test_row_three_uses_segmentation_consistency_only():
    assert TrainConfig(terms=ablation_terms(3)).effective_beta == 1.0
    assert not TrainConfig(terms=ablation_terms(3)).uses_sdf_head
    assert TrainConfig(terms=ablation_terms(4)).effective_beta == 0.75
    assert TrainConfig().effective_beta == 0.75
