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
