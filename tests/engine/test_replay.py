"""Replay against forgetting (issue 10 part 3): where the cases come from, and that a fine-tune
trains on them beside the accepted cases and records them."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from _helpers import noisy_sphere, save_tiny_model
from napari_uamc.data.study import Study
from napari_uamc.engine import finetune as finetune_module
from napari_uamc.engine.config import TrainConfig
from napari_uamc.engine.finetune import finetune_study
from napari_uamc.engine.replay import AUTO, REPLAY_CASES, check_replay_folder, read_replay, replay_folder
from napari_uamc.errors import InputError

TINY_CONFIG = TrainConfig(width=2, patch=(16, 16, 16), mc_samples=2, precision="float32", seed=1)
FAST = {"batch_size": 2, "labeled_batch_size": 2}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _folder(root, cases, labeled, label_value=1):
    """An MSD folder: ``cases`` noisy spheres, the first ``labeled`` with a label in labelsTr/."""
    for folder in ("imagesTr", "labelsTr"):
        (root / folder).mkdir(parents=True)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    for index in range(cases):
        image, label = noisy_sphere(index, (24, 24, 16), shift=2, radius=(4, 6))
        nib.save(nib.Nifti1Image(image, affine), str(root / "imagesTr" / f"case{index}.nii.gz"))
        if index < labeled:
            nib.save(nib.Nifti1Image((label > 0).astype(np.uint8) * label_value, affine),
                     str(root / "labelsTr" / f"case{index}.nii.gz"))
    return root


@pytest.fixture
def study(tmp_path):
    return Study.open(_folder(tmp_path / "study", cases=3, labeled=1))


def test_the_folder_is_the_models_training_data_when_it_is_here(tmp_path):
    data = _folder(tmp_path / "trained_on", cases=1, labeled=1)
    study_root = tmp_path / "study"
    study_root.mkdir()
    assert replay_folder(str(data), AUTO, study_root) == (data, "the starting model's training data")
    described = "LA 2018 real LGE MRI: the first 64 cases of train.list"  # the packaged model's record
    folder, why = replay_folder(described, AUTO, study_root)
    assert folder is None and "record names no folder (it says: 'LA 2018" in why and "choose a replay folder" in why
    assert "uamc" not in why and "--replay" not in why  # the panel shows it: the CLI adds its own hint
    made_here = f"fine-tuned on study la2018 ({study_root})"  # a version fine-tuned in the study (issue: try-out)
    assert replay_folder(made_here, AUTO, study_root) == (None, (
        "no replay: the starting model was fine-tuned in this study, whose accepted cases are trained on anyway; "
        "choose a replay folder to replay other labeled cases"))
    folder, why = replay_folder(f"fine-tuned on study other ({tmp_path / 'other'})", AUTO, study_root)
    assert folder is None and f"fine-tuned in another study ({tmp_path / 'other'})" in why
    assert "names no folder" not in why
    folder, why = replay_folder(str(tmp_path / "gone"), AUTO, study_root)
    assert folder is None and f"names {tmp_path / 'gone'}, which is not on this machine" in why
    assert replay_folder(str(data), None, study_root)[0] is None  # turned off
    assert replay_folder("", str(data), study_root)[0] == data  # asked for explicitly
    with pytest.raises(InputError, match="is not a folder"):
        replay_folder("", str(tmp_path / "missing"), study_root)
    folder, why = replay_folder(str(study_root), AUTO, study_root)
    assert folder is None and "this study" in why


def test_a_replay_folder_is_checked_without_reading_an_image(tmp_path):
    """The panel checks a folder when it is picked: the answer names the folder and the problem."""
    assert check_replay_folder(_folder(tmp_path / "data", cases=4, labeled=3)) == ("the first 2 of its 3 labeled "
                                                                                  "cases")
    assert check_replay_folder(_folder(tmp_path / "one", cases=2, labeled=1)) == "the first 1 of its 1 labeled case"
    with pytest.raises(InputError, match=f"replay folder {tmp_path / 'gone'} is not a folder"):
        check_replay_folder(tmp_path / "gone")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a replay folder: .*empty holds no training images"):
        check_replay_folder(tmp_path / "empty")
    unlabeled = _folder(tmp_path / "unlabeled", cases=2, labeled=0)
    with pytest.raises(InputError, match=f"replay folder {unlabeled} holds no labeled case"):
        check_replay_folder(unlabeled)
    study = _folder(tmp_path / "study", cases=2, labeled=1)
    with pytest.raises(InputError, match="is the open study"):
        check_replay_folder(study, study_root=study)
    la = tmp_path / "la"  # the LA research layout: <case>/mri_norm2.h5, each holding its label
    for name in ("B", "A"):
        (la / name).mkdir(parents=True)
        (la / name / "mri_norm2.h5").write_bytes(b"")  # listed, never opened
    assert check_replay_folder(la) == "the first 2 of its 2 labeled cases"


def test_the_first_labeled_cases_are_read_at_the_working_spacing(tmp_path):
    data = _folder(tmp_path / "data", cases=4, labeled=3)
    replay = read_replay(data, "why", (2.0, 2.0, 2.0), n_classes=2)
    assert [case.name for case in replay.cases] == ["replay:case0", "replay:case1"]
    assert all(case.spacing == (2.0, 2.0, 2.0) and case.image.shape == (12, 12, 16) for case in replay.cases)
    assert replay.record() == {"source": str(data), "cases": ["case0", "case1"], "why": "why"}
    assert REPLAY_CASES == 2


def test_labels_of_classes_the_model_does_not_know_give_no_replay(tmp_path):
    data = _folder(tmp_path / "data", cases=2, labeled=2, label_value=3)
    notes = []
    replay = read_replay(data, "why", (1.0, 1.0, 2.0), n_classes=2, say=notes.append)
    assert replay.cases == [] and replay.source is None
    assert any("classes the model does not know" in note for note in notes)


def test_a_finetune_trains_on_the_replay_cases_and_records_them(tmp_path, study, monkeypatch):
    data = _folder(tmp_path / "trained_on", cases=3, labeled=3)
    model = save_tiny_model(tmp_path / "start.pt", spacing=(1.0, 1.0, 2.0), config=TINY_CONFIG.to_dict(),
                            trained_on=str(data))
    streams = []
    real_trainer = finetune_module.Trainer

    def trainer(cfg, labeled, unlabeled, **kwargs):
        streams.append([case.name for case in labeled])
        return real_trainer(cfg, labeled, unlabeled, **kwargs)

    monkeypatch.setattr(finetune_module, "Trainer", trainer)
    warm = {**FAST, "cold_start_rules": False}  # the tiny model is untrained: without this, a cold start
    result = finetune_study(study, model_path=model, iterations=1, device="cpu", overrides=warm, score=False)
    assert streams[-1] == ["case0", "replay:case0", "replay:case1"]
    assert result.replay == {"source": str(data), "cases": ["case0", "case1"],
                             "why": "the starting model's training data"}
    info = json.loads(study.model_info_path(result.version).read_text())
    assert info["replay"] == result.replay
    assert result.parent_path == model and info["parent_path"] == str(model)  # the replay folder is no parent

    result = finetune_study(study, model_path=model, iterations=1, device="cpu", overrides=warm, score=False,
                            replay=None)
    assert streams[-1] == ["case0"] and result.replay["cases"] == []


def test_cli_replays_a_folder_or_none(tmp_path, study, capsys):
    from napari_uamc.cli import main

    data = _folder(tmp_path / "earlier", cases=2, labeled=2)
    model = save_tiny_model(tmp_path / "start.pt", spacing=(1.0, 1.0, 2.0), config=TINY_CONFIG.to_dict())
    common = ["finetune", str(study.root), "--model", str(model), "--iterations", "1", "--device", "cpu",
              "--batch-size", "2", "--labeled-batch-size", "2", "--no-bn-recalibration", "--no-score"]
    assert main([*common, "--replay", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"replayed against forgetting: case0, case1 from {data} (the replay folder asked for)" in out
    assert main([*common, "--replay", "none"]) == 0
    assert "replayed" not in capsys.readouterr().out
    assert json.loads(study.model_info_path("v002").read_text())["replay"]["why"] == "replay turned off"


def test_a_cold_start_replays_only_a_folder_given(tmp_path, study):
    """A model new to the study's images (a cold start) replays nothing by default: measured, it
    cost the new scans; a folder given explicitly is replayed."""
    from napari_uamc.engine.replay import NO_COLD_REPLAY

    data = _folder(tmp_path / "trained_on", cases=2, labeled=2)
    model = save_tiny_model(tmp_path / "start.pt", spacing=(1.0, 1.0, 2.0), config=TINY_CONFIG.to_dict(),
                            trained_on=str(data))
    result = finetune_study(study, model_path=model, iterations=1, device="cpu", overrides=FAST, score=False)
    agreed = result.starting_agreement
    assert agreed and max(agreed.values()) < 0.5  # an untrained model: a cold start
    assert result.replay == {"source": None, "cases": [], "why": NO_COLD_REPLAY}
    assert result.parent_path == model
    result = finetune_study(study, model_path=model, iterations=1, device="cpu", overrides=FAST, score=False,
                            replay=str(data))
    assert result.replay["cases"] == ["case0", "case1"]
