"""Every folder and file name of a study (MSD layout plus ``.uamc/``), in one place.

::

    study/
      dataset.json              MSD metadata; ``training`` lists the accepted cases
      imagesTr/<case>.nii.gz    the images, never modified
      labelsTr/<case>.nii.gz    accepted labels: a case is accepted exactly when its file is here
      groundTruth/<case>.nii.gz optional reference labels, never used for training
      imagesTs/                 optional test images
      .uamc/state.json          per case: status, uncertainty, timestamps, scores; current model
      .uamc/state.lock          the inter-process lock of every state change
      .uamc/predictions/<case>_{seg,sdf,uncertainty}.nii.gz (+ _disagreement when the panel saved it)
      .uamc/history/<case>/<UTC time>.nii.gz   every earlier accepted label
      .uamc/drafts/<case>.nii.gz
      .uamc/models/v<NNN>.pt + v<NNN>.json

This module imports nothing of napari-uamc (and nothing heavy), so every other module can take
the names from here: :mod:`napari_uamc.data.io` takes its NIfTI suffixes and the prediction
suffix ``_seg`` from it; the readers, the training-data loader, the phantom writer and the CLI
take the folder names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

IMAGES_DIR = "imagesTr"
LABELS_DIR = "labelsTr"
GROUND_TRUTH_DIR = "groundTruth"
TEST_IMAGES_DIR = "imagesTs"
#: MSD's folder of test labels: a study never writes it, but readers treat its files as labels.
TEST_LABELS_DIR = "labelsTs"
DATASET_FILE = "dataset.json"
TOOL_DIR = ".uamc"
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
PREDICTIONS_DIR = "predictions"
HISTORY_DIR = "history"
DRAFTS_DIR = "drafts"
MODELS_DIR = "models"
#: Prefix of the temporary folder (in ``.uamc/``) where new images are staged.
STAGING_PREFIX = "staging-"
#: Everything of a study at its top level (what ``uamc phantoms --force`` replaces).
STUDY_PARTS = (IMAGES_DIR, LABELS_DIR, GROUND_TRUTH_DIR, TEST_IMAGES_DIR, TOOL_DIR, DATASET_FILE)
#: Folders of a study (and of MSD data) whose files are label maps, not images.
LABEL_DIRS = (LABELS_DIR, TEST_LABELS_DIR, GROUND_TRUTH_DIR)

#: What a study writes; what it reads (longest first, so ``.nii.gz`` wins over ``.nii``).
NIFTI_SUFFIX = ".nii.gz"
NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: The maps of a prediction: ``<case>_<kind>.nii.gz``.
PREDICTION_KINDS = ("seg", "sdf", "uncertainty")
#: Maps a prediction may also have (written when given; a prediction is complete without them):
#: the two heads' disagreement, which the panel shows and cannot recompute from the other maps.
OPTIONAL_PREDICTION_KINDS = ("disagreement",)
#: The name ending of a prediction's label map (``<case>_seg``).
SEGMENTATION_SUFFIX = "_seg"

#: Model versions: ``v001``, ``v002``, ... (at least three digits) in ``.uamc/models/``.
MODEL_VERSION_PATTERN = re.compile(r"^v(\d{3,})$")
MODEL_VERSION_DIGITS = 3
MODEL_SUFFIX = ".pt"
MODEL_INFO_SUFFIX = ".json"


def nifti_name(stem: str) -> str:
    """``<stem>.nii.gz``: the file name a study writes for ``stem``."""
    return f"{stem}{NIFTI_SUFFIX}"


def prediction_name(case: str, kind: str) -> str:
    """``<case>_<kind>.nii.gz``, the file of one prediction map (``seg``, ``sdf``, ...)."""
    return nifti_name(f"{case}_{kind}")


def model_version_name(number: int) -> str:
    """``v001`` for 1."""
    return f"v{number:0{MODEL_VERSION_DIGITS}d}"


def nifti_stem(path: Path) -> str | None:
    """The file name without its NIfTI suffix, or ``None`` if it is not a NIfTI file."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def nifti_suffix(path: Path) -> str:
    """The NIfTI suffix of ``path`` (``.nii.gz`` unless it ends in ``.nii``)."""
    return NIFTI_SUFFIX if path.name.endswith(NIFTI_SUFFIX) else ".nii"


def find_nifti(folder: Path, stem: str) -> Path | None:
    """``folder/<stem>.nii.gz`` or ``folder/<stem>.nii``, whichever exists (in that order)."""
    for suffix in NIFTI_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class StudyLayout:
    """The folders and files of the study at ``root`` (paths only; nothing is read)."""

    root: Path

    @property
    def tool_dir(self) -> Path:
        return self.root / TOOL_DIR

    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_DIR

    @property
    def labels_dir(self) -> Path:
        return self.root / LABELS_DIR

    @property
    def ground_truth_dir(self) -> Path:
        return self.root / GROUND_TRUTH_DIR

    @property
    def test_images_dir(self) -> Path:
        return self.root / TEST_IMAGES_DIR

    @property
    def predictions_dir(self) -> Path:
        return self.tool_dir / PREDICTIONS_DIR

    @property
    def history_dir(self) -> Path:
        return self.tool_dir / HISTORY_DIR

    @property
    def drafts_dir(self) -> Path:
        return self.tool_dir / DRAFTS_DIR

    @property
    def models_dir(self) -> Path:
        return self.tool_dir / MODELS_DIR

    @property
    def dataset_path(self) -> Path:
        return self.root / DATASET_FILE

    @property
    def state_path(self) -> Path:
        return self.tool_dir / STATE_FILE

    @property
    def lock_path(self) -> Path:
        return self.tool_dir / LOCK_FILE

    def image_file(self, case: str) -> Path:
        """Where a study writes the image of ``case``."""
        return self.images_dir / nifti_name(case)

    def label_file(self, case: str) -> Path:
        """Where a study writes the accepted label of ``case``."""
        return self.labels_dir / nifti_name(case)

    def ground_truth_file(self, case: str) -> Path:
        return self.ground_truth_dir / nifti_name(case)

    def draft_file(self, case: str) -> Path:
        return self.drafts_dir / nifti_name(case)

    def prediction_files(self, case: str) -> dict[str, Path]:
        """The ``seg``, ``sdf`` and ``uncertainty`` files of ``case``."""
        return {kind: self.predictions_dir / prediction_name(case, kind) for kind in PREDICTION_KINDS}

    def optional_prediction_files(self, case: str) -> dict[str, Path]:
        """The optional maps of ``case``'s prediction (``disagreement``), present or not."""
        return {kind: self.predictions_dir / prediction_name(case, kind) for kind in OPTIONAL_PREDICTION_KINDS}

    def model_file(self, version: str) -> Path:
        return self.models_dir / f"{version}{MODEL_SUFFIX}"

    def model_info_file(self, version: str) -> Path:
        return self.models_dir / f"{version}{MODEL_INFO_SUFFIX}"
