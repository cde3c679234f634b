"""Fixtures of the napari tests: a tiny study with a tiny model, so Segment takes a moment."""

from __future__ import annotations

import json

import pytest

#: Shape of the phantoms of the tiny study (x, y, z).
SHAPE = (32, 32, 16)


@pytest.fixture(autouse=True)
def own_napari_settings(monkeypatch):
    """napari's settings in memory only: the panel's reader preference never reaches the real file."""
    import napari.settings
    from napari.settings import NapariSettings

    monkeypatch.setattr(napari.settings, "_SETTINGS", NapariSettings(config_path=None))


@pytest.fixture
def tiny_study(tmp_path):
    """A 4-case phantom study, no accepted label, with a tiny random model as version v001."""
    torch = pytest.importorskip("torch")
    from napari_uamc.data.phantoms import write_phantom_study
    from napari_uamc.data.study import Study
    from napari_uamc.engine.checkpoint import ModelMeta, save_checkpoint
    from napari_uamc.engine.model import DualTaskVNet

    root = write_phantom_study(tmp_path / "study", cases=4, seed=3, shape=SHAPE, labeled=0)
    study = Study.open(root)
    torch.manual_seed(0)
    model = DualTaskVNet(width=2)
    spacing = study.read_image(study.cases()[0]).spacing
    meta = ModelMeta.for_model(model, spacing=spacing, patch=SHAPE, trained_on="test", version="v001")
    save_checkpoint(study.model_path("v001"), model, meta)
    study.model_info_path("v001").write_text(json.dumps({"version": "v001", "parent": None}))
    study.current_model = "v001"
    return root


@pytest.fixture
def write_unreviewed():
    """Write a fine-tune version nobody adopted or discarded into a study, as a child that ended
    after napari closed leaves it (``finetune_study(adopt=False)``): v001's weights and a fine-tune
    record; returns the weights' bytes. ``write_unreviewed(root, version="v002", **record_fields)``."""

    def write(root, version="v002", **fields):
        import shutil

        from napari_uamc.data.study import Study

        study = Study.open(root)
        shutil.copyfile(study.model_path("v001"), study.model_path(version))
        case = study.cases()[0]
        record = {"version": version, "parent": "v001", "kind": "finetune", "iterations": 3, "stopped_early": True,
                  "cases": {"labeled": [case], "unlabeled": study.cases()[1:]},
                  "starting_agreement": {"cases": {case: 0.75}, "mean": 0.75},
                  "training_dice": {"cases": {case: 0.8}, "mean": 0.8}, **fields}
        study.model_info_path(version).write_text(json.dumps(record))
        return study.model_path(version).read_bytes()

    return write
