"""Training data in memory: z-scored canonical images, optional labels, and the labeled split.

:func:`load_cases_from_folder` reads the ``DATA`` argument of ``uamc train``, one of:

* an MSD study folder: ``imagesTr/`` with labels in ``labelsTr/`` (``groundTruth/`` is never read:
  reference labels must not leak into training), listed by
  :func:`~napari_uamc.data.study.training_files.read_training_files` as the fine-tune lists it;
  the folder is only read;
* a folder of LA ``.h5`` files (datasets ``image`` and ``label``), flat or one sub-folder per case
  as in the research code's ``<case>/mri_norm2.h5``; they carry no geometry, so ``h5_spacing``;
* a folder of NIfTI/NRRD images with their labels in a ``labels/`` (or ``labelsTr/``) sub-folder.

The labeled set is the first ``labeled`` cases in sorted name order (the paper takes the first N
of its list), or the cases named in a list, or by default every case that has a label; all other
cases with an image are unlabeled (their labels, if any, are not read).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_uamc.data.case_list import COMMENT as CASE_LIST_COMMENT
from napari_uamc.data.case_list import read_case_list
from napari_uamc.data.io import H5_SUFFIX, read_h5_case, read_label, read_volume
from napari_uamc.data.study.layout import IMAGES_DIR, LABELS_DIR
from napari_uamc.data.study.training_files import (
    READABLE_SUFFIXES,
    index_cases,
    list_files,
    read_training_files,
)
from napari_uamc.engine.preprocess import resample_to_spacing, zscore
from napari_uamc.errors import InputError

#: Label sub-folders of a plain image folder, tried in this order.
PLAIN_LABEL_FOLDERS = ("labels", LABELS_DIR)
#: Lines of a case-list file starting with this are comments (:func:`read_case_list`).
COMMENT = CASE_LIST_COMMENT
MAX_LABEL_VALUE = np.iinfo(np.uint8).max
NAMES_IN_MESSAGES = 8

ProgressCallback = Callable[[int, int], None]


@dataclass
class TrainingCase:
    """One case ready for sampling: ``image`` float32 z-scored in canonical order, ``label``
    uint8 class indices on the same grid (None for an unlabeled case), ``spacing`` in mm."""

    name: str
    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]

    def __post_init__(self) -> None:
        if self.image.ndim != 3:
            raise InputError(f"case {self.name}: the image must be 3D, not shape {self.image.shape}")
        if self.label is not None and self.label.shape != self.image.shape:
            raise InputError(
                f"case {self.name}: label shape {self.label.shape} differs from the image's "
                f"{self.image.shape}"
            )
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise InputError(f"case {self.name}: spacing must be three positive numbers, not {self.spacing}")
        self.spacing = spacing  # type: ignore[assignment]

    @classmethod
    def from_arrays(
        cls,
        name: str,
        image: np.ndarray,
        label: np.ndarray | None = None,
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> TrainingCase:
        """A case from a raw image (z-scored here) and an integer label map."""
        image = np.asarray(image)
        if not np.all(np.isfinite(image)):
            raise InputError(f"case {name}: the image has NaN or infinite values")
        return cls(name, zscore(image), None if label is None else _label_uint8(label, name), tuple(spacing))

    @property
    def labeled(self) -> bool:
        return self.label is not None


@dataclass
class CaseSplit:
    """The labeled and unlabeled cases of a training set, and where they came from."""

    labeled: list[TrainingCase]
    unlabeled: list[TrainingCase]
    source: str = ""

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Median voxel spacing of all cases (what a model trained on them records)."""
        spacings = np.array([c.spacing for c in self.labeled + self.unlabeled], dtype=float)
        return tuple(float(s) for s in np.median(spacings, axis=0))  # type: ignore[return-value]

    def n_classes(self) -> int:
        """Classes needed by the labels: the largest value + 1, at least 2 (background + one)."""
        largest = max((int(c.label.max(initial=0)) for c in self.labeled), default=1)  # type: ignore[union-attr]
        return max(2, largest + 1)


def _label_uint8(label: np.ndarray, name: str) -> np.ndarray:
    label = np.asarray(label)
    if label.size and (label.min() < 0 or label.max() > MAX_LABEL_VALUE):
        raise InputError(
            f"case {name}: label values must be class indices in [0, {MAX_LABEL_VALUE}], found "
            f"[{label.min()}, {label.max()}]"
        )
    return label.astype(np.uint8, copy=False)


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_IN_MESSAGES])
    return shown + (f", ... ({len(names)} in all)" if len(names) > NAMES_IN_MESSAGES else "")


# ------------------------------------------------------------------------------ the split
def split_labeled(
    names: Sequence[str],
    with_label: set[str],
    *,
    labeled: int | None = None,
    labeled_names: Sequence[str] | None = None,
    source: str = "",
) -> tuple[list[str], list[str]]:
    """``(labeled, unlabeled)`` case names, see the module docstring for the rules."""
    names = sorted(names)
    if labeled is not None and labeled_names is not None:
        raise InputError("give the labeled cases either as a count or as a list, not both")
    if labeled is not None:
        if isinstance(labeled, bool) or not isinstance(labeled, int) or labeled < 0:
            raise InputError(f"the number of labeled cases must be an integer >= 0, not {labeled!r}")
        if labeled > len(names):
            raise InputError(f"{source}: {labeled} labeled cases asked for, but it has only {len(names)} cases")
        chosen = names[:labeled]
    elif labeled_names is not None:
        unknown = sorted(set(labeled_names) - set(names))
        if unknown:
            raise InputError(f"{source}: the labeled-case list names unknown cases: {_listing(unknown)}")
        chosen = sorted(set(labeled_names))
    else:
        chosen = [name for name in names if name in with_label]
    missing = [name for name in chosen if name not in with_label]
    if missing:
        raise InputError(f"{source}: these cases are to be labeled but have no label file: {_listing(missing)}")
    chosen_set = set(chosen)
    return chosen, [name for name in names if name not in chosen_set]


# ------------------------------------------------------------------------------ folder kinds
def _h5_index(folder: Path) -> dict[str, Path]:
    """Case name -> .h5 file; files inside case sub-folders take the sub-folder's name."""
    flat = list_files(folder, (H5_SUFFIX,))
    nested = [
        path
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        for path in list_files(sub, (H5_SUFFIX,))
    ]
    found = index_cases(flat, strip_seg=False, folder=folder)
    for path in nested:
        name = path.parent.name
        if name in found:
            raise InputError(f"{folder}: case {name!r} has more than one .h5 file ({found[name]}, {path})")
        found[name] = path
    return found


def _to_case(name: str, image, label, target_spacing=None) -> TrainingCase:  # Volume, Volume | None
    array, spacing = image.array, image.spacing
    label_array = None if label is None else _label_uint8(label.array, name)
    if target_spacing is not None:
        array, label_array, spacing = resample_to_spacing(array, label_array, spacing, target_spacing, f"case {name}")
    return TrainingCase(name, zscore(array), label_array, spacing)


@dataclass
class FolderListing:
    """The files of a training folder, listed without reading them: case name -> image file and
    -> label file, and the folder's layout (``"study"``, ``"h5"`` or ``"images"``)."""

    images: dict[str, Path]
    labels: dict[str, Path]
    kind: str

    @property
    def labeled(self) -> list[str]:
        """The cases with a label, sorted (an LA ``.h5`` file holds its label, or fails on reading)."""
        return sorted(self.images if self.kind == "h5" else set(self.labels) & set(self.images))


def list_training_folder(path: str | os.PathLike[str]) -> FolderListing:
    """List a training folder (module docstring) without reading an image.

    Raises:
        InputError: not a folder, no training images, or two files of one case.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise InputError(f"training data {root} is not a folder")
    if (root / IMAGES_DIR).is_dir():
        # listed without opening a Study: training only reads (Study.open would create .uamc/ and
        # repair the folder's records), and it also takes NRRD images and <case>_seg labels
        study = read_training_files(root)
        listing = FolderListing(dict(study.images), dict(study.labels), "study")
    elif h5_files := _h5_index(root):
        listing = FolderListing(h5_files, {}, "h5")
    else:
        images = index_cases(list_files(root, READABLE_SUFFIXES), strip_seg=False, folder=root)
        labels_dir = next((root / n for n in PLAIN_LABEL_FOLDERS if (root / n).is_dir()), None)
        labels = (
            index_cases(list_files(labels_dir, READABLE_SUFFIXES), strip_seg=True, folder=labels_dir)
            if labels_dir else {}
        )
        listing = FolderListing(images, labels, "images")
    if not listing.images:
        raise InputError(
            f"{root} holds no training images: expected an MSD study ({IMAGES_DIR}/ + {LABELS_DIR}/), "
            f"LA .h5 files, or NIfTI/NRRD images with a labels/ sub-folder"
        )
    return listing


def load_cases_from_folder(
    path: str | os.PathLike[str],
    *,
    labeled: int | None = None,
    labeled_names: Sequence[str] | str | os.PathLike[str] | None = None,
    h5_spacing: float | Sequence[float] | None = None,
    target_spacing: Sequence[float] | None = None,
    progress: ProgressCallback | None = None,
    first_labeled: int | None = None,
) -> CaseSplit:
    """Read a training folder (module docstring) into labeled and unlabeled cases.

    ``first_labeled``: read only the first that many cases with a label (sorted name order) and
    no unlabeled case (a fine-tune's replay cases, :mod:`napari_uamc.engine.replay`).

    ``labeled_names`` is a list of case names or the path of a list file. ``target_spacing``
    (mm, three numbers) resamples every case whose spacing differs from it by more than 10 %
    (images linearly, labels class by class), so a model can train coarser than its data.
    ``progress(done, total)`` is called after each case is read. Images come back z-scored in
    canonical order (float32), labels as uint8 class indices; nothing in the folder is written.

    Raises:
        InputError: not a folder, no training images, two files of one case, a case to be
            labeled without a label, or an unreadable or malformed file.
    """
    root = Path(path).expanduser()
    listing = list_training_folder(root)
    if isinstance(labeled_names, (str, os.PathLike)):
        labeled_names = read_case_list(labeled_names)
    images, labels, kind = listing.images, listing.labels, listing.kind
    with_label = set(listing.labeled)
    if first_labeled is not None:
        labeled_list, unlabeled_list = sorted(with_label)[:first_labeled], []
    else:
        labeled_list, unlabeled_list = split_labeled(
            list(images), with_label, labeled=labeled, labeled_names=labeled_names, source=str(root)
        )
    total = len(labeled_list) + len(unlabeled_list)
    cases: dict[str, TrainingCase] = {}
    labeled_set = set(labeled_list)
    for done, name in enumerate(labeled_list + unlabeled_list, start=1):
        wants_label = name in labeled_set
        if kind == "h5":
            image, label = read_h5_case(images[name], spacing=h5_spacing)
            if wants_label and label is None:
                raise InputError(f"{images[name]}: case {name} is to be labeled but the file has no 'label'")
        else:
            image = read_volume(images[name])
            label = read_label(labels[name], image) if wants_label else None
        cases[name] = _to_case(name, image, label if wants_label else None, target_spacing)
        if progress is not None:
            progress(done, total)
    return CaseSplit(
        [cases[n] for n in labeled_list], [cases[n] for n in unlabeled_list], source=f"{kind}:{root}"
    )
