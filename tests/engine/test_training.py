"""The trainer on tiny phantoms: every method and ablation row, stop, resume, errors, export,
data-parallel training (gloo, two processes); ``uamc train`` is in tests/cli/test_train.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _helpers import noisy_sphere
from napari_uamc.engine.checkpoint import load_checkpoint
from napari_uamc.engine.config import ALL_TERMS, TrainConfig, ablation_terms, method_terms
from napari_uamc.engine.dataset import TrainingCase
from napari_uamc.engine.training import Trainer, train
from napari_uamc.errors import InputError, TrainingError

SHAPE = (32, 32, 24)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(width=2, patch=(16, 16, 16), iterations=2, mc_samples=2, precision="float32", seed=3)


def sphere_case(seed: int, labeled: bool = True, shape=SHAPE) -> TrainingCase:
    image, label = noisy_sphere(seed, shape, shift=3, radius=(5, 8))
    return TrainingCase.from_arrays(f"case{seed}", image, label if labeled else None, (1.0, 1.0, 1.5))


@pytest.fixture(scope="module")
def cases():
    return [sphere_case(i) for i in range(2)], [sphere_case(10 + i, labeled=False) for i in range(2)]


def _run(cfg, cases, **kwargs):
    labeled, unlabeled = cases
    trainer = Trainer(cfg, labeled, unlabeled, device="cpu", **kwargs)
    return trainer, list(trainer.steps())


@pytest.mark.parametrize(
    "terms",
    [method_terms("ugmcl"), method_terms("supervised")] + [ablation_terms(row) for row in range(2, 6)],
    ids=["ugmcl", "supervised", "row2", "row3", "row4", "row5"],
)
def test_each_method_and_ablation_row_trains(cases, terms):
    trainer, reports = _run(TrainConfig(**TINY, terms=terms), cases)
    assert [r.iteration for r in reports] == [1, 2]
    for report in reports:
        assert set(report.losses) == {"total"} | set(terms)
        assert all(math.isfinite(v) for v in report.losses.values())
        assert report.total == 2 and report.lr == pytest.approx(0.01)
        assert (report.threshold is not None) == ("itc" in terms)
        if "itc" in terms:
            assert 0.0 <= report.mask_fraction <= 1.0
            assert report.threshold <= math.log(2)
    expected_total = reports[-1].losses["seg"] + reports[-1].losses.get("dis", 0.0) + reports[-1].consistency_weight * (
        reports[-1].losses.get("itc", 0.0) + reports[-1].losses.get("ctc", 0.0))
    assert reports[-1].losses["total"] == pytest.approx(expected_total, rel=1e-5)
    # the teacher follows the student: after step 0 it is an exact copy, then an EMA
    assert any(not torch.equal(a, b) for a, b in zip(trainer.teacher.parameters(), trainer.student.parameters()))


def test_batch_holds_unlabeled_samples_only_for_consistency_terms(cases):
    semi = Trainer(TrainConfig(**TINY), *cases, device="cpu")
    sup = Trainer(TrainConfig(**TINY, terms=method_terms("supervised")), *cases, device="cpu")
    assert semi.batches[0]["image"].shape[0] == 4 and semi.batches[0]["label"].shape[0] == 2
    assert sup.batches[0]["image"].shape[0] == 2


def test_mc_mean_target_and_single_pass_chunks_run(cases):
    _, reports = _run(TrainConfig(**TINY, teacher_target="mc_mean", mc_chunk=1), cases)
    assert math.isfinite(reports[-1].losses["itc"])


def test_bfloat16_autocast_trains(cases):
    _, reports = _run(TrainConfig(**{**TINY, "precision": "bfloat16"}), cases)
    assert all(math.isfinite(v) for v in reports[-1].losses.values())


def test_schedule_and_consistency_ramp(cases):
    cfg = TrainConfig(**{**TINY, "iterations": 3, "lr_step": 2, "lr_gamma": 0.5}, consistency_rampup=2,
                      terms=frozenset({"seg", "ctc"}))
    _, reports = _run(cfg, cases)
    assert [r.lr for r in reports] == pytest.approx([0.01, 0.01, 0.005])
    assert reports[0].consistency_weight == pytest.approx(0.1 * math.exp(-5))
    assert reports[2].consistency_weight == pytest.approx(0.1)


def test_should_stop_ends_early_and_a_spent_time_budget_ends_normally(cases):
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) > 1

    trainer, reports = _run(TrainConfig(**{**TINY, "iterations": 5}), cases, should_stop=stop)
    assert len(reports) == 1 and trainer.iteration == 1 and trainer.stopped_early
    trainer, reports = _run(TrainConfig(**TINY), cases, time_budget=0.0)
    assert reports == [] and trainer.iteration == 0
    assert not trainer.stopped_early  # the budget was the plan: the version is not "stopped early"


def _on_a_fake_clock(trainer, step_seconds):
    """``trainer`` on a fake clock on which each of its steps takes ``step_seconds``."""
    now = [100.0]
    real_step = trainer._step

    def step(batch):
        now[0] += step_seconds
        return real_step(batch)

    trainer.clock, trainer._step = (lambda: now[0]), step
    return trainer


def test_a_time_budget_ends_before_a_step_would_overrun_it(cases):
    """Clinician try-out: a 60 s budget trained 66-68 s: the budget was checked before each step
    only, so the last step started just before the end and ran a whole step (6-8 s) past it."""
    config = TrainConfig(**{**TINY, "iterations": 100})
    trainer = _on_a_fake_clock(Trainer(config, *cases, device="cpu", time_budget=35.0), 10.0)
    reports = list(trainer.steps())
    # 3 steps end at 30 s; a 4th would end at 40 s, past the 35 s budget: it does not start
    assert [r.iteration for r in reports] == [1, 2, 3] and trainer.seconds == 30.0
    assert [r.last for r in reports] == [False, False, True] and reports[-1].eta_seconds == 0.0
    assert not trainer.stopped_early  # the budget was the plan
    # a step that fits exactly runs; the first step runs even when longer than the budget
    assert len(list(_on_a_fake_clock(Trainer(config, *cases, device="cpu", time_budget=40.0), 10.0).steps())) == 4
    assert len(list(_on_a_fake_clock(Trainer(config, *cases, device="cpu", time_budget=5.0), 10.0).steps())) == 1


def test_the_last_report_of_an_iterations_budget_says_it_is_the_last(cases):
    _, reports = _run(TrainConfig(**TINY), cases)
    assert [r.last for r in reports] == [False, True]


def test_resume_continues_exactly(cases, tmp_path):
    cfg = TrainConfig(**{**TINY, "iterations": 4, "lr_step": 3})
    straight, _ = _run(cfg, cases)

    first = Trainer(cfg, *cases, device="cpu", should_stop=lambda: first.iteration >= 2)
    list(first.steps())
    assert first.iteration == 2
    path = tmp_path / "state.pt"
    torch.save(first.state_dict(), path)
    state = torch.load(path, weights_only=True)

    resumed = Trainer(cfg, *cases, device="cpu")
    resumed.load_state_dict(state)
    reports = list(resumed.steps())
    assert [r.iteration for r in reports] == [3, 4]
    assert reports[-1].lr == pytest.approx(0.001)
    for model in ("student", "teacher"):
        for (name, a), b in zip(getattr(straight, model).state_dict().items(),
                                getattr(resumed, model).state_dict().values()):
            assert torch.equal(a, b), f"{model} {name} differs after resuming"


def test_resume_refuses_other_cases(cases):
    cfg = TrainConfig(**TINY)
    state = Trainer(cfg, *cases, device="cpu").state_dict()
    other = Trainer(cfg, cases[0][:1], cases[1], device="cpu")
    with pytest.raises(TrainingError, match="other cases"):
        other.load_state_dict(state)
    with pytest.raises(TrainingError, match="not a napari-uamc"):
        other.load_state_dict({"format": "something else"})


def test_save_state_and_load_state_round_trip(cases, tmp_path):
    cfg = TrainConfig(**{**TINY, "iterations": 3})
    first = Trainer(cfg, *cases, device="cpu", should_stop=lambda: first.iteration >= 2)
    list(first.steps())
    path = tmp_path / "model.resume.pt"
    first.save_state(path, data_json='{"data": "spheres"}')
    assert [p.name for p in tmp_path.iterdir()] == ["model.resume.pt"]  # no temporary file left
    stored = torch.load(path, weights_only=True)
    assert stored["iteration"] == 2 and stored["data_json"] == '{"data": "spheres"}'
    second = Trainer(cfg, *cases, device="cpu")
    second.load_state(path)
    assert second.iteration == 2
    for model in ("student", "teacher"):
        for a, b in zip(getattr(first, model).state_dict().values(), getattr(second, model).state_dict().values()):
            assert torch.equal(a, b)
    assert second.optimizer.state_dict()["state"].keys() == first.optimizer.state_dict()["state"].keys()
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a napari-uamc training state"):
        second.load_state(tmp_path / "other.pt")


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_state(cases):
    labeled = [TrainingCase(c.name, c.image.copy(), c.label, c.spacing) for c in cases[0]]
    trainer = Trainer(TrainConfig(**{**TINY, "iterations": 5}), labeled, cases[1], device="cpu")
    steps = trainer.steps()
    next(steps), next(steps)
    for case in labeled:
        case.image[:] = np.nan
    with pytest.raises(TrainingError, match="not finite at iteration 3.*restored to iteration 1"):
        next(steps)  # the NaN batch also reached the BatchNorm statistics: back to a checked state
    assert trainer.iteration == 1
    assert all(torch.isfinite(b).all() for b in trainer.student.buffers() if b.is_floating_point())
    assert all(torch.isfinite(p).all() for p in trainer.student.parameters())


def test_bad_setups_raise_clear_errors(cases):
    with pytest.raises(TrainingError, match="labeled set is empty"):
        Trainer(TrainConfig(**TINY), [], cases[1], device="cpu")
    with pytest.raises(TrainingError, match="labeled set is empty"):
        list(train(TrainConfig(**TINY), [], cases[1], device="cpu"))
    with pytest.raises(InputError, match="does not fit"):
        bad = TrainingCase("x", cases[0][0].image, cases[0][0].label * 3, (1.0, 1.0, 1.0))
        Trainer(TrainConfig(**TINY), [bad], cases[1], device="cpu")
    with pytest.raises(InputError, match="precision"):
        Trainer(TrainConfig(**{**TINY, "precision": "half"}), *cases, device="cpu")


def test_no_unlabeled_cases_falls_back_to_supervised_with_a_warning(cases):
    with pytest.warns(UserWarning, match="no unlabeled cases"):
        trainer = Trainer(TrainConfig(**TINY), cases[0], [], device="cpu")
    assert trainer.terms == frozenset({"seg", "dis"})
    reports = list(trainer.steps())
    assert "no unlabeled cases" in reports[0].message
    assert set(reports[0].losses) == {"total", "seg", "dis"}


def test_out_of_memory_becomes_a_training_error(cases, monkeypatch):
    trainer = Trainer(TrainConfig(**TINY), *cases, device="cpu")

    def exhausted(batch):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")

    monkeypatch.setattr(trainer, "_step", exhausted)
    with pytest.raises(TrainingError, match="smaller --patch or --batch-size"):
        list(trainer.steps())


def test_export_writes_a_loadable_model_with_metadata(cases, tmp_path):
    trainer, _ = _run(TrainConfig(**TINY), cases)
    meta = trainer.export(tmp_path / "m.pt", spacing=(1.0, 1.0, 1.5), trained_on="spheres", synthetic_only=True)
    model, loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.width == 2 and loaded.patch == (16, 16, 16) and loaded.spacing == (1.0, 1.0, 1.5)
    assert loaded.synthetic_only and loaded.config["terms"] == sorted(ALL_TERMS)
    assert loaded.history[-1]["iterations"] == 2 and loaded.history[-1]["labeled"] == ["case0", "case1"]
    assert meta.to_dict() == loaded.to_dict()
    for a, b in zip(model.state_dict().values(), trainer.student.state_dict().values()):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------- data parallel
def _ddp_worker(rank: int, world_size: int, folder: str) -> None:
    import torch.distributed as dist

    from napari_uamc.engine.distributed import DistContext

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    try:
        labeled = [sphere_case(i) for i in range(2)]
        unlabeled = [sphere_case(10 + i, labeled=False) for i in range(2)]
        cfg = TrainConfig(**{**TINY, "iterations": 3})
        trainer = Trainer(cfg, labeled, unlabeled, device="cpu", dist_context=DistContext(rank, world_size, rank))
        reports = list(trainer.steps())
        torch.save(
            {"student": dict(trainer.student.named_parameters()),
             "teacher": dict(trainer.teacher.named_parameters()),
             "loss": reports[0].losses["total"]},
            f"{folder}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_data_parallel_keeps_ranks_in_sync(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0["loss"] != rank1["loss"]  # each rank saw its own batches
    for model in ("student", "teacher"):  # BatchNorm buffers stay per rank (DDP's convention)
        assert len(rank0[model]) > 50
        for name, tensor in rank0[model].items():
            torch.testing.assert_close(tensor, rank1[model][name], rtol=0, atol=1e-6, msg=name)


def test_reports_between_host_syncs_repeat_the_last_values(cases, monkeypatch):
    """As on CUDA: losses are read only every few steps (and at the first and last)."""
    trainer = Trainer(TrainConfig(**{**TINY, "iterations": 4}), *cases, device="cpu")
    monkeypatch.setattr(trainer, "_sync_every", lambda: 3)
    reports = list(trainer.steps())
    assert [r.fresh for r in reports] == [True, False, True, True]
    assert reports[1].losses == reports[0].losses
    assert reports[2].losses != reports[1].losses


def test_cases_resampled_to_a_target_spacing(tmp_path):
    import h5py

    from napari_uamc.engine.dataset import load_cases_from_folder
    from napari_uamc.engine.preprocess import resample_label

    image, label = noisy_sphere(0, (40, 36, 24), shift=2, radius=(8, 9))
    (tmp_path / "a").mkdir()
    with h5py.File(tmp_path / "a" / "mri_norm2.h5", "w") as handle:
        handle["image"], handle["label"] = image, label
    native = load_cases_from_folder(tmp_path, h5_spacing=0.625).labeled[0]
    coarse = load_cases_from_folder(tmp_path, h5_spacing=0.625, target_spacing=(1.25,) * 3).labeled[0]
    assert native.image.shape == (40, 36, 24) and coarse.image.shape == (20, 18, 12)
    assert coarse.spacing == pytest.approx((1.25,) * 3)
    assert set(np.unique(coarse.label)) == {0, 1}
    # the ball keeps its physical volume within 10 % (8 fine voxels = 1 coarse voxel; a coarse
    # voxel half inside goes to the background, which shrinks a radius-8 ball by about 7 %)
    assert coarse.label.sum() * 8 == pytest.approx(native.label.sum(), rel=0.1)
    assert abs(float(coarse.image.mean())) < 1e-4  # z-scored after resampling
    # class-wise linear resampling: a three-class map keeps every class, no value is invented
    three = label.copy()
    three[:, :18][label[:, :18] == 1] = 2
    small = resample_label(three, (20, 18, 12))
    assert set(np.unique(small)) == {0, 1, 2}
