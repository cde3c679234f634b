"""The npe2 manifest, reader, writer, layer conversions and sample data of the napari plugin."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import nrrd
import numpy as np
import pytest

from napari_uamc._napari import layers as L
from napari_uamc._napari.reader import get_reader, read_layers
from napari_uamc._napari.sample_data import SampleSettings, phantom_case, phantom_study
from napari_uamc._napari.writer import label_dtype, write_labels
from napari_uamc.data.io import SUPPORTED_SUFFIXES, read_volume
from napari_uamc.errors import InputError

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "src" / "napari_uamc" / "napari.yaml"
#: The one command whose module the lead writes later (checked by the GUI tests).
PANEL_COMMAND = "napari-uamc.make_panel"


# --------------------------------------------------------------------------- fixtures


def oblique_affine() -> np.ndarray:
    """Anisotropic (0.7, 1.3, 2.5 mm), axes permuted and flipped, rotated 20 degrees."""
    angle = np.deg2rad(20.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    )
    # source axis 0 -> -y, axis 1 -> z, axis 2 -> -x (an LPS-like, sagittal-first layout)
    axes = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    linear = rotation @ axes @ np.diag([0.7, 1.3, 2.5])
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = (12.5, -40.0, 7.25)
    return affine


@pytest.fixture
def nifti_case(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    array = rng.normal(100.0, 20.0, size=(14, 11, 9)).astype(np.float32)
    path = tmp_path / "la_007_0000.nii.gz"
    nib.save(nib.Nifti1Image(array, oblique_affine()), str(path))
    return path


# --------------------------------------------------------------------------- manifest


def test_manifest_is_valid_and_complete() -> None:
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-uamc"
    assert (REPO / "napari.yaml").resolve() == MANIFEST.resolve()
    contributions = manifest.contributions
    patterns = set(contributions.readers[0].filename_patterns)
    assert patterns == {"*.nii", "*.nii.gz", "*.nrrd", "*.nhdr", "*.h5", "*.dcm", "*.DCM"}
    # the manifest and data/io.py (the formats' one home) name the same formats
    assert patterns == {f"*{suffix}" for suffix in SUPPORTED_SUFFIXES} | {"*.DCM"}
    assert contributions.readers[0].accepts_directories  # a folder of one DICOM series
    writer = contributions.writers[0]
    assert [str(t) for t in writer.layer_types] == ["labels"]
    assert writer.filename_extensions == [".nii.gz"]
    assert {s.display_name for s in contributions.sample_data} == {"Phantom LA case", "Phantom study"}
    assert [w.display_name for w in contributions.widgets] == ["UG-MCL segmentation"]
    segment_menu = contributions.menus["napari/layers/segment"]
    assert [item.command for item in segment_menu] == [PANEL_COMMAND]


def test_npe2_validate_passes_for_installed_plugin() -> None:
    """``npe2 validate`` on the installed plugin (without --imports: the panel comes later)."""
    npe2_cli = Path(sys.executable).with_name("npe2")
    result = subprocess.run(
        [str(npe2_cli), "validate", "napari-uamc"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_manifest_commands_import_except_panel() -> None:
    from npe2 import PluginManifest

    for command in PluginManifest.from_file(MANIFEST).contributions.commands:
        if command.id == PANEL_COMMAND:
            continue
        module_name, attribute = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module_name), attribute)), command.id


# --------------------------------------------------------------------------- display convention


def test_display_convention_round_trips_and_is_radiological() -> None:
    canonical = np.zeros((5, 4, 3), dtype=np.int16)  # [x, y, z]
    canonical[4, 3, 1] = 7  # most right, most anterior voxel of slice z = 1
    data = L.volume_to_layer_data(canonical)
    assert data.shape == (3, 4, 5)  # slider over z, then rows, columns
    assert data[1, 0, 0] == 7  # anterior up, patient right on the screen's left
    assert np.shares_memory(data, canonical)
    assert np.array_equal(L.layer_data_to_canonical(data), canonical)
    assert L.canonical_index((1, 0, 0), canonical.shape) == (4, 3, 1)
    assert L.displayed_index((4, 3, 1), canonical.shape) == (1, 0, 0)
    assert L.display_scale((0.5, 0.7, 2.0)) == (2.0, 0.7, 0.5)
    assert L.canonical_spacing((2.0, 0.7, 0.5)) == (0.5, 0.7, 2.0)


@pytest.mark.parametrize(
    ("data", "rgb", "message"),
    [
        (np.zeros((8, 8)), False, "2D"),
        (np.zeros((4, 8, 8, 3)), True, "RGB"),
        (np.zeros((3, 4, 8, 8)), False, "4D series of 3"),
    ],
)
def test_volume_from_layer_refuses_non_volumes(data: np.ndarray, rgb: bool, message: str) -> None:
    with pytest.raises(InputError, match=message):
        L.volume_from_layer((data, {"name": "bad", "rgb": rgb, "metadata": {}}, "image"))


def test_volume_from_plain_layer_uses_scale_and_warns() -> None:
    data = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    with pytest.warns(UserWarning, match="no napari-uamc geometry"):
        volume = L.volume_from_layer((data, {"name": "plain", "scale": (3.0, 2.0, 0.5)}, "image"))
    assert volume.spacing == (0.5, 2.0, 3.0)
    assert np.array_equal(L.volume_to_layer_data(volume), data)


# --------------------------------------------------------------------------- reader


def test_get_reader_accepts_only_supported_files(tmp_path: Path, nifti_case: Path) -> None:
    assert get_reader(str(nifti_case)) is read_layers
    assert get_reader([str(nifti_case), str(nifti_case)]) is read_layers
    assert get_reader(str(tmp_path / "image.tif")) is None
    assert get_reader([str(nifti_case), str(tmp_path / "image.tif")]) is None
    assert get_reader(str(tmp_path)) is None


def test_reader_nifti_oblique_anisotropic(nifti_case: Path) -> None:
    (data, kwargs, layer_type), = read_layers(str(nifti_case))
    volume = read_volume(nifti_case)
    sx, sy, sz = volume.spacing
    assert layer_type == "image"
    assert kwargs["name"] == "la_007"
    assert data.shape == (volume.shape[2], volume.shape[1], volume.shape[0])  # slider over z
    assert np.allclose(kwargs["scale"], (sz, sy, sx))
    assert sorted(np.round(kwargs["scale"], 5)) == [0.7, 1.3, 2.5]
    assert np.array_equal(L.layer_data_to_canonical(data), volume.array)
    meta = kwargs["metadata"]["uamc"]
    assert meta["path"] == str(nifti_case) and meta["case"] == "la_007"
    assert np.array_equal(meta["affine"], volume.affine)
    assert np.array_equal(meta["source"].affine, nib.load(str(nifti_case)).affine)
    low, high = kwargs["contrast_limits"]
    assert np.percentile(data, 0.5) == pytest.approx(low)
    assert np.percentile(data, 99.5) == pytest.approx(high)


def test_reader_nrrd_lps(tmp_path: Path) -> None:
    array = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.625, 0.625, 2.5]),
        "space origin": np.array([-10.0, 20.0, 5.0]),
    }
    (tmp_path / "CASE1").mkdir()
    path = tmp_path / "CASE1" / "lgemri.nrrd"
    nrrd.write(str(path), array, header, index_order="F")
    (data, kwargs, layer_type), = read_layers(str(path))
    assert layer_type == "image" and kwargs["name"] == "CASE1"  # the challenge's case folder
    assert data.shape == (4, 5, 6)
    assert np.allclose(kwargs["scale"], (2.5, 0.625, 0.625))
    # LPS -> RAS flips x and y: source voxel (0, 0, z) is the most right/anterior = top-left.
    assert np.array_equal(data[:, 0, 0], array[0, 0, :])


def test_reader_h5_with_label(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image = rng.random((10, 9, 6)).astype(np.float32)
    label = (image > 0.6).astype(np.uint8)
    path = tmp_path / "case_A.h5"
    with h5py.File(path, "w") as handle:
        handle["image"], handle["label"] = image, label
    layers = read_layers(str(path))
    assert [(kw["name"], kind) for _, kw, kind in layers] == [
        ("case_A", "image"),
        ("case_A label", "labels"),
    ]
    (image_data, image_kwargs, _), (label_data, label_kwargs, _) = layers
    assert image_data.shape == label_data.shape == (6, 9, 10)
    assert tuple(image_kwargs["scale"]) == tuple(label_kwargs["scale"]) == (1.0, 1.0, 1.0)
    assert np.issubdtype(label_data.dtype, np.integer)
    assert np.array_equal(L.layer_data_to_canonical(label_data), label)


def test_reader_opens_study_labels_as_labels(tmp_path: Path, nifti_case: Path) -> None:
    folder = tmp_path / "labelsTr"
    folder.mkdir()
    label = (nib.load(str(nifti_case)).get_fdata() > 100).astype(np.uint8)
    nib.save(nib.Nifti1Image(label, oblique_affine()), str(folder / "la_007.nii.gz"))
    (_, kwargs, layer_type), = read_layers(str(folder / "la_007.nii.gz"))
    assert layer_type == "labels" and kwargs["name"] == "la_007"


def test_reader_bad_file_raises_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"not a nifti file")
    with pytest.raises(InputError, match="broken.nii.gz"):
        read_layers(str(path))


# --------------------------------------------------------------------------- writer


def test_writer_round_trip_exact_grid(tmp_path: Path, nifti_case: Path) -> None:
    (data, kwargs, _), = read_layers(str(nifti_case))
    labels = (data > 100).astype(np.uint8)  # what a labels layer made from the image holds
    painted = (4, 2, 7)  # (slice, row, column) the person paints
    labels[painted] = 3
    label_meta = {"name": "la_007 segmentation", "scale": kwargs["scale"], "metadata": kwargs["metadata"]}

    written = write_labels(str(tmp_path / "out" / "la_007.nii.gz"), labels, label_meta)

    source = nib.load(str(nifti_case))
    result = nib.load(written[0])
    assert written == [str(tmp_path / "out" / "la_007.nii.gz")]
    assert np.array_equal(result.affine, source.affine)
    assert result.shape == source.shape
    saved = np.asanyarray(result.dataobj)
    source_array = np.asanyarray(source.dataobj)
    painted_mask = np.zeros(saved.shape, dtype=bool)
    # the painted voxel, located through world coordinates (independent of the flips)
    canonical = L.canonical_index(painted, kwargs["metadata"]["uamc"]["shape"])
    world = kwargs["metadata"]["uamc"]["affine"] @ np.array([*canonical, 1.0])
    source_index = tuple(np.rint(np.linalg.inv(source.affine) @ world)[:3].astype(int))
    painted_mask[source_index] = True
    assert saved[source_index] == 3
    assert np.array_equal(saved[~painted_mask], (source_array > 100)[~painted_mask])


def test_writer_without_geometry_uses_scale(tmp_path: Path) -> None:
    labels = np.zeros((3, 4, 5), dtype=np.int32)
    labels[1, 0, 0] = 2
    meta = {"name": "drawn", "scale": (2.0, 1.5, 0.5), "metadata": {}}
    with pytest.warns(UserWarning, match="no napari-uamc geometry"):
        (path,) = write_labels(str(tmp_path / "drawn.nii.gz"), labels, meta)
    assert np.allclose(nib.load(path).affine, np.diag([0.5, 1.5, 2.0, 1.0]))
    (data, kwargs, _), = read_layers(path)  # reads back as it was shown
    assert np.array_equal(data, labels)
    assert np.allclose(kwargs["scale"], (2.0, 1.5, 0.5))


def test_writer_rejects_bad_input(tmp_path: Path, nifti_case: Path) -> None:
    (data, kwargs, _), = read_layers(str(nifti_case))
    labels = np.zeros(data.shape, dtype=np.uint8)
    with pytest.raises(InputError, match=r"\.nii\.gz"):
        write_labels(str(tmp_path / "label.tif"), labels, kwargs)
    with pytest.raises(InputError, match="does not match its recorded grid"):
        write_labels(str(tmp_path / "label.nii.gz"), labels[:-1], kwargs)
    with pytest.raises(InputError, match="integers"):
        write_labels(str(tmp_path / "label.nii.gz"), labels.astype(np.float32), kwargs)
    assert not list(tmp_path.glob("label*"))


def test_label_dtype_is_smallest_exact() -> None:
    assert label_dtype(np.array([0, 255])) == np.uint8
    assert label_dtype(np.array([0, 300])) == np.uint16
    assert label_dtype(np.array([-1, 2])) == np.int16
    assert label_dtype(np.array([True, False])) == np.uint8


# --------------------------------------------------------------------------- sample data

TINY = SampleSettings(shape=(32, 32, 16), study_cases=3, study_labeled=1)


def test_phantom_case_sample() -> None:
    (image, image_kwargs, image_type), (label, label_kwargs, label_type) = phantom_case(TINY)
    assert (image_type, label_type) == ("image", "labels")
    assert image.shape == label.shape == (16, 32, 32)
    assert np.issubdtype(label.dtype, np.integer) and label.max() >= 1
    assert label_kwargs["name"] == image_kwargs["name"] + " label"
    assert image_kwargs["metadata"]["uamc"]["shape"] == (32, 32, 16)


def test_phantom_study_sample_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAPARI_UAMC_CACHE", str(tmp_path / "cache"))
    (data, kwargs, layer_type), = phantom_study(TINY)
    study = Path(kwargs["metadata"]["uamc"]["study"])
    assert study == tmp_path / "cache" / "sample-study"
    assert (study / "dataset.json").is_file()
    assert len(list((study / "imagesTr").glob("*.nii.gz"))) == TINY.study_cases
    assert len(list((study / "labelsTr").glob("*.nii.gz"))) == TINY.study_labeled
    assert layer_type == "image" and data.shape == (16, 32, 32)
    stamp = (study / "dataset.json").stat().st_mtime_ns
    phantom_study(TINY)
    assert (study / "dataset.json").stat().st_mtime_ns == stamp  # reused, not rebuilt


# --------------------------------------------------------------------------- in napari


@pytest.mark.gui
def test_viewer_opens_file_with_plugin(make_napari_viewer, nifti_case: Path) -> None:
    viewer = make_napari_viewer()
    opened = viewer.open(str(nifti_case), plugin="napari-uamc")
    volume = read_volume(nifti_case)
    sx, sy, sz = volume.spacing
    assert [layer.name for layer in opened] == ["la_007"]
    layer = opened[0]
    assert np.allclose(layer.scale, (sz, sy, sx))
    assert layer.data.shape[0] == volume.shape[2]
    assert viewer.dims.nsteps[0] == volume.shape[2]  # the slider runs over the axial slices
    assert layer.metadata["uamc"]["case"] == "la_007"
    rebuilt = L.volume_from_layer(layer)
    assert rebuilt.same_grid(volume) and np.array_equal(rebuilt.array, volume.array)


@pytest.mark.gui
def test_viewer_sample_paint_and_save_with_plugin(make_napari_viewer, tmp_path: Path) -> None:
    viewer = make_napari_viewer()
    image, label = viewer.open_sample("napari-uamc", "phantom_case")
    assert (type(image).__name__, type(label).__name__) == ("Image", "Labels")
    assert np.allclose(image.scale, label.scale)
    label.paint((10, 5, 5), 2, refresh=False)  # napari's own brush, on the display-order view
    target = tmp_path / "edited.nii.gz"
    assert label.save(str(target), plugin="napari-uamc") == [str(target)]
    saved = nib.load(str(target))
    reference = L.reference_volume_for(label)
    assert reference is not None
    # an in-memory phantom: its float64 affine as NIfTI stores it (float32)
    assert np.allclose(saved.affine, reference.source.affine, rtol=1e-6, atol=1e-5)
    expected = reference.to_source_order(L.layer_data_to_canonical(label.data))
    assert np.array_equal(np.asanyarray(saved.dataobj), expected)
    assert (np.asanyarray(saved.dataobj) == 2).any()


def test_new_labels_layer_drawn_over_a_plugin_image_saves_on_its_grid(make_napari_viewer, nifti_case: Path,
                                                                      tmp_path: Path) -> None:
    """napari's own "New Labels layer" carries no plugin geometry: the writer takes the image's."""
    viewer = make_napari_viewer()
    (image,) = viewer.open(str(nifti_case), plugin="napari-uamc")
    viewer.layers.selection.active = image
    viewer._new_labels()  # what the layer list's "New Labels layer" button runs
    drawn = viewer.layers[-1]
    assert drawn.data.shape == image.data.shape and L.uamc_metadata(drawn) is None
    drawn.data[2, 3, 4] = 1
    written = write_labels(str(tmp_path / "drawn.nii.gz"), drawn.data, drawn._get_state())
    source, result = nib.load(str(nifti_case)), nib.load(written[0])
    assert np.array_equal(result.affine, source.affine) and result.shape == source.shape
    canonical = L.canonical_index((2, 3, 4), image.metadata["uamc"]["shape"])
    world = image.metadata["uamc"]["affine"] @ np.array([*canonical, 1.0])
    index = tuple(np.rint(np.linalg.inv(source.affine) @ world)[:3].astype(int))
    assert np.asanyarray(result.dataobj)[index] == 1 and int(np.asanyarray(result.dataobj).sum()) == 1

    # a label on another grid than every plugin image is refused, not written elsewhere
    other = viewer.add_labels(np.zeros(image.data.shape, np.uint8), scale=(3.0, 3.0, 3.0), name="elsewhere")
    with pytest.raises(InputError, match="elsewhere carries no image geometry.*somewhere else"):
        write_labels(str(tmp_path / "elsewhere.nii.gz"), other.data, other._get_state())
    assert not (tmp_path / "elsewhere.nii.gz").exists()
