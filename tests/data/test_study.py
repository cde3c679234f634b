"""Tests of the study folder: layout, statuses, accept/history/restore, state, locking."""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_uamc.data.io import volume_from_array
from napari_uamc.data.study import CaseStatus, Study, StudyWarning
from napari_uamc.data.study import labels as study_module  # the label and draft writes are there
from napari_uamc.errors import GridMismatchError, InputError, StudyError, UamcError

SOURCE_SHAPE = (8, 9, 10)
#: Permuted, flipped, anisotropic, slightly oblique, exact in float32: canonical order differs
#: from the file's, so every test also checks the mapping back to the source grid.
AFFINE = np.array(
    [
        [0.0, 0.0625, -2.5, 40.0],
        [0.75, 0.0, 0.0, -20.0],
        [0.0, 1.25, 0.0, 7.5],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
CASES = ("case_a", "case_b", "case_c", "case_d")
Shape = tuple[int, int, int]
WORKERS = 4
UPDATES_PER_WORKER = 20


def write_image(path: Path, seed: int) -> Path:
    data = np.random.default_rng(seed).normal(100.0, 20.0, SOURCE_SHAPE).astype(np.float32)
    nib.save(nib.Nifti1Image(data, AFFINE), str(path))
    return path


def box_label(shape: Shape, value: int = 1, offset: int = 0) -> np.ndarray:
    label = np.zeros(shape, dtype=np.uint8)
    label[1 + offset : 4 + offset, 2:5, 1:4] = value
    return label


def file_hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def read_state(study: Study) -> dict:
    return json.loads(study.state_path.read_text())


@pytest.fixture
def sources(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "sources"
    folder.mkdir()
    return [write_image(folder / f"{case}.nii.gz", seed) for seed, case in enumerate(CASES)]


@pytest.fixture
def study(tmp_path: Path, sources: list[Path]) -> Study:
    return Study.create(tmp_path / "study", sources, name="test study")


@pytest.fixture
def shape(study: Study) -> tuple[int, int, int]:
    return study.read_image(CASES[0]).shape


def test_create_copies_nifti_byte_exact_and_lists_cases(study: Study, sources: list[Path]) -> None:
    assert study.cases() == sorted(CASES)
    for source in sources:
        copied = study.images_dir / source.name
        assert copied.read_bytes() == source.read_bytes()
    assert all(study.status(case) is CaseStatus.NEW for case in CASES)
    state = read_state(study)
    assert state["version"] == 1 and state["current_model"] is None
    assert sorted(state["cases"]) == sorted(CASES)
    dataset = json.loads(study.dataset_path.read_text())
    assert dataset["name"] == "test study"
    assert dataset["labels"] == {"0": "background", "1": "left atrium"}
    assert dataset["modality"] == {"0": "MRI"}
    assert dataset["numTraining"] == 0 and dataset["training"] == []
    for folder in ("predictions", "history", "drafts", "models"):
        assert (study.tool_dir / folder).is_dir()


def test_create_wraps_plain_nii_and_writes_volumes(tmp_path: Path) -> None:
    plain = write_image(tmp_path / "plain_0000.nii", seed=7)
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    volume = volume_from_array(array, affine=AFFINE, name="from_memory")
    study = Study.create(tmp_path / "study", [plain, volume], labels={0: "background", 1: "tumour"})
    assert study.cases() == ["from_memory", "plain"]
    wrapped = nib.load(str(study.images_dir / "plain.nii.gz"))
    np.testing.assert_array_equal(wrapped.get_fdata(), nib.load(str(plain)).get_fdata())
    written = nib.load(str(study.images_dir / "from_memory.nii.gz"))
    np.testing.assert_array_equal(written.affine, AFFINE)
    np.testing.assert_array_equal(written.get_fdata(), array)
    assert study.labels == {0: "background", 1: "tumour"}


def test_create_refuses_non_empty_folder_and_duplicates(
    tmp_path: Path, sources: list[Path]
) -> None:
    Study.create(tmp_path / "study", sources[:1])
    with pytest.raises(StudyError, match="not empty"):
        Study.create(tmp_path / "study", sources[1:])
    added = Study.create(tmp_path / "study", sources[1:2], exist_ok=True)
    assert added.cases() == sorted(CASES[:2])
    with pytest.raises(StudyError, match="duplicate case name 'case_a'"):
        added.add_images(sources[:1])

    other = tmp_path / "other"
    other.mkdir()
    twin = write_image(other / "case_a_0000.nii.gz", seed=9)
    with pytest.raises(StudyError, match="duplicate case name 'case_a'"):
        Study.create(tmp_path / "fresh", [sources[0], twin])
    assert not (tmp_path / "fresh").exists()


def test_create_with_a_bad_image_leaves_nothing(tmp_path: Path, sources: list[Path]) -> None:
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a nifti file")
    with pytest.raises(InputError, match="broken.nii.gz"):
        Study.create(tmp_path / "study", [sources[0], broken])
    assert not (tmp_path / "study").exists()


def test_open_refuses_what_is_not_a_study(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="does not exist"):
        Study.open(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(StudyError, match="not a folder"):
        Study.open(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudyError, match="no imagesTr"):
        Study.open(tmp_path / "empty")
    with pytest.raises(TypeError):
        Study(tmp_path)


def test_open_or_create(tmp_path: Path, sources: list[Path]) -> None:
    created = Study.open_or_create(tmp_path / "study", sources[:2])
    reopened = Study.open_or_create(tmp_path / "study", sources)
    assert created.cases() == reopened.cases() == sorted(CASES[:2])


def test_status_transitions_and_predictions(study: Study, shape: Shape) -> None:
    case = CASES[1]
    assert study.status(case) is CaseStatus.NEW
    sdf = np.linspace(-1, 1, np.prod(shape)).reshape(shape)
    uncertainty = np.full(shape, 0.25)
    study.save_prediction(
        case, box_label(shape), sdf, uncertainty, uncertainty_score=0.4, model_version="v001"
    )
    info = study.case_info(case)
    assert info.status is CaseStatus.PREDICTED and info.has_prediction
    assert info.uncertainty == pytest.approx(0.4) and info.prediction_model == "v001"
    assert read_state(study)["cases"][case]["status"] == "predicted"

    paths = study.prediction_paths(case)
    assert nib.load(str(paths["seg"])).get_data_dtype() == np.uint8
    assert nib.load(str(paths["sdf"])).get_data_dtype() == np.float32
    prediction = study.read_prediction(case)
    assert prediction is not None
    np.testing.assert_array_equal(prediction["seg"].array, box_label(shape))
    np.testing.assert_allclose(prediction["sdf"].array, sdf, rtol=0, atol=0.5e-4 + 1e-7)  # rounded to 1e-4

    assert "disagreement" not in prediction  # optional: none given, none read

    disagreement = np.linspace(0, 1, np.prod(shape)).reshape(shape)
    study.save_prediction(case, box_label(shape), sdf, uncertainty, disagreement=disagreement)
    saved = study.read_prediction(case)["disagreement"]
    np.testing.assert_allclose(saved.array, disagreement, rtol=0, atol=0.005 + 1e-6)  # rounded to 0.01
    assert saved.spacing == prediction["seg"].spacing
    study.save_prediction(case, box_label(shape), sdf, uncertainty)  # a newer prediction without one:
    assert "disagreement" not in study.read_prediction(case)  # the old map never outlives its prediction

    study.accept(case, box_label(shape))
    assert study.status(case) is CaseStatus.ACCEPTED
    study.save_prediction(case, box_label(shape), sdf, uncertainty)
    assert study.status(case) is CaseStatus.ACCEPTED
    assert read_state(study)["cases"][case]["status"] == "accepted"
    assert study.read_prediction(CASES[0]) is None


def test_accept_writes_on_the_image_grid(study: Study, shape: Shape) -> None:
    case = CASES[0]
    label = box_label(shape)
    path = study.accept(case, label, note="first pass")
    assert path == study.labels_dir / f"{case}.nii.gz"
    image_file = nib.load(str(study.image_path(case)))
    label_file = nib.load(str(path))
    np.testing.assert_array_equal(label_file.affine, image_file.affine)
    assert label_file.shape == image_file.shape == SOURCE_SHAPE
    image = study.read_image(case)
    np.testing.assert_array_equal(np.asanyarray(label_file.dataobj), image.to_source_order(label))
    loaded = study.read_label(case)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.array, label)
    info = study.case_info(case)
    assert info.status is CaseStatus.ACCEPTED and info.accepted_at is not None
    assert study.labeled_cases() == [case]
    assert study.unlabeled_cases() == sorted(CASES[1:])


def test_accept_takes_volumes_and_refuses_other_grids(study: Study, shape: Shape) -> None:
    image = study.read_image(CASES[0])
    study.accept(CASES[0], image.with_array(box_label(shape)))
    assert study.status(CASES[0]) is CaseStatus.ACCEPTED
    shifted = AFFINE.copy()
    shifted[0, 3] += 5.0
    elsewhere = volume_from_array(np.zeros(SOURCE_SHAPE, np.uint8), affine=shifted, name="moved")
    with pytest.raises(GridMismatchError, match="different affines"):
        study.accept(CASES[1], elsewhere)


def test_accepting_twice_keeps_history_and_restore_swaps(study: Study, shape: Shape) -> None:
    case = CASES[2]
    first, second = box_label(shape), box_label(shape, offset=4)
    study.accept(case, first, note="first")
    first_bytes = study.label_path(case).read_bytes()
    study.accept(case, second, note="second")
    history = study.history(case)
    assert len(history) == 1
    assert history[0].path.read_bytes() == first_bytes
    assert history[0].note == "first" and history[0].accepted_at is not None
    np.testing.assert_array_equal(study.read_label(case).array, second)

    second_bytes = study.label_path(case).read_bytes()
    study.restore(case, history[0].timestamp)
    assert study.label_path(case).read_bytes() == first_bytes
    history = study.history(case)
    assert [entry.path.read_bytes() for entry in history] == [first_bytes, second_bytes]
    assert history[0].timestamp < history[1].timestamp
    assert history[1].note == "second"
    assert study.case_info(case).status is CaseStatus.ACCEPTED
    with pytest.raises(StudyError, match="no history entry"):
        study.restore(case, "20000101T000000.000000Z")


def test_history_stamps_are_unique_and_ordered(study: Study, shape: Shape) -> None:
    for offset in range(5):
        study.accept(CASES[0], box_label(shape, offset=offset % 3))
    stamps = [entry.timestamp for entry in study.history(CASES[0])]
    assert len(stamps) == 4 == len(set(stamps))
    assert stamps == sorted(stamps)
    assert all(stamp.endswith("Z") and "T" in stamp for stamp in stamps)


def test_dataset_json_lists_accepted_cases(study: Study, shape: Shape) -> None:
    (study.root / "imagesTs").mkdir()
    write_image(study.root / "imagesTs" / "held_out.nii.gz", seed=11)
    study.accept(CASES[3], box_label(shape))
    study.accept(CASES[0], box_label(shape))
    dataset = json.loads(study.dataset_path.read_text())
    assert dataset["numTraining"] == 2
    assert [entry["image"] for entry in dataset["training"]] == [
        f"./imagesTr/{CASES[0]}.nii.gz",
        f"./imagesTr/{CASES[3]}.nii.gz",
    ]
    for entry in dataset["training"]:
        assert (study.root / entry["label"]).is_file() and (study.root / entry["image"]).is_file()
    assert dataset["numTest"] == 1 and dataset["test"] == ["./imagesTs/held_out.nii.gz"]
    assert dataset["name"] == "test study"


def test_state_survives_reopen(study: Study) -> None:
    study.set_uncertainty(CASES[0], 0.3)
    study.set_uncertainty(CASES[1], 0.6)
    study.record_score(CASES[0], "dice@v001", np.float32(0.875))
    (study.models_dir / "v001.pt").write_bytes(b"weights")
    (study.models_dir / "v002.pt").write_bytes(b"weights")
    (study.models_dir / "v003.json").write_text("{}")
    study.current_model = "v001"
    reopened = Study.open(study.root)
    assert reopened.case_info(CASES[0]).uncertainty == pytest.approx(0.3)
    assert reopened.scores(CASES[0]) == {"dice@v001": pytest.approx(0.875)}
    assert reopened.current_model == "v001"
    assert reopened.model_versions() == ["v001", "v002"]
    assert reopened.next_model_version() == "v004"
    assert reopened.suggest_next_case() == CASES[1]
    assert reopened.ranked_for_labeling()[:2] == [CASES[1], CASES[0]]
    with pytest.raises(StudyError, match="no model 'v009'"):
        reopened.current_model = "v009"
    with pytest.raises(InputError):
        reopened.set_uncertainty(CASES[0], float("nan"))


def test_reconciles_labels_added_and_removed_by_hand(study: Study, shape: Shape) -> None:
    case = CASES[1]
    image = study.read_image(case)
    by_hand = nib.Nifti1Image(image.to_source_order(box_label(shape)), AFFINE)
    nib.save(by_hand, str(study.labels_dir / f"{case}.nii.gz"))
    reopened = Study.open(study.root)
    assert reopened.status(case) is CaseStatus.ACCEPTED
    assert read_state(reopened)["cases"][case]["status"] == "accepted"
    assert json.loads(reopened.dataset_path.read_text())["numTraining"] == 1

    (study.labels_dir / f"{case}.nii.gz").unlink()
    reopened = Study.open(study.root)
    assert reopened.status(case) is CaseStatus.NEW
    assert read_state(reopened)["cases"][case]["accepted_at"] is None
    assert json.loads(reopened.dataset_path.read_text())["numTraining"] == 0

    (study.images_dir / f"{CASES[3]}.nii.gz").unlink()
    with pytest.warns(StudyWarning, match=CASES[3]):
        reopened = Study.open(study.root)
    assert CASES[3] not in reopened.cases() and CASES[3] not in read_state(reopened)["cases"]


def test_corrupt_state_is_rebuilt_and_kept(study: Study, shape: Shape) -> None:
    study.accept(CASES[0], box_label(shape))
    study.state_path.write_text('{"version": 1, "cases": {')
    with pytest.warns(StudyWarning, match="corrupt"):
        reopened = Study.open(study.root)
    assert reopened.status(CASES[0]) is CaseStatus.ACCEPTED
    assert read_state(reopened)["cases"][CASES[0]]["status"] == "accepted"
    kept = list(study.tool_dir.glob("state.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text() == '{"version": 1, "cases": {'


def test_bad_labels_are_refused(study: Study, shape: Shape) -> None:
    with pytest.raises(StudyError, match=r"unknown case 'nope' in study .*study"):
        study.accept("nope", box_label(shape))
    with pytest.raises(GridMismatchError, match="shape"):
        study.accept(CASES[0], np.ones((3, 3, 3), np.uint8))
    with pytest.raises(StudyError, match="empty label"):
        study.accept(CASES[0], np.zeros(shape, np.uint8))
    fractional = box_label(shape).astype(np.float32) * 0.5
    with pytest.raises(InputError, match="non-integer"):
        study.accept(CASES[0], fractional)
    with pytest.raises(InputError, match="negative"):
        study.accept(CASES[0], -box_label(shape).astype(np.int16))
    with pytest.raises(InputError, match=r"values \[2\]"):
        study.accept(CASES[0], box_label(shape, value=2))
    with pytest.raises(InputError, match="NaN"):
        study.accept(CASES[0], np.full(shape, np.nan))
    assert study.labeled_cases() == []
    assert study.history(CASES[0]) == []
    study.accept(CASES[0], np.zeros(shape, np.uint8), allow_empty=True)
    study.accept(CASES[1], box_label(shape).astype(bool))
    study.accept(CASES[2], box_label(shape).astype(np.float64))
    assert study.labeled_cases() == sorted(CASES[:3])


def _folder_is_really_read_only(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"")
    except OSError:
        return True
    probe.unlink()
    return False


def _snapshot(study: Study) -> dict[str, dict[str, str]]:
    return {
        "labels": file_hashes(study.labels_dir),
        "history": {
            str(p.relative_to(study.history_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in study.history_dir.rglob("*")
            if p.is_file()
        },
        "state": {"state": study.state_path.read_text()},
        "dataset": {"dataset": study.dataset_path.read_text()},
    }


def test_read_only_labels_folder_changes_nothing(
    study: Study, shape: Shape, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[0]
    study.accept(case, box_label(shape))
    before = _snapshot(study)
    mode = study.labels_dir.stat().st_mode
    study.labels_dir.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        if not _folder_is_really_read_only(study.labels_dir):  # root ignores permissions
            def refuse(path, *args, **kwargs):
                denied = PermissionError(errno.EACCES, "Permission denied")
                raise UamcError(f"{path}: could not be written") from denied

            monkeypatch.setattr(study_module, "write_volume", refuse)
        expected = r"could not write the label .*Permission denied.*not changed"
        with pytest.raises(StudyError, match=expected):
            study.accept(case, box_label(shape, offset=3))
    finally:
        study.labels_dir.chmod(mode)
    assert _snapshot(study) == before
    assert study.history(case) == []


def test_full_disk_changes_nothing(
    study: Study, shape: Shape, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = CASES[1]
    study.accept(case, box_label(shape))
    study.accept(case, box_label(shape, offset=2))
    entry = study.history(case)[0]
    before = _snapshot(study)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def disk_full_in_io(path, *args, **kwargs):
        full = OSError(errno.ENOSPC, "No space left on device")
        raise UamcError(f"{path}: could not be written") from full

    with monkeypatch.context() as patch:
        patch.setattr(study_module, "atomic_copy", disk_full)
        with pytest.raises(StudyError, match="disk is full"):
            study.accept(case, box_label(shape, offset=3))
        with pytest.raises(StudyError, match="disk is full"):
            study.restore(case, entry)
    assert _snapshot(study) == before

    monkeypatch.setattr(study_module, "write_volume", disk_full_in_io)
    with pytest.raises(StudyError, match="could not write the label.*disk is full"):
        study.accept(case, box_label(shape, offset=3))
    with pytest.raises(StudyError, match="disk is full"):
        study.save_draft(case, box_label(shape))
    assert _snapshot(study) == before
    assert not study.draft_path(case).exists()


def test_read_only_study_still_reads(
    study: Study, shape: Shape, monkeypatch: pytest.MonkeyPatch
) -> None:
    study.accept(CASES[0], box_label(shape))
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    with pytest.warns(StudyWarning, match="read-only"):
        readonly = Study.open(study.root)
    assert readonly.read_only
    assert readonly.labeled_cases() == [CASES[0]]
    assert readonly.read_label(CASES[0]) is not None
    with pytest.raises(StudyError, match="read-only"):
        readonly.accept(CASES[1], box_label(shape))
    with pytest.raises(StudyError, match="read-only"):
        readonly.set_uncertainty(CASES[1], 0.1)


def _hammer_state(root: str, case: str, start, ready) -> None:
    study = Study.open(root)
    ready.wait()
    start.wait()
    for step in range(UPDATES_PER_WORKER):
        study.set_uncertainty(case, float(step))
        study.record_score(case, f"step{step:02d}", step)


def test_concurrent_writers_do_not_lose_updates(study: Study) -> None:
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    start = context.Event()
    ready = context.Barrier(WORKERS + 1)
    workers = [
        context.Process(target=_hammer_state, args=(str(study.root), case, start, ready))
        for case in CASES[:WORKERS]
    ]
    for worker in workers:
        worker.start()
    ready.wait()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0] * WORKERS
    state = read_state(study)
    for case in CASES[:WORKERS]:
        entry = state["cases"][case]
        assert entry["uncertainty"] == UPDATES_PER_WORKER - 1
        assert sorted(entry["scores"]) == [f"step{step:02d}" for step in range(UPDATES_PER_WORKER)]
    assert not [p for p in study.tool_dir.iterdir() if p.name.endswith(".tmp")]


def test_drafts_round_trip(study: Study, shape: Shape) -> None:
    case = CASES[2]
    assert study.read_draft(case) is None and not study.case_info(case).has_draft
    draft = box_label(shape, value=1, offset=2)
    study.save_draft(case, draft)
    assert study.case_info(case).has_draft
    np.testing.assert_array_equal(study.read_draft(case).array, draft)
    assert study.discard_draft(case) is True
    assert study.discard_draft(case) is False
    study.save_draft(case, draft)
    study.accept(case, draft)
    assert study.read_draft(case) is None


def test_ground_truth_is_kept_apart(study: Study, shape: Shape) -> None:
    study.save_ground_truth(CASES[0], box_label(shape))
    assert study.case_info(CASES[0]).has_ground_truth
    np.testing.assert_array_equal(study.read_ground_truth(CASES[0]).array, box_label(shape))
    assert study.read_ground_truth(CASES[1]) is None
    assert study.labeled_cases() == []


def test_images_are_never_modified(study: Study, shape: Shape) -> None:
    before = file_hashes(study.images_dir)
    for case in CASES:
        zeros = np.zeros(shape)
        study.save_prediction(case, box_label(shape), zeros, zeros, uncertainty_score=0.1)
        study.save_draft(case, box_label(shape))
        study.accept(case, box_label(shape))
        study.accept(case, box_label(shape, offset=2))
        study.restore(case, study.history(case)[0])
    Study.open(study.root)
    assert file_hashes(study.images_dir) == before


def test_nnunet_names_and_stray_files(tmp_path: Path) -> None:
    root = tmp_path / "msd"
    (root / "imagesTr").mkdir(parents=True)
    write_image(root / "imagesTr" / "la_001_0000.nii.gz", seed=1)
    (root / "imagesTr" / "notes.txt").write_text("not an image")
    with pytest.warns(StudyWarning, match="notes.txt"):
        study = Study.open(root)
    assert study.cases() == ["la_001"]
    study.accept("la_001", box_label(study.read_image("la_001").shape))
    dataset = json.loads(study.dataset_path.read_text())
    assert dataset["training"] == [
        {"image": "./imagesTr/la_001_0000.nii.gz", "label": "./labelsTr/la_001.nii.gz"}
    ]


def test_corrupt_dataset_json_is_rebuilt_and_newer_state_refused(study: Study) -> None:
    study.dataset_path.write_text("[1, 2")
    with pytest.warns(StudyWarning, match="dataset.json"):
        reopened = Study.open(study.root)
    assert json.loads(reopened.dataset_path.read_text())["numTraining"] == 0
    assert len(list(study.root.glob("dataset.json.corrupt-*"))) == 1

    state = read_state(study)
    state["version"] = 99
    study.state_path.write_text(json.dumps(state))
    with pytest.raises(StudyError, match="newer"):
        Study.open(study.root)


def test_model_version_reservation_skips_names_claimed_by_another_writer(tmp_path):
    root = tmp_path / "reserve"
    (root / "imagesTr").mkdir(parents=True)
    study = Study.open(root)
    first = study.reserve_model_version()
    assert first == "v001" and study.model_info_path("v001").is_file()
    assert study.model_versions() == []  # a reservation is not a model yet
    real_next = study.next_model_version
    calls = []

    def stale_next() -> str:  # another process read the folder before v002 was claimed
        calls.append(1)
        return "v002" if len(calls) == 1 else real_next()

    study.model_info_path("v002").write_text("{}")  # ...and claimed v002 first
    study.next_model_version = stale_next
    assert study.reserve_model_version() == "v003"


# ------------------------------------------------------------------ nnU-Net v2 dataset.json
def _nnunet_v2_study(root, labels=None, channels=None):
    import json as _json

    import nibabel as _nib

    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for case in ("a", "b"):
        image = _nib.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4))
        _nib.save(image, str(root / "imagesTr" / f"{case}_0000.nii.gz"))
    label = np.zeros((8, 8, 4), np.uint8)
    label[2:5, 2:5, 1:3] = 2
    _nib.save(_nib.Nifti1Image(label, np.eye(4)), str(root / "labelsTr" / "a.nii.gz"))
    data = {"channel_names": channels or {"0": "LGE MRI"},
            "labels": labels or {"background": 0, "left atrium": 1, "scar": 2},
            "numTraining": 1, "file_ending": ".nii.gz", "overwrite_image_reader_writer": "NibabelIO"}
    (root / "dataset.json").write_text(_json.dumps(data, indent=4))
    return data


def test_an_nnunet_v2_study_is_read_as_such_and_never_renamed(tmp_path):
    import json as _json

    original = _nnunet_v2_study(tmp_path / "s")
    study = Study.open(tmp_path / "s")
    assert study.labels == {0: "background", 1: "left atrium", 2: "scar"}
    assert study.modality == {0: "LGE MRI"}
    assert study.cases() == ["a", "b"] and study.labeled_cases() == ["a"]
    assert not list((tmp_path / "s").glob("dataset.json.corrupt*"))
    assert _json.loads((tmp_path / "s" / "dataset.json").read_text()) == original  # untouched
    label = np.zeros((8, 8, 4), np.uint8)
    label[1:3, 1:3, 1:2] = 2
    study.accept("b", label)
    written = _json.loads((tmp_path / "s" / "dataset.json").read_text())
    assert written == {**original, "numTraining": 2}  # still nnU-Net v2: only the count changed


@pytest.mark.parametrize(("labels", "channels", "message"), [
    ({"background": 0, "whole tumour": [1, 2, 3]}, None, "region"),
    (None, {"0": "T1", "1": "FLAIR"}, "2 input channels"),
])
def test_an_unsupported_nnunet_v2_study_is_refused_and_left_alone(tmp_path, labels, channels, message):
    _nnunet_v2_study(tmp_path / "s", labels=labels, channels=channels)
    before = (tmp_path / "s" / "dataset.json").read_bytes()
    with pytest.raises(StudyError, match=message):
        Study.open(tmp_path / "s")
    assert (tmp_path / "s" / "dataset.json").read_bytes() == before
    assert not list((tmp_path / "s").glob("dataset.json.*"))
