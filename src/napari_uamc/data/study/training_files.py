"""The files a study trains on, listed without opening the study: images and accepted labels.

``uamc train`` (:func:`napari_uamc.engine.dataset.load_cases_from_folder`) and the fine-tune
(:func:`napari_uamc.engine.finetune.finetune_study`) both take a study's cases from
:func:`read_training_files`. It only lists files: nothing is written, no ``.uamc/`` is created
and ``dataset.json``/``state.json`` are not repaired (which :meth:`Study.open` does), so
training leaves a study folder byte for byte as it was. ``groundTruth/`` is never read.

Two rule sets, one listing:

* the training rules (default, ``uamc train``): every readable image in ``imagesTr/`` (NIfTI,
  NRRD), and the labels in ``labelsTr/`` by case name, so ``<case>_seg`` and ``<case>_0000``
  label files count too; two files of one case are refused;
* the study rules (``study_rules=True``, the fine-tune): what :class:`Study` sees, NIfTI images
  only and a case's label only under its exact name ``labelsTr/<case>.nii.gz`` (or ``.nii``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_uamc.data.io import VOLUME_FILE_SUFFIXES, case_name
from napari_uamc.data.study.layout import IMAGES_DIR, NIFTI_SUFFIXES, StudyLayout, find_nifti
from napari_uamc.errors import InputError

#: Image (and label) files ``uamc train`` reads: NIfTI and NRRD.
READABLE_SUFFIXES = VOLUME_FILE_SUFFIXES


def _suffix(path: Path, suffixes: Sequence[str]) -> str | None:
    name = path.name.lower()
    return next((s for s in suffixes if name.endswith(s)), None)


def list_files(folder: Path, suffixes: Sequence[str]) -> list[Path]:
    """The files of ``folder`` (not its sub-folders) ending in one of ``suffixes`` (any case),
    hidden files left out, sorted by path."""
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and _suffix(p, suffixes)
    )


def index_cases(files: Sequence[Path], *, strip_seg: bool, folder: Path) -> dict[str, Path]:
    """Case name (:func:`~napari_uamc.data.io.case_name`) -> file.

    Raises:
        InputError: two of ``files`` are one case (e.g. ``a.nii.gz`` and ``a.nrrd``).
    """
    found: dict[str, Path] = {}
    for path in files:
        name = case_name(path, strip_seg=strip_seg)
        if name in found:
            raise InputError(f"{folder}: {found[name].name} and {path.name} are both case {name!r}; keep one")
        found[name] = path
    return found


@dataclass(frozen=True)
class TrainingFiles:
    """A study's images and accepted labels: case name -> file (paths only, nothing read)."""

    root: Path
    images: Mapping[str, Path]
    #: Only cases that have an image.
    labels: Mapping[str, Path]

    @property
    def labeled(self) -> list[str]:
        """Cases with an accepted label, sorted."""
        return sorted(self.labels)

    @property
    def unlabeled(self) -> list[str]:
        """Cases without an accepted label, sorted."""
        return sorted(set(self.images) - set(self.labels))


def read_training_files(root: str | os.PathLike[str], *, study_rules: bool = False) -> TrainingFiles:
    """List the images and accepted labels of the MSD study at ``root``, writing nothing.

    ``study_rules``: list what :class:`Study` sees (module docstring) instead of everything
    ``uamc train`` can read.

    Raises:
        InputError: ``root`` has no ``imagesTr/`` folder, or two files are one case.
    """
    layout = StudyLayout(Path(root).expanduser())
    if not layout.images_dir.is_dir():
        raise InputError(f"{layout.root} is not a study: it has no {IMAGES_DIR}/ folder")
    suffixes = NIFTI_SUFFIXES if study_rules else READABLE_SUFFIXES
    images = index_cases(list_files(layout.images_dir, suffixes), strip_seg=False, folder=layout.images_dir)
    labels: dict[str, Path] = {}
    if study_rules:
        found = {case: find_nifti(layout.labels_dir, case) for case in images}
        labels = {case: path for case, path in found.items() if path is not None}
    elif layout.labels_dir.is_dir():
        every = index_cases(list_files(layout.labels_dir, suffixes), strip_seg=True, folder=layout.labels_dir)
        labels = {case: path for case, path in every.items() if case in images}
    return TrainingFiles(layout.root, images, labels)
