"""napari-uamc as napari's preferred reader for MRI files: set once where none is set, undoable."""

from __future__ import annotations

import numpy as np
import pytest

from napari_uamc._napari import reader_preference
from napari_uamc._napari.reader_preference import PATTERNS, PLUGIN, claim_reader_patterns, undo_claim


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A first use: an empty cache folder and napari settings in memory (conftest)."""
    from napari.settings import get_settings

    monkeypatch.setenv("NAPARI_UAMC_CACHE", str(tmp_path / "cache"))
    return get_settings()


def test_first_use_sets_the_patterns_nobody_chose(fresh):
    fresh.plugins.extension2reader = {"*.h5": "someone-else", "*.gz": "gz-reader"}
    claimed = claim_reader_patterns()
    assert claimed == ["*.nii", "*.nrrd", "*.nhdr"]  # *.h5 chosen, *.nii.gz covered by *.gz
    preferences = fresh.plugins.extension2reader
    assert preferences["*.h5"] == "someone-else" and preferences["*.gz"] == "gz-reader"
    assert all(preferences[pattern] == PLUGIN for pattern in claimed)
    assert claim_reader_patterns() == []  # only once


def test_undo_takes_back_what_was_set_and_it_is_not_set_again(fresh):
    assert claim_reader_patterns() == list(PATTERNS)
    fresh.plugins.extension2reader = {**fresh.plugins.extension2reader, "*.nrrd": "chosen-later"}
    removed = undo_claim()
    assert "*.nrrd" not in removed and set(removed) == set(PATTERNS) - {"*.nrrd"}
    assert fresh.plugins.extension2reader == {"*.nrrd": "chosen-later"}
    assert claim_reader_patterns() == []  # a removed preference is not set again behind one's back
    assert reader_preference.read_record()["undone"] is True


def test_an_mri_file_opens_without_napari_asking_which_reader(fresh, tmp_path):
    """napari's own reader accepts any file, so without a preference napari always asks (a dialog)."""
    import nibabel as nib
    from napari.components import ViewerModel
    from napari.errors import MultipleReaderError
    from napari.plugins import _initialize_plugins

    _initialize_plugins()  # napari's plugin discovery (a viewer window does it)
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(8, 9, 10).astype(np.float32), np.eye(4)), path)
    viewer = ViewerModel()
    # plugin=None: no reader given, as File > Open and drag and drop do
    with pytest.raises(MultipleReaderError):
        viewer.open(str(path), plugin=None)
    claim_reader_patterns()
    layers = viewer.open(str(path), plugin=None)
    assert [layer.name for layer in layers] == ["scan"] and "uamc" in layers[0].metadata


def test_the_panel_sets_it_on_first_use_and_says_so(fresh, make_napari_viewer):
    from napari_uamc._napari.panel import UamcPanel

    panel = UamcPanel(make_napari_viewer())
    assert fresh.plugins.extension2reader.get("*.nii.gz") == PLUGIN
    text = panel.session.texts["study"][0]
    assert "without asking" in text and "Undo" in text
    second = UamcPanel(make_napari_viewer())  # a second panel sets nothing, says nothing
    assert "study" not in second.session.texts
    from napari_uamc._napari.panel import _undo_reader_preference

    _undo_reader_preference()  # the notification's Undo button
    assert PLUGIN not in fresh.plugins.extension2reader.values()
