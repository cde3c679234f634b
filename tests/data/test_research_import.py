"""Studies from the LA research layouts (`uamc import`), on real LA 2018 scans where present.

The real scans live in ../shared/data/la2018/ (beside the clone, never in git); the NRRD pair of
the challenge's layout is written here from one of them, with an oblique LPS header.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from _helpers import LA2018, la2018_cases, requires_la2018
from napari_uamc.cli import main
from napari_uamc.data.io import case_name, read_volume
from napari_uamc.data.research_import import find_research_cases, import_study
from napari_uamc.data.study import Study
from napari_uamc.errors import InputError, StudyError


def _tiny_h5_layout(root: Path, names=("caseB", "caseA", "caseC"), shape=(12, 10, 8)) -> Path:
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).mkdir(parents=True)
        label = np.zeros(shape, np.uint8)
        label[3:8, 3:7, 2:6] = 1
        with h5py.File(root / name / "mri_norm2.h5", "w") as handle:
            handle["image"] = rng.normal(size=shape).astype(np.float32)
            handle["label"] = label
    return root


def test_per_case_file_names_take_their_folder_name(tmp_path):
    assert case_name("0RZDK210BSMWAA6467LU/mri_norm2.h5") == "0RZDK210BSMWAA6467LU"
    assert case_name("/data/ABC/lgemri.nrrd") == case_name("/data/ABC/laendo.nrrd") == "ABC"
    assert case_name("/data/ABC/la_001_0000.nii.gz") == "la_001"  # ordinary names unchanged
    _tiny_h5_layout(tmp_path)
    names = {case_name(p) for p in tmp_path.glob("*/mri_norm2.h5")}
    assert names == {"caseA", "caseB", "caseC"}


def test_h5_layout_imports_in_list_order_with_the_first_n_accepted(tmp_path):
    source = _tiny_h5_layout(tmp_path / "src")
    (source / "train.list").write_text("caseC\ncaseA\ncaseB\n")
    study = import_study(source, tmp_path / "study", labeled=2, spacing=0.5)
    assert study.cases() == ["caseA", "caseB", "caseC"]
    assert study.labeled_cases() == ["caseA", "caseC"]  # the first two of train.list
    for case in study.cases():
        image = study.read_image(case)
        with h5py.File(source / case / "mri_norm2.h5") as handle:
            assert np.array_equal(image.array, handle["image"][()])
            assert np.array_equal(study.read_ground_truth(case).array, handle["label"][()])
        assert np.allclose(image.affine, np.diag([0.5, 0.5, 0.5, 1.0]))
    assert not list(tmp_path.glob(".study.importing-*"))  # the staging folder is gone


def test_import_refuses_bad_sources_and_writes_nothing(tmp_path):
    source = _tiny_h5_layout(tmp_path / "src")
    with pytest.raises(InputError, match="no research-layout case"):
        import_study(tmp_path / "src" / "caseA", tmp_path / "s1")
    (tmp_path / "list").write_text("caseA\nnope\n")
    with pytest.raises(InputError, match="names 1 case.*nope"):
        import_study(source, tmp_path / "s2", case_list=tmp_path / "list")
    with pytest.raises(InputError, match="--labeled must be an integer from 0 to 3"):
        import_study(source, tmp_path / "s3", labeled=4)
    (tmp_path / "s4").mkdir()
    (tmp_path / "s4" / "keep.txt").write_text("mine")
    with pytest.raises(StudyError, match="not an empty folder"):
        import_study(source, tmp_path / "s4")
    # a corrupt case file fails the import as a whole: no study, no staging folder left behind
    (source / "caseC" / "mri_norm2.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError):
        import_study(source, tmp_path / "s5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list", "s4", "src"]


def test_cli_import_and_one_file_segment_calls_never_collide(tmp_path, capsys):
    from _helpers import save_tiny_model

    source = _tiny_h5_layout(tmp_path / "src", names=("caseA", "caseB"))
    assert main(["import", str(source), "--out", str(tmp_path / "study"), "--labeled", "1",
                 "--spacing", "1"]) == 0
    assert "2 cases, 1 accepted" in capsys.readouterr().out
    model = save_tiny_model(tmp_path / "tiny.pt")
    out = tmp_path / "out"
    for case in ("caseA", "caseB"):  # one call per file, same --out folder
        assert main(["segment", str(source / case / "mri_norm2.h5"), "--model", str(model), "--out", str(out),
                     "--mc-samples", "1", "--device", "cpu", "--threads", "1", "--spacing", "1"]) == 0
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == ["caseA_seg.nii.gz", "caseB_seg.nii.gz"]


def test_napari_reader_names_layers_by_case_folder(tmp_path):
    from napari_uamc._napari.reader import read_layers

    source = _tiny_h5_layout(tmp_path / "src", names=("caseA", "caseB"))
    layers = read_layers([str(source / "caseA" / "mri_norm2.h5"), str(source / "caseB" / "mri_norm2.h5")])
    names = [meta["name"] for _, meta, _ in layers]
    assert names == ["caseA", "caseA label", "caseB", "caseB label"]


# ----------------------------------------------------------------------------- real scans
@requires_la2018
def test_real_h5_scans_import_with_unique_names_and_exact_geometry(tmp_path):
    cases = la2018_cases()[:2]
    source = tmp_path / "src"
    source.mkdir()
    for case in cases:
        (source / case).symlink_to(LA2018 / case)
    (source / "train.list").write_text("\n".join(reversed(cases)) + "\n")
    study = import_study(source, tmp_path / "study", labeled=1)
    assert study.cases() == sorted(cases) and study.labeled_cases() == [cases[-1]]
    for case in cases:
        written = nib.load(study.image_path(case))
        with h5py.File(LA2018 / case / "mri_norm2.h5") as handle:
            image, label = handle["image"][()], handle["label"][()]
        assert written.shape == image.shape
        assert np.allclose(written.affine, np.diag([0.625, 0.625, 0.625, 1.0]))
        assert np.array_equal(np.asarray(written.dataobj), image)
        assert np.array_equal(study.read_ground_truth(case).array, label)


@requires_la2018
def test_real_scan_as_challenge_nrrd_pair_imports_onto_its_oblique_grid(tmp_path):
    import nrrd

    case = la2018_cases()[0]
    with h5py.File(LA2018 / case / "mri_norm2.h5") as handle:
        image, label = handle["image"][()], handle["label"][()]
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    directions = rotation * np.array([0.625, 0.625, 2.5])  # column n: step of axis n (anisotropic)
    header = {"space": "left-posterior-superior", "space directions": directions.T,
              "space origin": np.array([-80.0, 40.0, 12.5]), "kinds": ["domain"] * 3}
    folder = tmp_path / "src" / case
    folder.mkdir(parents=True)
    nrrd.write(str(folder / "lgemri.nrrd"), image, header, index_order="F")
    nrrd.write(str(folder / "laendo.nrrd"), (label * 255).astype(np.uint8), header, index_order="F")
    assert [c.name for c in find_research_cases(tmp_path / "src")] == [case]

    study = import_study(tmp_path / "src", tmp_path / "study", labeled=1)
    source = read_volume(folder / "lgemri.nrrd")
    imported = study.read_image(case)
    assert imported.same_grid(source) and np.array_equal(imported.array, source.array)
    accepted = study.read_label(case)
    assert np.array_equal(accepted.array, (read_volume(folder / "laendo.nrrd").array == 255).astype(np.uint8))
    assert int(accepted.array.sum()) == int(label.sum())


def test_nrrd_label_with_unexpected_values_is_refused(tmp_path):
    import nrrd

    folder = tmp_path / "src" / "X"
    folder.mkdir(parents=True)
    nrrd.write(str(folder / "lgemri.nrrd"), np.zeros((8, 8, 4), np.float32))
    nrrd.write(str(folder / "laendo.nrrd"), np.full((8, 8, 4), 7, np.uint8))
    with pytest.raises(InputError, match=r"label values \[7\]"):
        import_study(tmp_path / "src", tmp_path / "study")
    assert not (tmp_path / "study").exists()
    assert Study  # the facade stays importable beside the importer


def test_real_demo_study_is_the_last_cases_of_the_list(tmp_path):
    from napari_uamc import demo

    source = _tiny_h5_layout(tmp_path / "src", names=tuple(f"c{i}" for i in range(8)))
    (source / "train.list").write_text("\n".join(f"c{i}" for i in reversed(range(8))) + "\n")
    study = Study.open(demo.ensure_real_demo_study(tmp_path / "demo", source))
    assert study.cases() == sorted(f"c{i}" for i in range(demo.DEMO_REAL_CASES))  # c5..c0: the list's last 6
    assert study.labeled_cases() == [] and study.read_ground_truth("c0") is not None
    assert demo.ensure_real_demo_study(tmp_path / "demo", source).samefile(tmp_path / "demo")  # kept
