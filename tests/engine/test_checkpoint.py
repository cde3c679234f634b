"""Model files: round trip, half storage, safe loading and clear errors for bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from napari_uamc.engine import checkpoint
from napari_uamc.engine.checkpoint import (
    FORMAT,
    ModelMeta,
    default_model_path,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from napari_uamc.engine.model import DualTaskVNet
from napari_uamc.errors import CheckpointError

PATCH = (16, 16, 16)


def tiny_model(seed: int = 0, **kwargs) -> DualTaskVNet:
    torch.manual_seed(seed)
    model = DualTaskVNet(width=2, **kwargs)
    # Non-trivial BatchNorm statistics, so buffers are checked too.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def tiny_meta(model: DualTaskVNet, **fields) -> ModelMeta:
    defaults = dict(
        spacing=(0.625, 0.625, 1.25),
        patch=PATCH,
        config={"lr": 0.01, "terms": ["ctc", "seg"]},
        history=[{"iterations": 3, "seed": 1}],
        trained_on="synthetic phantoms, domain A",
        synthetic_only=True,
        version="v1",
    )
    return ModelMeta.for_model(model, **{**defaults, **fields})


def outputs(model: DualTaskVNet, size: int = PATCH[0]) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(5)
    x = torch.randn(1, 1, size, size, size)
    with torch.no_grad():
        return model(x)


def test_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    model = tiny_model()
    meta = tiny_meta(model, parent="v0", extra={"note": "test"})
    path = save_checkpoint(tmp_path / "sub" / "model.pt", model, meta)
    loaded, loaded_meta = load_checkpoint(path)
    assert loaded_meta == meta
    assert loaded_meta.spacing == (0.625, 0.625, 1.25) and loaded_meta.patch == PATCH
    assert not loaded.training
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    seg_a, sdf_a = outputs(model)
    seg_b, sdf_b = outputs(loaded)
    assert torch.equal(seg_a, seg_b) and torch.equal(sdf_a, sdf_b)
    assert read_meta(path) == meta
    assert not list(tmp_path.glob("sub/.*")), "no temporary file left behind"


def test_multiclass_and_instance_norm_round_trip(tmp_path: Path) -> None:
    model = tiny_model(n_classes=3, norm="instance")
    meta = tiny_meta(model, class_names=["background", "edema", "core"])
    loaded, loaded_meta = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, meta))
    assert loaded.n_classes == 3 and loaded.norm == "instance"
    assert loaded_meta.class_names == ["background", "edema", "core"]
    # instance norm needs more than one voxel at the 1/16 bottleneck
    assert torch.equal(outputs(model, 32)[0], outputs(loaded, 32)[0])


def test_half_storage_is_smaller_and_loads_as_float32(tmp_path: Path) -> None:
    model = tiny_model()
    meta = tiny_meta(model)
    full = save_checkpoint(tmp_path / "full.pt", model, meta)
    half = save_checkpoint(tmp_path / "half.pt", model, meta, half=True)
    assert half.stat().st_size < 0.7 * full.stat().st_size
    raw = torch.load(half, weights_only=True)
    assert raw["state_dict"]["seg_head.weight"].dtype == torch.float16
    loaded, _ = load_checkpoint(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    seg_a, _ = outputs(model)
    seg_b, _ = outputs(loaded)
    assert torch.allclose(seg_a, seg_b, atol=5e-2)


def test_saving_is_atomic_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    model = tiny_model()
    save_checkpoint(path, model, tiny_meta(model, version="v1"))
    save_checkpoint(path, model, tiny_meta(model, version="v2"))
    assert read_meta(path).version == "v2"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_the_same_model_gives_the_same_bytes(tmp_path: Path) -> None:
    model = tiny_model()
    meta = tiny_meta(model)
    first = save_checkpoint(tmp_path / "a.pt", model, meta)
    second = save_checkpoint(tmp_path / "b.pt", model, meta)
    assert first.read_bytes() == second.read_bytes()  # no temp or file name inside the archive


def test_meta_must_describe_the_model(tmp_path: Path) -> None:
    model = tiny_model()
    meta = ModelMeta.for_model(model, width=4)
    with pytest.raises(CheckpointError, match="width"):
        save_checkpoint(tmp_path / "m.pt", model, meta)
    with pytest.raises(CheckpointError, match="class_names"):
        ModelMeta(n_classes=3, class_names=["a", "b"])
    with pytest.raises(CheckpointError, match="spacing"):
        ModelMeta(spacing=(1.0, 0.0, 1.0))


def test_meta_json_round_trip_keeps_unknown_keys() -> None:
    meta = ModelMeta(spacing=(1, 2, 3), patch=(32, 32, 16))
    data = meta.to_dict()
    data["future_field"] = 7
    again = ModelMeta.from_dict(data)
    assert again.extra == {"future_field": 7}
    assert again.spacing == (1.0, 2.0, 3.0)


class _Marker:
    """Unpickling an instance of this would write a marker file (if code ran)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "code ran"))


def test_pickles_with_code_are_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": _Marker(str(marker))}, evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="could run arbitrary code"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError):
        read_meta(evil)
    assert not marker.exists()
    # a plain (non-torch) pickle of the same object
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(_Marker(str(marker))))
    with pytest.raises(CheckpointError):
        load_checkpoint(plain)
    assert not marker.exists()


def test_missing_and_non_torch_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="not a file"):
        load_checkpoint(tmp_path)
    text = tmp_path / "notes.pt"
    text.write_text("hello, this is not a model")
    with pytest.raises(CheckpointError, match="not a readable PyTorch"):
        load_checkpoint(text)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError):
        load_checkpoint(empty)


def test_truncated_file(tmp_path: Path) -> None:
    model = tiny_model()
    path = save_checkpoint(tmp_path / "m.pt", model, tiny_meta(model))
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(cut)


def test_foreign_torch_files(tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(CheckpointError, match="bare state dict of some network"):
        load_checkpoint(other)
    research = tmp_path / "vnet.pth"
    torch.save(
        {
            "block_one.conv.0.weight": torch.zeros(16, 1, 3, 3, 3),
            "block_one.conv.0.bias": torch.zeros(16),
            "out_conv.weight": torch.zeros(2, 16, 1, 1, 1),
        },
        research,
    )
    with pytest.raises(CheckpointError, match="load_research_state_dict"):
        load_checkpoint(research)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(CheckpointError, match="not a napari-uamc model file"):
        load_checkpoint(tensor)
    newer = tmp_path / "newer.pt"
    torch.save({"format": FORMAT, "format_version": 99, "meta_json": "{}", "state_dict": {}}, newer)
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(newer)


def test_damaged_metadata_and_mismatched_weights(tmp_path: Path) -> None:
    model = tiny_model()
    good = save_checkpoint(tmp_path / "good.pt", model, tiny_meta(model))
    payload = torch.load(good, weights_only=True)
    bad_json = tmp_path / "bad_json.pt"
    torch.save({**payload, "meta_json": "{not json"}, bad_json)
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(bad_json)
    wrong_width = tmp_path / "wrong_width.pt"
    meta = tiny_meta(model).to_dict()
    meta["width"] = 4
    import json

    torch.save({**payload, "meta_json": json.dumps(meta)}, wrong_width)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(wrong_width)


def test_default_model_path_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(checkpoint, "DEFAULT_MODEL_RESOURCE", "models/does-not-exist.pt")
    with pytest.raises(CheckpointError, match="uamc train or pass --model"):
        default_model_path()
