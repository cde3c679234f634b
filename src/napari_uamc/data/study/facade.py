"""The :class:`Study` facade: a study folder with its cases, labels, predictions, history and models.

A study is a folder in the Medical Segmentation Decathlon (MSD) layout plus the tool's own state
in ``.uamc/`` (:mod:`~napari_uamc.data.study.layout` names every folder and file). The files are
the truth: a case's status is derived from them (accepted = a label in ``labelsTr/``, predicted
= the three prediction files, otherwise new) and ``state.json`` is kept in step with them
(:mod:`~napari_uamc.data.study.state`), as is ``dataset.json``
(:mod:`~napari_uamc.data.study.dataset_json`). Every read-modify-write of ``state.json`` holds
an exclusive ``flock`` on ``.uamc/state.lock`` and every file is replaced atomically (temporary
file, fsync, rename), so the napari plugin and a CLI working on the same study never corrupt it.

The label, draft and image writes stay in this module (``write_volume``, ``atomic_copy``); the
record keeping is delegated to the modules beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc.data._study_files import (
    InterProcessLock,
    atomic_copy,
    os_cause,
    os_failure,
    writing,
)
from napari_uamc.data.io import read_volume, rounded_map, write_volume, write_volumes
from napari_uamc.data.io import read_label as read_label_file
from napari_uamc.data.study.checks import (
    _PREDICTION_DTYPES,
    _float_map,
    _integer_label_array,
    _jsonable,
    _label_dtype,
    _uncertainty_value,
)
from napari_uamc.data.study.dataset_json import (
    DEFAULT_LABELS,
    DEFAULT_MODALITY,
    _index_names,
    dataset_metadata,
    read_dataset,
    sync_dataset,
)
from napari_uamc.data.study.history import (
    HistoryEntry,
    _file_time,
    _iso,
    _parse_iso,
    _utc_now,
    list_history,
    new_history_stamp,
)
from napari_uamc.data.study.images import _remove_empty_skeleton, new_image_sources, scan_images
from napari_uamc.data.study.images import add_images as add_staged_images
from napari_uamc.data.study.layout import (
    IMAGES_DIR,
    NIFTI_SUFFIXES,
    StudyLayout,
    find_nifti,
    nifti_stem,
    nifti_suffix,
)
from napari_uamc.data.study.state import (
    CaseInfo,
    CaseStatus,
    StudyWarning,
    _new_case_entry,
    load_state,
    quarantine,
    reconciled_state,
    write_state,
)
from napari_uamc.data.study.versions import (
    ModelVersionInfo,
    _check_model_version,
    model_versions,
    next_model_version,
    reserve_model_version,
)
from napari_uamc.data.volume import Volume
from napari_uamc.errors import InputError, StudyError

__all__ = ["Study", "ModelVersionInfo"]

UNCHANGED = "the accepted label was not changed"
#: How many case names an "unknown case" message lists before eliding the rest.
CASES_LISTED_IN_ERRORS = 10


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
        self.layout = StudyLayout(root)
        self.read_only_reason: str | None = None
        self._images: dict[str, Path] = {}
        self._lock = InterProcessLock(self.layout.lock_path)

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
        sources = new_image_sources(images, self._images)
        if not sources:
            return []
        add_staged_images(self.layout, sources, self._lock)
        self.refresh()
        return sorted(sources)

    # --------------------------------------------------------------------------- folders

    @property
    def tool_dir(self) -> Path:
        return self.layout.tool_dir

    @property
    def images_dir(self) -> Path:
        return self.layout.images_dir

    @property
    def labels_dir(self) -> Path:
        return self.layout.labels_dir

    @property
    def ground_truth_dir(self) -> Path:
        return self.layout.ground_truth_dir

    @property
    def predictions_dir(self) -> Path:
        return self.layout.predictions_dir

    @property
    def history_dir(self) -> Path:
        return self.layout.history_dir

    @property
    def drafts_dir(self) -> Path:
        return self.layout.drafts_dir

    @property
    def models_dir(self) -> Path:
        return self.layout.models_dir

    @property
    def dataset_path(self) -> Path:
        return self.layout.dataset_path

    @property
    def state_path(self) -> Path:
        return self.layout.state_path

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
        return scan_images(self.layout)

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
        return find_nifti(self.labels_dir, case)

    def read_label(self, case: str) -> Volume | None:
        """The accepted label on the image's grid, or ``None``."""
        path = self.label_path(case)
        return None if path is None else read_label_file(path, like=self.read_image(case))

    def ground_truth_path(self, case: str) -> Path | None:
        self._require_case(case)
        return find_nifti(self.ground_truth_dir, case)

    def read_ground_truth(self, case: str) -> Volume | None:
        """The reference label from ``groundTruth/`` (never used for training), or ``None``."""
        path = self.ground_truth_path(case)
        return None if path is None else read_label_file(path, like=self.read_image(case))

    def save_ground_truth(self, case: str, label: np.ndarray | Volume) -> Path:
        """Write a reference label to ``groundTruth/`` (phantoms, benchmarks)."""
        self._require_writable()
        image = self.read_image(case)
        array = _integer_label_array(label, image, f"ground truth for case {case!r}")
        target = self.layout.ground_truth_file(case)
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
        target = self.layout.label_file(case)
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
        return list_history(folder, self._load_state()["cases"].get(case, {}).get("history", {}))

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
        target = self.labels_dir / f"{case}{nifti_suffix(source)}"
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
        target = folder / f"{new_history_stamp(self.history(case))}{nifti_suffix(current)}"
        with writing("keep the previous label in", folder, UNCHANGED):
            folder.mkdir(parents=True, exist_ok=True)
            atomic_copy(current, target)
        return target

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
                    stamp = nifti_stem(pushed)
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
        return self.layout.prediction_files(case)

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
        return self.layout.draft_file(case)

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
        return self.layout.model_file(_check_model_version(version))

    def model_info_path(self, version: str) -> Path:
        """``models/<version>.json``: a :class:`ModelVersionInfo` record (the engine writes it)."""
        return self.layout.model_info_file(_check_model_version(version))

    def model_versions(self) -> list[str]:
        """Versions with a ``.pt`` file, oldest first (``v001``, ``v002``, ...)."""
        return model_versions(self.models_dir)

    def next_model_version(self) -> str:
        """The version after every one on disk (counting ``.json`` files without a ``.pt``)."""
        return next_model_version(self.models_dir)

    def reserve_model_version(self) -> str:
        """Claim the next version name for a new model, safely against concurrent writers.

        Creates ``v<NNN>.json`` exclusively (a placeholder the writer replaces with the real
        metadata); a name another process claimed first is skipped. A placeholder left by a
        crashed writer only uses up its number: versions are listed by their ``.pt`` files.
        """
        self._require_writable()
        return reserve_model_version(self.layout)

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

    def _read_dataset(self) -> dict[str, Any] | None:
        """``dataset.json`` parsed (:func:`~napari_uamc.data.study.dataset_json.read_dataset`)."""
        return read_dataset(self.dataset_path)

    def _dataset_metadata(self, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Name, description, labels and modality from ``data`` (default: ``dataset.json``)."""
        return dataset_metadata(self._read_dataset() if data is None else data, self.root.name)

    def _update_dataset_metadata(self, values: Mapping[str, Any]) -> None:
        with self._lock.hold():
            self._sync_dataset(values)

    def _sync_dataset(self, overrides: Mapping[str, Any] | None = None) -> None:
        """Rewrite ``dataset.json`` from the files, atomically, if it changes (lock held)."""
        labels = {case: self.label_path(case) for case in self.labeled_cases()}
        sync_dataset(self.layout, self._images, labels, overrides)  # type: ignore[arg-type]

    # ---------------------------------------------------------------------------- state

    def _load_state(self, *, repair: bool = False) -> dict[str, Any]:
        """``state.json`` normalised; if missing or corrupt, a state rebuilt from the files.

        With ``repair`` (lock held) a corrupt file is kept as ``state.json.corrupt-<time>``.
        """
        return load_state(self.state_path, self._reconciled, repair=repair)

    def _quarantine(self, path: Path) -> Path | None:
        return quarantine(path)

    def _write_state(self, state: dict[str, Any]) -> None:
        write_state(self.state_path, state)

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
        return reconciled_state(
            state,
            root=self.root,
            statuses={case: self.status(case) for case in self.cases()},
            label_path=self.label_path,
            versions=self.model_versions(),
            rebuilt=rebuilt,
        )


# ------------------------------------------------------------------------------- helpers


def _unlink_quietly(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
