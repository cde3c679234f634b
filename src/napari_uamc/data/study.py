"""A study: a folder in the Medical Segmentation Decathlon (MSD) layout plus the tool's own state.

::

    study/
      dataset.json              MSD metadata; ``training`` lists the accepted cases
      imagesTr/<case>.nii.gz    the images, never modified
      labelsTr/<case>.nii.gz    accepted labels: a case is accepted exactly when its file is here
      groundTruth/<case>.nii.gz optional reference labels, never used for training
      imagesTs/                 optional test images
      .uamc/state.json          per case: status, uncertainty, timestamps, scores; current model
      .uamc/predictions/<case>_{seg,sdf,uncertainty}.nii.gz
      .uamc/history/<case>/<UTC time>.nii.gz   every earlier accepted label
      .uamc/drafts/<case>.nii.gz
      .uamc/models/v<NNN>.pt + v<NNN>.json

The files are the truth: a case's status is derived from them (accepted = a label in
``labelsTr/``, predicted = the three prediction files, otherwise new) and ``state.json`` is kept
in step with them. Every read-modify-write of ``state.json`` holds an exclusive ``flock`` on
``.uamc/state.lock`` and every file is replaced atomically (temporary file, fsync, rename), so
the napari plugin and a CLI working on the same study never corrupt it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc._atomic import fsync_folder, write_json_atomic
from napari_uamc.data._study_files import (
    InterProcessLock,
    atomic_copy,
    os_cause,
    os_failure,
    read_json,
    writing,
)
from napari_uamc.data.io import case_name, read_volume, rounded_map, write_volume, write_volumes
from napari_uamc.data.io import read_label as read_label_file
from napari_uamc.data.volume import Volume
from napari_uamc.errors import GridMismatchError, InputError, StudyError


__all__ = [
    "CaseInfo",
    "CaseStatus",
    "HistoryEntry",
    "Study",
    "StudyWarning",
    "DEFAULT_LABELS",
    "DEFAULT_MODALITY",
]

IMAGES_DIR = "imagesTr"
LABELS_DIR = "labelsTr"
GROUND_TRUTH_DIR = "groundTruth"
TEST_IMAGES_DIR = "imagesTs"
DATASET_FILE = "dataset.json"
TOOL_DIR = ".uamc"
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
PREDICTIONS_DIR = "predictions"
HISTORY_DIR = "history"
DRAFTS_DIR = "drafts"
MODELS_DIR = "models"
STAGING_PREFIX = "staging-"

NIFTI_SUFFIX = ".nii.gz"
NIFTI_SUFFIXES = (".nii.gz", ".nii")
STATE_VERSION = 1
PREDICTION_KINDS = ("seg", "sdf", "uncertainty")
DEFAULT_LABELS: dict[int, str] = {0: "background", 1: "left atrium"}
DEFAULT_MODALITY: dict[int, str] = {0: "MRI"}
#: History file names: UTC time of the move to history, sortable, microsecond resolution.
HISTORY_STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
HISTORY_STAMP_PATTERN = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
MODEL_VERSION_PATTERN = re.compile(r"^v(\d{3,})$")
MODEL_VERSION_DIGITS = 3
UNCHANGED = "the accepted label was not changed"
NOTHING_ADDED = "nothing was added"
#: How many case names an "unknown case" message lists before eliding the rest.
CASES_LISTED_IN_ERRORS = 10
_LABEL_DTYPES = (np.uint8, np.uint16)
_PREDICTION_DTYPES = {"seg": np.uint8, "sdf": np.float32, "uncertainty": np.float32}


class StudyWarning(UserWarning):
    """Something in a study folder was repaired or ignored (corrupt state, stray files)."""


class CaseStatus(StrEnum):
    """Where a case stands in the labelling loop."""

    NEW = "new"
    PREDICTED = "predicted"
    ACCEPTED = "accepted"


@dataclass(frozen=True)
class CaseInfo:
    """A summary of one case, cheap to compute for every case of a study."""

    name: str
    status: CaseStatus
    uncertainty: float | None
    accepted_at: datetime | None
    has_draft: bool
    has_prediction: bool
    has_ground_truth: bool
    prediction_model: str | None = None
    scores: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class HistoryEntry:
    """An earlier accepted label kept in ``.uamc/history/<case>/``.

    ``timestamp`` is the file's UTC stamp (when it was replaced), ``accepted_at`` and ``note``
    describe the label as it was when accepted (``None`` if the state no longer knows).
    """

    timestamp: str
    path: Path
    accepted_at: datetime | None = None
    note: str | None = None

    @property
    def time(self) -> datetime:
        return _parse_stamp(self.timestamp)


# --------------------------------------------------------------------------------- helpers


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_iso(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _stamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(HISTORY_STAMP_FORMAT)


def _parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, HISTORY_STAMP_FORMAT).replace(tzinfo=timezone.utc)


def _nifti_stem(path: Path) -> str | None:
    """The file name without its NIfTI suffix, or ``None`` if it is not a NIfTI file."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def _nifti_suffix(path: Path) -> str:
    return NIFTI_SUFFIX if path.name.endswith(NIFTI_SUFFIX) else ".nii"


def _find_nifti(folder: Path, stem: str) -> Path | None:
    for suffix in NIFTI_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _check_case_name(name: Any, origin: str) -> str:
    if (
        not isinstance(name, str)
        or not name.strip()
        or name != name.strip()
        or name.startswith(".")
        or any(sep in name for sep in ("/", "\\", "\0"))
    ):
        raise InputError(
            f"{origin}: {name!r} cannot be a case name (it becomes a file name: no slashes, "
            "no leading dot or spaces, not empty)"
        )
    return name


def _jsonable(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (numpy scalars unwrapped); rejects NaN/inf and objects."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not np.isfinite(value):
            raise InputError(f"{what}: {value} is not a finite number")
        return value
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item, what) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item, what) for item in value]
    raise InputError(
        f"{what}: cannot store a {type(value).__name__} (numbers, text, lists, dicts only)"
    )


def _index_names(
    mapping: Mapping[Any, str] | None, default: Mapping[int, str], what: str
) -> dict[str, str]:
    """Validate an MSD ``labels``/``modality`` map; keys become the strings "0", "1", ..."""
    items = dict(default if mapping is None else mapping)
    result: dict[int, str] = {}
    for key, name in items.items():
        try:
            index = int(key)
        except (TypeError, ValueError):
            raise InputError(f"{what}: key {key!r} is not an integer") from None
        if index < 0 or str(key).strip() not in (str(index),):
            raise InputError(f"{what}: key {key!r} must be a non-negative integer")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{what}: the name of {index} must be non-empty text, not {name!r}")
        result[index] = name
    if not result:
        raise InputError(f"{what}: needs at least one entry")
    return {str(index): result[index] for index in sorted(result)}


#: Keys that only an nnU-Net v2 ``dataset.json`` has (its labels map names to integers).
NNUNET_V2_KEYS = ("channel_names", "file_ending")
#: Image files a study reads (nnU-Net v2 ``file_ending``).
SUPPORTED_FILE_ENDINGS = (".nii.gz", ".nii")


def _is_nnunet_v2(raw: Mapping[str, Any]) -> bool:
    labels = raw.get("labels")
    named = isinstance(labels, Mapping) and any(not str(k).strip().isdigit() for k in labels)
    return any(key in raw for key in NNUNET_V2_KEYS) or named


def _nnunet_v2_labels(labels: Any, where: str) -> dict[str, str]:
    """nnU-Net v2 ``labels`` (name -> integer) as MSD index -> name; region labels refused."""
    if labels is None:
        return _index_names(None, DEFAULT_LABELS, f"{where} labels")
    if not isinstance(labels, Mapping):
        raise InputError(f"{where}: labels must map class names to integers, not {type(labels).__name__}")
    by_index: dict[int, str] = {}
    for name, value in labels.items():
        if isinstance(value, (list, tuple)):
            raise InputError(
                f"{where}: label {name!r} is a region {list(value)} (nnU-Net region-based training); "
                "napari-uamc supports one integer per class"
            )
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InputError(f"{where}: label {name!r} must be a non-negative integer, not {value!r}")
        if value in by_index:
            raise InputError(f"{where}: labels {by_index[value]!r} and {name!r} share the value {value}")
        by_index[value] = str(name)
    return _index_names(by_index, DEFAULT_LABELS, f"{where} labels")


def _nnunet_v2_channels(raw: Mapping[str, Any], where: str) -> dict[str, str]:
    """The single input channel of an nnU-Net v2 study; more channels or other files refused."""
    ending = raw.get("file_ending", ".nii.gz")
    if ending not in SUPPORTED_FILE_ENDINGS:
        raise InputError(f"{where}: file_ending {ending!r}; napari-uamc reads NIfTI studies "
                         f"({', '.join(SUPPORTED_FILE_ENDINGS)})")
    channels = raw.get("channel_names") or {"0": DEFAULT_MODALITY[0]}
    if not isinstance(channels, Mapping):
        raise InputError(f"{where}: channel_names must map indices to names")
    if len(channels) != 1:
        raise InputError(f"{where}: {len(channels)} input channels ({', '.join(map(str, channels.values()))}); "
                         "napari-uamc segments single-channel images")
    return _index_names(channels, DEFAULT_MODALITY, f"{where} channel_names")


def _integer_label_array(label: np.ndarray | Volume, image: Volume, what: str) -> np.ndarray:
    """Check that ``label`` is a non-negative integer map on ``image``'s canonical grid."""
    array = _array_on_grid(label, image, what)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise InputError(f"{what} contains NaN or infinite values; a label map holds integers")
        if not np.array_equal(array, np.round(array)):
            raise InputError(f"{what} contains non-integer values; a label map holds integers")
    elif array.dtype.kind not in "iu":
        raise InputError(f"{what} has dtype {array.dtype}; a label map holds integers")
    if array.size and array.min() < 0:
        raise InputError(f"{what} contains negative values (minimum {array.min()}); need >= 0")
    return array


def _label_dtype(max_value: int, what: str) -> type[np.unsignedinteger]:
    for dtype in _LABEL_DTYPES:
        if max_value <= np.iinfo(dtype).max:
            return dtype
    raise InputError(f"{what}: label value {max_value} is too large")


# ----------------------------------------------------------------------------------- study


class Study:
    """A study folder (MSD layout) with its cases, labels, predictions, history and models.

    Use :meth:`open`, :meth:`create` or :meth:`open_or_create`, not the constructor. A study
    whose folder cannot be written is opened read-only: reading works, writing raises
    :class:`StudyError`.
    """

    def __init__(self, root: Path, *, _private: bool = False) -> None:
        if not _private:
            raise TypeError("use Study.open, Study.create or Study.open_or_create")
        self.root = root
        self.read_only_reason: str | None = None
        self._images: dict[str, Path] = {}
        self._lock = InterProcessLock(self.tool_dir / LOCK_FILE)

    # ------------------------------------------------------------------ opening, creating

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Study:
        """Open an existing study, add ``.uamc/`` if missing; reconcile state with the files."""
        root = Path(path).expanduser()
        if not root.exists():
            raise StudyError(f"study folder {root} does not exist")
        if not root.is_dir():
            raise StudyError(f"{root} is not a folder; a study is a folder holding {IMAGES_DIR}/")
        if not (root / IMAGES_DIR).is_dir():
            raise StudyError(
                f"{root} is not a study: it has no {IMAGES_DIR}/ folder (Medical Segmentation "
                "Decathlon layout); make one from scans with `uamc import` or, in napari, with "
                "\"New study from layers\" (Python: Study.create)"
            )
        study = cls(root, _private=True)
        study._prepare_tool_dir()
        study.refresh()
        return study

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        images: Iterable[str | os.PathLike[str] | Volume] = (),
        *,
        name: str | None = None,
        description: str = "",
        labels: Mapping[Any, str] | None = None,
        modality: Mapping[Any, str] | None = None,
        exist_ok: bool = False,
    ) -> Study:
        """Create a study at ``path`` holding ``images`` (files or named :class:`Volume` objects).

        NIfTI files are copied byte for byte (a plain ``.nii`` is gzip-wrapped); NRRD, ``.h5`` and
        in-memory volumes are written as ``.nii.gz`` on their own grid. A folder that already has
        content is refused unless ``exist_ok``, in which case the images are added to it.
        """
        root = Path(path).expanduser()
        if root.exists() and not root.is_dir():
            raise StudyError(f"cannot create a study at {root}: it is a file, not a folder")
        if root.is_dir() and any(root.iterdir()) and not exist_ok:
            raise StudyError(
                f"cannot create a study at {root}: the folder is not empty; open it with "
                "Study.open, or pass exist_ok=True to add the images to it"
            )
        overrides: dict[str, Any] = {}
        if name is not None:
            overrides["name"] = name
        if description:
            overrides["description"] = description
        if labels is not None:
            overrides["labels"] = _index_names(labels, DEFAULT_LABELS, "labels")
        if modality is not None:
            overrides["modality"] = _index_names(modality, DEFAULT_MODALITY, "modality")
        images = list(images)
        was_empty = not root.exists() or not any(root.iterdir())
        try:
            (root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_failure("create the study folder", root, exc) from exc
        try:
            study = cls.open(root)
            study._require_writable()
            if overrides:
                study._update_dataset_metadata(overrides)
            study.add_images(images)
        except BaseException:
            if was_empty:
                _remove_empty_skeleton(root)
            raise
        return study

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        images: Iterable[str | os.PathLike[str] | Volume] = (),
        **create_options: Any,
    ) -> Study:
        """Open the study at ``path``; if it has no ``imagesTr/`` yet, create it from ``images``."""
        root = Path(path).expanduser()
        if (root / IMAGES_DIR).is_dir():
            return cls.open(root)
        return cls.create(root, images, **create_options)

    def add_images(self, images: Iterable[str | os.PathLike[str] | Volume]) -> list[str]:
        """Add images as new cases (all or none); returns their case names.

        Refuses a case name that the study or another of ``images`` already has.
        """
        self._require_writable()
        sources: dict[str, str | os.PathLike[str] | Volume] = {}
        for item in images:
            case = _source_case_name(item)
            if case in sources or case in self._images:
                where = "the study" if case in self._images else "the images given"
                raise StudyError(
                    f"duplicate case name {case!r} (from {_describe_source(item)}): "
                    f"{where} already has it"
                )
            sources[case] = item
        if not sources:
            return []
        images_dir = self.root / IMAGES_DIR
        try:
            staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.tool_dir))
        except OSError as exc:
            raise os_failure("stage images in", self.tool_dir, exc, NOTHING_ADDED) from exc
        moved: list[Path] = []

        def undo() -> None:
            for target in moved:
                with contextlib.suppress(OSError):
                    target.unlink()

        try:
            with writing("add images to", images_dir, NOTHING_ADDED, undo):
                staged = {case: _stage_image(case, item, staging) for case, item in sources.items()}
                with self._lock.hold():
                    for case, staged_path in staged.items():
                        target = images_dir / f"{case}{NIFTI_SUFFIX}"
                        if target.exists():  # never replace an image
                            raise StudyError(f"{target} appeared meanwhile; nothing was added")
                        os.replace(staged_path, target)
                        moved.append(target)
                fsync_folder(images_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.refresh()
        return sorted(sources)

    # --------------------------------------------------------------------------- folders

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
    def read_only(self) -> bool:
        return self.read_only_reason is not None

    def _prepare_tool_dir(self) -> None:
        folders = [
            self.labels_dir,
            self.tool_dir,
            self.predictions_dir,
            self.history_dir,
            self.drafts_dir,
            self.models_dir,
        ]
        try:
            for folder in folders:
                folder.mkdir(exist_ok=True)
        except OSError as exc:
            self._become_read_only(f"cannot create {folder}: {exc.strerror or exc}")
            return
        if not os.access(self.tool_dir, os.W_OK) or not os.access(self.root, os.W_OK):
            self._become_read_only(f"{self.root} is not writable")

    def _become_read_only(self, reason: str) -> None:
        self.read_only_reason = reason
        warnings.warn(f"study {self.root} opened read-only: {reason}", StudyWarning, stacklevel=3)

    def _require_writable(self) -> None:
        if self.read_only_reason is not None:
            raise StudyError(
                f"study {self.root} is read-only ({self.read_only_reason}); copy it to a writable "
                "folder to label or fine-tune"
            )

    # ------------------------------------------------------------------------------ cases

    def refresh(self) -> None:
        """Rescan ``imagesTr/``; bring ``state.json`` and ``dataset.json`` in line with it."""
        self._images = self._scan_images()
        if self.read_only:
            return
        try:
            with self._lock.hold():
                state = self._load_state(repair=True)
                reconciled = self._reconciled(state)
                if reconciled != state or not self.state_path.is_file():
                    self._write_state(reconciled)
                self._sync_dataset()
        except StudyError as exc:
            if exc.__cause__ is None or os_cause(exc.__cause__) is None:
                raise
            self._become_read_only(str(exc))

    def _scan_images(self) -> dict[str, Path]:
        images: dict[str, Path] = {}
        ignored: list[str] = []
        if not self.images_dir.is_dir():
            raise StudyError(f"study {self.root} has lost its {IMAGES_DIR}/ folder")
        for path in sorted(self.images_dir.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            if _nifti_stem(path) is None:
                ignored.append(path.name)
                continue
            case = case_name(path)
            if case in images:
                raise StudyError(
                    f"study {self.root}: {images[case].name} and {path.name} in {IMAGES_DIR}/ "
                    f"are both case {case!r}; keep one"
                )
            images[case] = path
        if ignored:
            warnings.warn(
                f"study {self.root}: ignoring non-NIfTI files in {IMAGES_DIR}/: "
                + ", ".join(ignored),
                StudyWarning,
                stacklevel=3,
            )
        return images

    def cases(self) -> list[str]:
        """All case names, sorted."""
        return sorted(self._images)

    def __contains__(self, case: object) -> bool:
        return case in self._images

    def __len__(self) -> int:
        return len(self._images)

    def __repr__(self) -> str:
        return f"Study({str(self.root)!r}, {len(self)} cases, {len(self.labeled_cases())} accepted)"

    def status(self, case: str) -> CaseStatus:
        """``accepted`` if in ``labelsTr/``, ``predicted`` if it has predictions, else ``new``."""
        self._require_case(case)
        if self.label_path(case) is not None:
            return CaseStatus.ACCEPTED
        if self.has_prediction(case):
            return CaseStatus.PREDICTED
        return CaseStatus.NEW

    def case_info(self, case: str) -> CaseInfo:
        self._require_case(case)
        return self._case_info(case, self._load_state()["cases"].get(case, _new_case_entry()))

    def cases_info(self) -> list[CaseInfo]:
        state = self._load_state()
        entries = state["cases"]
        return [self._case_info(case, entries.get(case, {})) for case in self.cases()]

    def _case_info(self, case: str, entry: dict[str, Any]) -> CaseInfo:
        status = self.status(case)
        accepted_at = None
        if status is CaseStatus.ACCEPTED:
            accepted_at = _parse_iso(entry.get("accepted_at")) or _file_time(self.label_path(case))
        return CaseInfo(
            name=case,
            status=status,
            uncertainty=entry.get("uncertainty"),
            accepted_at=accepted_at,
            has_draft=self.draft_path(case).is_file(),
            has_prediction=self.has_prediction(case),
            has_ground_truth=self.ground_truth_path(case) is not None,
            prediction_model=entry.get("prediction_model"),
            scores=dict(entry.get("scores") or {}),
        )

    def labeled_cases(self) -> list[str]:
        """Cases with an accepted label, sorted."""
        return [case for case in self.cases() if self.label_path(case) is not None]

    def unlabeled_cases(self) -> list[str]:
        """Cases without an accepted label, sorted."""
        return [case for case in self.cases() if self.label_path(case) is None]

    def ranked_for_labeling(self) -> list[str]:
        """Unlabeled cases, most uncertain first (cases without a score last, by name)."""
        cases = self._load_state()["cases"]

        def key(case: str) -> tuple[bool, float, str]:
            score = cases.get(case, {}).get("uncertainty")
            return (score is None, -(score or 0.0), case)

        return sorted(self.unlabeled_cases(), key=key)

    def suggest_next_case(self) -> str | None:
        """The unlabeled case to correct next (active learning: the most uncertain), or ``None``."""
        ranked = self.ranked_for_labeling()
        return ranked[0] if ranked else None

    def _require_case(self, case: str) -> None:
        if case not in self._images:
            known = self.cases()
            listed = ", ".join(known[:CASES_LISTED_IN_ERRORS]) or "none"
            if len(known) > CASES_LISTED_IN_ERRORS:
                listed += f", ... ({len(known)} in all)"
            raise StudyError(f"unknown case {case!r} in study {self.root} (its cases: {listed})")

    # ---------------------------------------------------------------------- images, labels

    def image_path(self, case: str) -> Path:
        self._require_case(case)
        return self._images[case]

    def read_image(self, case: str) -> Volume:
        """The case's image in canonical orientation (the file is never modified)."""
        return read_volume(self.image_path(case))

    def label_path(self, case: str) -> Path | None:
        """The accepted label file of ``case``, or ``None`` if the case is not accepted."""
        self._require_case(case)
        return _find_nifti(self.labels_dir, case)

    def read_label(self, case: str) -> Volume | None:
        """The accepted label on the image's grid, or ``None``."""
        path = self.label_path(case)
        return None if path is None else read_label_file(path, like=self.read_image(case))

    def ground_truth_path(self, case: str) -> Path | None:
        self._require_case(case)
        return _find_nifti(self.ground_truth_dir, case)

    def read_ground_truth(self, case: str) -> Volume | None:
        """The reference label from ``groundTruth/`` (never used for training), or ``None``."""
        path = self.ground_truth_path(case)
        return None if path is None else read_label_file(path, like=self.read_image(case))

    def save_ground_truth(self, case: str, label: np.ndarray | Volume) -> Path:
        """Write a reference label to ``groundTruth/`` (phantoms, benchmarks)."""
        self._require_writable()
        image = self.read_image(case)
        array = _integer_label_array(label, image, f"ground truth for case {case!r}")
        target = self.ground_truth_dir / f"{case}{NIFTI_SUFFIX}"
        dtype = _label_dtype(int(array.max(initial=0)), case)
        with writing("write the ground truth", target):
            self.ground_truth_dir.mkdir(exist_ok=True)
            write_volume(target, array, like=image, dtype=dtype)
        return target

    # ----------------------------------------------------------------------- accepting

    def accept(
        self,
        case: str,
        label: np.ndarray | Volume,
        *,
        note: str | None = None,
        allow_empty: bool = False,
    ) -> Path:
        """Save ``label`` (canonical order, on the image's grid) as the accepted label of ``case``.

        The previous accepted label is first copied to ``history/``; the new one is then written
        atomically on the image's exact grid and affine. Returns the label file's path.
        """
        self._require_writable()
        image = self.read_image(case)
        what = f"label for case {case!r}"
        array = _integer_label_array(label, image, what)
        max_value = self._check_label_values(array, what)
        if max_value == 0 and not allow_empty:
            raise StudyError(
                f"empty label for case {case!r} in study {self.root}: no voxel is foreground; "
                "paint the structure first (or pass allow_empty=True to accept it on purpose)"
            )
        target = self.labels_dir / f"{case}{NIFTI_SUFFIX}"
        with self._lock.hold():
            pushed = self._push_to_history(case)
            undo = partial(_unlink_quietly, pushed)
            with writing("write the label", target, UNCHANGED, undo):
                self.labels_dir.mkdir(exist_ok=True)
                write_volume(target, array, like=image, dtype=_label_dtype(max_value, what))
            self._label_replaced(case, target, pushed, note)
        return target

    def history(self, case: str) -> list[HistoryEntry]:
        """Earlier accepted labels of ``case``, oldest first."""
        self._require_case(case)
        folder = self.history_dir / case
        if not folder.is_dir():
            return []
        meta = self._load_state()["cases"].get(case, {}).get("history", {})
        entries = []
        for path in folder.iterdir():
            stamp = _nifti_stem(path)
            if stamp is None or not HISTORY_STAMP_PATTERN.match(stamp):
                continue
            info = meta.get(stamp) if isinstance(meta.get(stamp), dict) else {}
            accepted_at = _parse_iso(info.get("accepted_at"))
            entries.append(HistoryEntry(stamp, path, accepted_at, info.get("note")))
        return sorted(entries, key=lambda entry: entry.timestamp)

    def restore(self, case: str, timestamp: str | HistoryEntry) -> Path:
        """Make an earlier label the accepted one again; the current label goes to history first."""
        self._require_writable()
        stamp = timestamp.timestamp if isinstance(timestamp, HistoryEntry) else str(timestamp)
        entries = {entry.timestamp: entry for entry in self.history(case)}
        if stamp not in entries:
            known = ", ".join(entries) or "none"
            raise StudyError(
                f"case {case!r} of study {self.root} has no history entry {stamp!r} "
                f"(it has: {known})"
            )
        source = entries[stamp].path
        read_label_file(source, like=self.read_image(case))  # readable, on the image's grid
        target = self.labels_dir / f"{case}{_nifti_suffix(source)}"
        with self._lock.hold():
            pushed = self._push_to_history(case)
            undo = partial(_unlink_quietly, pushed)
            with writing("restore the label to", target, UNCHANGED, undo):
                self.labels_dir.mkdir(exist_ok=True)
                atomic_copy(source, target)
            self._label_replaced(case, target, pushed, f"restored from history {stamp}")
        return target

    def _check_label_values(self, array: np.ndarray, what: str) -> int:
        """Refuse classes that ``dataset.json``'s labels do not name; returns the largest value."""
        max_value = int(array.max(initial=0))
        known = set(self.labels) | {0}
        if max_value > max(known):
            unknown = [max_value]
        else:
            unnamed = (value for value in range(max_value + 1) if value not in known)
            unknown = [value for value in unnamed if np.any(array == value)]
        if unknown:
            names = ", ".join(f"{index} = {name}" for index, name in self.labels.items())
            raise InputError(
                f"{what} contains values {unknown} that the study's labels ({names}) do not name"
            )
        return max_value

    def _push_to_history(self, case: str) -> Path | None:
        """Copy the current accepted label (if any) to ``history/<case>/<UTC stamp>``."""
        current = self.label_path(case)
        if current is None:
            return None
        folder = self.history_dir / case
        target = folder / f"{self._new_history_stamp(case)}{_nifti_suffix(current)}"
        with writing("keep the previous label in", folder, UNCHANGED):
            folder.mkdir(parents=True, exist_ok=True)
            atomic_copy(current, target)
        return target

    def _new_history_stamp(self, case: str) -> str:
        """A stamp later than every existing one of ``case`` (robust to clock steps)."""
        moment = _utc_now()
        existing = self.history(case)
        if existing and _stamp(moment) <= existing[-1].timestamp:
            moment = existing[-1].time + timedelta(microseconds=1)
        return _stamp(moment)

    def _label_replaced(
        self, case: str, target: Path, pushed: Path | None, note: str | None
    ) -> None:
        """Bookkeeping after a new accepted label is in place (lock held)."""
        for suffix in NIFTI_SUFFIXES:
            stale = self.labels_dir / f"{case}{suffix}"
            if stale != target:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        now = _iso(_utc_now())
        try:
            with self._editing_state() as state:
                entry = state["cases"].setdefault(case, _new_case_entry())
                if pushed is not None:
                    stamp = _nifti_stem(pushed)
                    entry["history"][stamp] = {
                        "accepted_at": entry.get("accepted_at"),
                        "note": entry.get("note"),
                    }
                entry.update(
                    status=CaseStatus.ACCEPTED.value, accepted_at=now, updated=now, note=note
                )
            self._sync_dataset()
        except StudyError as exc:
            raise StudyError(
                f"the label was saved to {target}, but the study's records were not updated: {exc}"
            ) from exc
        with contextlib.suppress(OSError):
            self.draft_path(case).unlink(missing_ok=True)

    # ----------------------------------------------------------------------- predictions

    def prediction_paths(self, case: str) -> dict[str, Path]:
        """Where the ``seg``, ``sdf`` and ``uncertainty`` maps of ``case`` are (or would be)."""
        self._require_case(case)
        return {
            kind: self.predictions_dir / f"{case}_{kind}{NIFTI_SUFFIX}" for kind in PREDICTION_KINDS
        }

    def has_prediction(self, case: str) -> bool:
        return all(path.is_file() for path in self.prediction_paths(case).values())

    def save_prediction(
        self,
        case: str,
        seg: np.ndarray | Volume,
        sdf: np.ndarray | Volume,
        uncertainty: np.ndarray | Volume,
        *,
        uncertainty_score: float | None = None,
        model_version: str | None = None,
    ) -> dict[str, Path]:
        """Write the model outputs of ``case`` (seg uint8; sdf and uncertainty float32, rounded
        to 1e-4 so they compress: :func:`~napari_uamc.data.io.rounded_map`)."""
        self._require_writable()
        image = self.read_image(case)
        seg_array = _integer_label_array(seg, image, f"segmentation for case {case!r}")
        seg_max = np.iinfo(_PREDICTION_DTYPES["seg"]).max
        if seg_array.size and int(seg_array.max()) > seg_max:
            raise InputError(f"segmentation for case {case!r} has values above {seg_max}")
        arrays = {
            "seg": seg_array,
            "sdf": rounded_map(_float_map(sdf, image, f"signed distance map for case {case!r}")),
            "uncertainty": rounded_map(_float_map(uncertainty, image, f"uncertainty map for case {case!r}")),
        }
        score = _uncertainty_value(uncertainty_score, case)
        paths = self.prediction_paths(case)
        with writing("write the prediction of", self.predictions_dir):
            self.predictions_dir.mkdir(exist_ok=True)
            write_volumes((paths[kind], array, image, _PREDICTION_DTYPES[kind]) for kind, array in arrays.items())
        now = _iso(_utc_now())
        with self._editing_state() as state:
            entry = state["cases"].setdefault(case, _new_case_entry())
            entry.update(
                status=self.status(case).value,
                updated=now,
                predicted_at=now,
                prediction_model=model_version,
            )
            if score is not None:
                entry["uncertainty"] = score
        return paths

    def read_prediction(self, case: str) -> dict[str, Volume] | None:
        """The ``seg``, ``sdf`` and ``uncertainty`` volumes of ``case``, or ``None``."""
        if not self.has_prediction(case):
            return None
        image = self.read_image(case)
        paths = self.prediction_paths(case)
        result = {"seg": read_label_file(paths["seg"], like=image)}
        for kind in ("sdf", "uncertainty"):
            volume = read_volume(paths[kind])
            image.require_same_grid(volume)
            result[kind] = volume
        return result

    # ---------------------------------------------------------------------------- drafts

    def draft_path(self, case: str) -> Path:
        self._require_case(case)
        return self.drafts_dir / f"{case}{NIFTI_SUFFIX}"

    def save_draft(self, case: str, label: np.ndarray | Volume) -> Path:
        """Keep unaccepted edits of ``case`` (overwrites the previous draft)."""
        self._require_writable()
        image = self.read_image(case)
        what = f"draft for case {case!r}"
        array = _integer_label_array(label, image, what)
        target = self.draft_path(case)
        dtype = _label_dtype(int(array.max(initial=0)), what)
        with writing("save the draft", target):
            self.drafts_dir.mkdir(exist_ok=True)
            write_volume(target, array, like=image, dtype=dtype)
        return target

    def read_draft(self, case: str) -> Volume | None:
        path = self.draft_path(case)
        return read_label_file(path, like=self.read_image(case)) if path.is_file() else None

    def discard_draft(self, case: str) -> bool:
        """Delete the draft of ``case``; returns whether there was one."""
        self._require_writable()
        path = self.draft_path(case)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise os_failure("delete the draft", path, exc) from exc
        return True

    # ---------------------------------------------------------------------------- models

    def model_path(self, version: str) -> Path:
        """``models/<version>.pt`` (the engine writes it)."""
        return self.models_dir / f"{_check_model_version(version)}.pt"

    def model_info_path(self, version: str) -> Path:
        """``models/<version>.json``: parent, cases, settings, scores (the engine writes it)."""
        return self.models_dir / f"{_check_model_version(version)}.json"

    def model_versions(self) -> list[str]:
        """Versions with a ``.pt`` file, oldest first (``v001``, ``v002``, ...)."""
        return sorted(self._model_versions_on_disk({".pt"}), key=_model_number)

    def next_model_version(self) -> str:
        """The version after every one on disk (counting ``.json`` files without a ``.pt``)."""
        on_disk = self._model_versions_on_disk({".pt", ".json"})
        numbers = [_model_number(version) for version in on_disk]
        return f"v{max(numbers, default=0) + 1:0{MODEL_VERSION_DIGITS}d}"

    def reserve_model_version(self) -> str:
        """Claim the next version name for a new model, safely against concurrent writers.

        Creates ``v<NNN>.json`` exclusively (a placeholder the writer replaces with the real
        metadata); a name another process claimed first is skipped. A placeholder left by a
        crashed writer only uses up its number: versions are listed by their ``.pt`` files.
        """
        self._require_writable()
        with writing("reserve a model version in", self.models_dir):
            self.models_dir.mkdir(parents=True, exist_ok=True)
            while True:
                version = self.next_model_version()
                try:
                    with open(self.model_info_path(version), "x", encoding="utf-8") as handle:
                        handle.write('{"status": "being written"}\n')
                except FileExistsError:
                    continue
                return version

    def _model_versions_on_disk(self, suffixes: set[str]) -> set[str]:
        if not self.models_dir.is_dir():
            return set()
        return {
            path.stem for path in self.models_dir.iterdir()
            if path.suffix in suffixes and MODEL_VERSION_PATTERN.match(path.stem) and path.is_file()
        }

    @property
    def current_model(self) -> str | None:
        """The model version used for the next Segment (``None``: none chosen yet)."""
        return self._load_state().get("current_model")

    @current_model.setter
    def current_model(self, version: str | None) -> None:
        if version is not None and version not in self.model_versions():
            known = ", ".join(self.model_versions()) or "none"
            raise StudyError(f"study {self.root} has no model {version!r} (its models: {known})")
        with self._editing_state() as state:
            state["current_model"] = version

    # ------------------------------------------------------------------------ per-case data

    def set_uncertainty(self, case: str, score: float | None) -> None:
        """Store the case's uncertainty score (nats; ``None`` clears it)."""
        self._require_case(case)
        value = _uncertainty_value(score, case)
        with self._editing_state() as state:
            entry = state["cases"].setdefault(case, _new_case_entry())
            entry.update(uncertainty=value, updated=_iso(_utc_now()))

    def record_score(self, case: str, key: str, value: Any) -> None:
        """Store ``value`` (a number, text, or a small dict/list of them) under ``scores[key]``."""
        self._require_case(case)
        if not isinstance(key, str) or not key:
            raise InputError(f"score key must be non-empty text, not {key!r}")
        data = _jsonable(value, f"score {key!r} of case {case!r}")
        with self._editing_state() as state:
            entry = state["cases"].setdefault(case, _new_case_entry())
            entry["scores"][key] = data
            entry["updated"] = _iso(_utc_now())

    def scores(self, case: str) -> dict[str, Any]:
        self._require_case(case)
        return dict(self._load_state()["cases"].get(case, {}).get("scores", {}))

    # ------------------------------------------------------------------------ dataset.json

    @property
    def labels(self) -> dict[int, str]:
        """The label classes from ``dataset.json`` (index -> name)."""
        return {int(key): value for key, value in self._dataset_metadata()["labels"].items()}

    @property
    def modality(self) -> dict[int, str]:
        return {int(key): value for key, value in self._dataset_metadata()["modality"].items()}

    @property
    def name(self) -> str:
        return str(self._dataset_metadata()["name"])

    def _dataset_file(self) -> dict[str, Any] | None:
        """``dataset.json`` exactly as stored, or ``None`` if missing or not a JSON object."""
        if not self.dataset_path.is_file():
            return None
        try:
            data = read_json(self.dataset_path)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            message = f"{self.dataset_path} is unusable ({exc}); using defaults"
            warnings.warn(message, StudyWarning, stacklevel=4)
            return None
        return data

    def _read_dataset(self) -> dict[str, Any] | None:
        """``dataset.json`` with MSD ``labels``/``modality`` (index -> name), or ``None`` if it is
        missing or not JSON. An nnU-Net v2 file (labels name -> integer, ``channel_names``) is
        read as such; a file that parses but that napari-uamc cannot support raises
        :class:`StudyError` naming what (it is never renamed or rewritten)."""
        raw = self._dataset_file()
        if raw is None:
            return None
        data = dict(raw)
        where = str(self.dataset_path)
        try:
            if _is_nnunet_v2(raw):
                data["labels"] = _nnunet_v2_labels(raw.get("labels"), where)
                data["modality"] = _nnunet_v2_channels(raw, where)
            else:
                for key, default in (("labels", DEFAULT_LABELS), ("modality", DEFAULT_MODALITY)):
                    data[key] = _index_names(raw.get(key), default, f"{where} {key}")
        except InputError as exc:
            raise StudyError(f"{exc}; napari-uamc leaves the file as it is: fix it or use another study") from None
        return data

    def _dataset_metadata(self, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Name, description, labels and modality from ``data`` (default: ``dataset.json``)."""
        data = (self._read_dataset() if data is None else data) or {}
        return {
            "name": data.get("name", self.root.name),
            "description": data.get("description", ""),
            "labels": data.get("labels") or _index_names(None, DEFAULT_LABELS, "labels"),
            "modality": data.get("modality") or _index_names(None, DEFAULT_MODALITY, "modality"),
        }

    def _update_dataset_metadata(self, values: Mapping[str, Any]) -> None:
        with self._lock.hold():
            self._sync_dataset(values)

    def _sync_dataset(self, overrides: Mapping[str, Any] | None = None) -> None:
        """Rewrite ``dataset.json`` from the files, atomically, if it changes (lock held).

        Keys napari-uamc does not own are kept; an nnU-Net v2 file stays an nnU-Net v2 file
        (only ``numTraining``, and what ``overrides`` set, change)."""
        raw = self._dataset_file()
        existing = self._read_dataset()
        if existing is None and self.dataset_path.is_file():
            self._quarantine(self.dataset_path)  # not JSON at all: kept aside, never lost
        if raw is not None and _is_nnunet_v2(raw):
            self._sync_nnunet_v2_dataset(raw, existing or {}, overrides or {})
            return
        old = existing or {}
        meta = {**self._dataset_metadata(old), **(overrides or {})}
        training = []
        for case in self.labeled_cases():
            label = self.label_path(case)
            assert label is not None
            training.append(
                {
                    "image": f"./{IMAGES_DIR}/{self._images[case].name}",
                    "label": f"./{LABELS_DIR}/{label.name}",
                }
            )
        test_dir = self.root / TEST_IMAGES_DIR
        test_files = test_dir.iterdir() if test_dir.is_dir() else ()
        test = sorted(
            f"./{TEST_IMAGES_DIR}/{path.name}"
            for path in test_files
            if _nifti_stem(path) is not None and not path.name.startswith(".")
        )
        data = {
            "name": meta["name"],
            "description": meta["description"],
            "tensorImageSize": "3D",
            "modality": meta["modality"],
            "labels": meta["labels"],
            "numTraining": len(training),
            "numTest": len(test),
            "training": training,
            "test": test,
        }
        data.update({key: value for key, value in old.items() if key not in data})
        if data != existing:
            with writing("write", self.dataset_path):
                write_json_atomic(self.dataset_path, data)

    def _sync_nnunet_v2_dataset(self, raw: dict[str, Any], parsed: dict[str, Any],
                                overrides: Mapping[str, Any]) -> None:
        data = dict(raw)
        data["numTraining"] = len(self.labeled_cases())
        for key in ("name", "description"):
            if key in overrides:
                data[key] = overrides[key]
        if "labels" in overrides:
            data["labels"] = {name: int(index) for index, name in overrides["labels"].items()}
        if data != raw:
            with writing("write", self.dataset_path):
                write_json_atomic(self.dataset_path, data)

    # ---------------------------------------------------------------------------- state

    def _load_state(self, *, repair: bool = False) -> dict[str, Any]:
        """``state.json`` normalised; if missing or corrupt, a state rebuilt from the files.

        With ``repair`` (lock held) a corrupt file is kept as ``state.json.corrupt-<time>``.
        """
        path = self.state_path
        if not path.is_file():
            return self._reconciled(_empty_state())
        try:
            raw = read_json(path)
            state = _normalised_state(raw)
        except (OSError, ValueError) as exc:
            if repair:
                kept = self._quarantine(path)
                warnings.warn(
                    f"{path} was corrupt ({exc}); rebuilt it from the study's files"
                    + (f" (the bad file is kept as {kept.name})" if kept else ""),
                    StudyWarning,
                    stacklevel=3,
                )
            else:
                message = f"{path} is corrupt ({exc}); using the study's files"
                warnings.warn(message, StudyWarning, stacklevel=3)
            return self._reconciled(_empty_state(), rebuilt=True)
        if raw.get("version", STATE_VERSION) > STATE_VERSION:
            raise StudyError(
                f"{path} has version {raw['version']}, newer than this napari-uamc understands "
                f"({STATE_VERSION}); update napari-uamc"
            )
        return state

    def _quarantine(self, path: Path) -> Path | None:
        kept = path.with_name(f"{path.name}.corrupt-{_stamp(_utc_now())}")
        try:
            os.replace(path, kept)
        except OSError:
            return None
        return kept

    def _write_state(self, state: dict[str, Any]) -> None:
        with writing("write", self.state_path, "the state was not changed"):
            self.tool_dir.mkdir(exist_ok=True)
            write_json_atomic(self.state_path, state)

    @contextlib.contextmanager
    def _editing_state(self) -> Iterator[dict[str, Any]]:
        """Lock, read the latest ``state.json``, let the caller change it, write it back atomically.

        Do not nest: an inner edit would be overwritten by the outer one.
        """
        self._require_writable()
        with self._lock.hold():
            state = self._load_state(repair=True)
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before or not self.state_path.is_file():
                self._write_state(state)

    def _reconciled(self, state: dict[str, Any], *, rebuilt: bool = False) -> dict[str, Any]:
        """``state`` in line with the files: cases from ``imagesTr/``, statuses from the labels."""
        old_cases = state["cases"]
        dropped = sorted(set(old_cases) - set(self._images))
        if dropped:
            warnings.warn(
                f"study {self.root}: forgetting cases whose image is gone: {', '.join(dropped)}",
                StudyWarning,
                stacklevel=4,
            )
        cases = {}
        for case in self.cases():
            entry = _normalised_case_entry(old_cases.get(case))
            status = self.status(case)
            if status is CaseStatus.ACCEPTED:
                if entry["status"] != status or entry["accepted_at"] is None:
                    entry["accepted_at"] = _iso(_file_time(self.label_path(case)) or _utc_now())
            elif status is not CaseStatus.ACCEPTED:
                entry["accepted_at"] = None
            entry["status"] = status.value
            cases[case] = entry
        current = state.get("current_model")
        versions = self.model_versions()
        if rebuilt and current is None and versions:
            current = versions[-1]
            message = f"study {self.root}: using the latest model {current} (state rebuilt)"
            warnings.warn(message, StudyWarning, stacklevel=4)
        elif current is not None and current not in versions:
            message = f"study {self.root}: the current model {current} is gone; none is selected"
            warnings.warn(message, StudyWarning, stacklevel=4)
            current = None
        return {"version": STATE_VERSION, "current_model": current, "cases": cases}


# -------------------------------------------------------------------------- state records


def _empty_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "current_model": None, "cases": {}}


def _new_case_entry() -> dict[str, Any]:
    return {
        "status": CaseStatus.NEW.value,
        "uncertainty": None,
        "updated": None,
        "accepted_at": None,
        "note": None,
        "prediction_model": None,
        "scores": {},
        "history": {},
    }


def _normalised_case_entry(raw: Any) -> dict[str, Any]:
    """A case record with every field present and of the right type (bad fields reset)."""
    entry = _new_case_entry()
    if not isinstance(raw, dict):
        return entry
    checks = {
        "status": lambda v: v in {status.value for status in CaseStatus},
        "uncertainty": lambda v: v is None or type(v) in (int, float),
        "scores": lambda v: isinstance(v, dict),
        "history": lambda v: isinstance(v, dict),
    }
    for key, value in raw.items():
        if key in checks and not checks[key](value):
            continue
        entry[key] = value
    return entry


def _normalised_state(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("cases"), dict):
        raise ValueError("not a state object with a 'cases' mapping")
    version = raw.get("version", STATE_VERSION)
    if not isinstance(version, int):
        raise ValueError(f"version {version!r} is not an integer")
    current = raw.get("current_model")
    if current is not None and not isinstance(current, str):
        raise ValueError(f"current_model {current!r} is not text")
    cases = {str(case): _normalised_case_entry(entry) for case, entry in raw["cases"].items()}
    return {"version": version, "current_model": current, "cases": cases}


# ------------------------------------------------------------------------------- misc


def _source_case_name(item: Any) -> str:
    if isinstance(item, Volume):
        return _check_case_name(item.name, "volume")
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not (path.is_file() or path.is_dir()):  # a folder: one DICOM series
            raise InputError(f"image file {path} does not exist")
        return _check_case_name(case_name(path), str(path))
    raise InputError(
        f"cannot add {type(item).__name__} {item!r} to a study: give a file path or a named Volume"
    )


def _stage_image(case: str, item: str | os.PathLike[str] | Volume, staging: Path) -> Path:
    """Validate one image and write it as ``staging/<case>.nii.gz``."""
    target = staging / f"{case}{NIFTI_SUFFIX}"
    if isinstance(item, Volume):
        write_volume(target, item.array, like=item)
        return target
    source = Path(item)
    volume = read_volume(source)  # validates: readable, 3D, finite, positive spacing
    if source.name.endswith(NIFTI_SUFFIX):
        atomic_copy(source, target)
    elif source.name.endswith(".nii"):
        atomic_copy(source, target, compress=True)
    else:
        write_volume(target, volume.array, like=volume)
    return target


def _remove_empty_skeleton(root: Path) -> None:
    """Undo a failed :meth:`Study.create` in a folder that was empty: remove what it made."""
    if (root / IMAGES_DIR).is_dir() and any((root / IMAGES_DIR).iterdir()):
        return
    shutil.rmtree(root / TOOL_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):
        (root / DATASET_FILE).unlink(missing_ok=True)
    for folder in (root / LABELS_DIR, root / IMAGES_DIR, root):
        with contextlib.suppress(OSError):
            folder.rmdir()


def _uncertainty_value(score: float | None, case: str) -> float | None:
    if score is None:
        return None
    return _jsonable(float(score), f"uncertainty of case {case!r}")


def _unlink_quietly(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()


def _describe_source(item: Any) -> str:
    return f"volume {item.name!r}" if isinstance(item, Volume) else str(item)


def _array_on_grid(value: np.ndarray | Volume, image: Volume, what: str) -> np.ndarray:
    """The array of ``value``, refused (GridMismatchError) unless it lies on ``image``'s grid."""
    if isinstance(value, Volume):
        image.require_same_grid(value)
        array = value.array
    else:
        array = np.asarray(value)
    if array.shape != image.shape:
        raise GridMismatchError(
            f"{what} has shape {array.shape} but the image {image.name} has shape {image.shape} "
            "(canonical i, j, k order): they must be on the same voxel grid"
        )
    return array


def _float_map(value: np.ndarray | Volume, image: Volume, what: str) -> np.ndarray:
    array = _array_on_grid(value, image, what)
    if array.dtype.kind not in "fiub":
        raise InputError(f"{what} has dtype {array.dtype}; expected numbers")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{what} contains NaN or infinite values")
    return array


def _file_time(path: Path | None) -> datetime | None:
    if path is None:
        return None
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
    except OSError:
        return None


def _check_model_version(version: str) -> str:
    if not isinstance(version, str) or not MODEL_VERSION_PATTERN.match(version):
        raise InputError(f"model version {version!r} must look like v001")
    return version


def _model_number(version: str) -> int:
    match = MODEL_VERSION_PATTERN.match(version)
    assert match is not None
    return int(match.group(1))
