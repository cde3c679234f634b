"""The training run and its files: model, log and resume state; Ctrl-C and a stop keep a state
that a resumed run continues from exactly; only rank 0 writes (two gloo processes)."""

from __future__ import annotations

import json

import pytest
import torch

from _helpers import noisy_sphere
from napari_uamc.engine.checkpoint import load_checkpoint
from napari_uamc.engine.config import TrainConfig
from napari_uamc.engine.dataset import TrainingCase
from napari_uamc.engine.training_run import RunPaths, log_line, run_training
from napari_uamc.engine.training_state import read_training_state, state_config
from napari_uamc.errors import InputError, TrainingError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(width=2, patch=(16, 16, 16), iterations=3, mc_samples=2, precision="float32", seed=3, log_interval=1)
SPACING = (1.0, 1.0, 1.5)


def sphere_case(seed: int, labeled: bool = True) -> TrainingCase:
    image, label = noisy_sphere(seed, (32, 32, 24), shift=3, radius=(5, 8))
    return TrainingCase.from_arrays(f"case{seed}", image, label if labeled else None, SPACING)


@pytest.fixture(scope="module")
def cases():
    return [sphere_case(i) for i in range(2)], [sphere_case(10 + i, labeled=False) for i in range(2)]


def _run(cfg, cases, out, **kwargs):
    return run_training(cfg, *cases, out, spacing=SPACING, device="cpu", **kwargs)


def test_run_writes_model_log_and_resume_state(cases, tmp_path):
    out = tmp_path / "runs" / "model.pt"  # the folder is created
    steps, messages = [], []
    result = _run(TrainConfig(**TINY), cases, out, checkpoint_every=2, log_title="test spheres",
                  state_extra={"data_json": json.dumps({"data": "spheres"})},
                  export_fields={"trained_on": "spheres", "class_names": ["background", "ball"]},
                  on_step=steps.append, on_message=messages.append)
    assert result.paths == RunPaths(out, out.with_name("model.resume.pt"), out.with_name("model.log"))
    assert result.iterations == 3 and [r.iteration for r in steps] == [1, 2, 3]
    assert any(m.startswith("training on cpu (float32); log: ") for m in messages)
    model, meta = load_checkpoint(out)
    assert meta == result.meta and meta.trained_on == "spheres" and meta.class_names == ["background", "ball"]
    assert meta.spacing == SPACING and meta.history[-1]["iterations"] == 3
    log = result.paths.log.read_text().splitlines()
    assert log[0].startswith(f"# test spheres -> {out}; config {{")
    assert log[1:] == [log_line(r) for r in steps]
    state = read_training_state(result.paths.resume)
    assert state["iteration"] == 3 and json.loads(state["data_json"]) == {"data": "spheres"}
    assert state_config(state) == TrainConfig(**TINY)
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.log", "model.pt", "model.resume.pt"]


def test_interrupted_run_keeps_a_state_and_resumes_exactly(cases, tmp_path):
    cfg = TrainConfig(**{**TINY, "iterations": 4, "lr_step": 3})
    straight = _run(cfg, cases, tmp_path / "straight.pt")

    def ctrl_c_after_two(report):
        if report.iteration == 2:
            raise KeyboardInterrupt

    messages = []
    out = tmp_path / "model.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(cfg, cases, out, checkpoint_every=0, on_step=ctrl_c_after_two, on_message=messages.append)
    assert not out.exists()  # no model from an interrupted run
    resume = out.with_name("model.resume.pt")
    assert f"interrupted at iteration 2; continue with --resume {resume}" in messages
    state = read_training_state(resume)
    assert state["iteration"] == 2
    messages.clear()
    resumed = _run(state_config(state), cases, out, resume_state=state, on_message=messages.append)
    assert resumed.iterations == 4 and messages[0] == "resuming at iteration 2 of 4"
    assert read_training_state(resume)["iteration"] == 4
    a, b = load_checkpoint(straight.paths.model)[0], load_checkpoint(out)[0]
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), f"{name} differs after resuming"
    assert sum(line.startswith("# ") for line in out.with_name("model.log").read_text().splitlines()) == 2


def test_a_training_error_keeps_the_state(cases, tmp_path):
    def fail(report):
        raise TrainingError("the loss is not finite")

    messages = []
    with pytest.raises(TrainingError):
        _run(TrainConfig(**TINY), cases, tmp_path / "m.pt", on_step=fail, on_message=messages.append)
    assert read_training_state(tmp_path / "m.resume.pt")["iteration"] == 1
    assert f"training state kept in {tmp_path / 'm.resume.pt'}" in messages


def test_bad_run_settings_raise_before_training(cases, tmp_path):
    with pytest.raises(InputError, match="must name a .pt file"):
        _run(TrainConfig(**TINY), cases, tmp_path / "model.pth")
    with pytest.raises(InputError, match="checkpoint-every must be >= 0"):
        _run(TrainConfig(**TINY), cases, tmp_path / "model.pt", checkpoint_every=-1)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- data parallel
def _ddp_run(rank: int, world_size: int, folder: str) -> None:
    import torch.distributed as dist

    from napari_uamc.engine.distributed import DistContext

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    try:
        labeled = [sphere_case(i) for i in range(2)]
        unlabeled = [sphere_case(10 + i, labeled=False) for i in range(2)]
        calls = []
        result = run_training(TrainConfig(**{**TINY, "iterations": 2}), labeled, unlabeled, f"{folder}/out/model.pt",
                              spacing=SPACING, device="cpu", dist_context=DistContext(rank, world_size, rank),
                              checkpoint_every=1, on_step=calls.append, on_message=calls.append)
        torch.save({"iterations": result.iterations, "meta": result.meta is not None, "calls": len(calls)},
                   f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_only_rank_0_writes_files_and_calls_back(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_run, args=(2, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0["iterations"] == rank1["iterations"] == 2
    assert rank0["meta"] and not rank1["meta"]
    assert rank0["calls"] > 2 and rank1["calls"] == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.log", "model.pt", "model.resume.pt"]
