"""The :class:`Study` facade: a study folder with its cases, labels, predictions, history and models.

A study is a folder in the Medical Segmentation Decathlon (MSD) layout plus the tool's own state
in ``.uamc/`` (:mod:`~napari_uamc.data.study.layout` names every folder and file). The files are
the truth: a case's status is derived from them (accepted = a label in ``labelsTr/``, predicted
= the three prediction files, otherwise new) and ``state.json`` is kept in step with them
(:mod:`~napari_uamc.data.study.state`), as is ``dataset.json``
(:mod:`~napari_uamc.data.study.dataset_json`). Every read-modify-write of ``state.json`` holds
an exclusive ``flock`` on ``.uamc/state.lock`` and every file is replaced atomically (temporary
file, fsync, rename), so the napari plugin and a CLI working on the same study never corrupt it.

:class:`Study` keeps the public methods and the folder's paths, cases and read-only state; the
jobs are in the modules beside it: :mod:`.opening` (checking and creating the folder),
:mod:`.labels` (accept, restore, history copies, drafts, ground truth), :mod:`.predictions`
(model outputs), :mod:`.records` (per-case records and the locked edit of ``state.json``),
:mod:`.images`, :mod:`.versions`, :mod:`.dataset_json`, :mod:`.state`.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc.data._study_files import InterProcessLock, os_cause
from napari_uamc.data.io import read_label as read_label_file
from napari_uamc.data.io import read_volume
from napari_uamc.data.study import labels as _labels
from napari_uamc.data.study import opening, records
from napari_uamc.data.study import predictions as _predictions
from napari_uamc.data.study.dataset_json import dataset_metadata, read_dataset, sync_dataset
from napari_uamc.data.study.history import HistoryEntry, list_history
from napari_uamc.data.study.images import add_images as add_staged_images
from napari_uamc.data.study.images import new_image_sources, scan_images
from napari_uamc.data.study.layout import IMAGES_DIR, StudyLayout, find_nifti
from napari_uamc.data.study.state import (
    CaseInfo,
    CaseStatus,
    StudyWarning,
    _new_case_entry,
    load_state,
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
from napari_uamc.errors import StudyError

__all__ = ["Study", "ModelVersionInfo"]

#: How many case names an "unknown case" message lists before eliding the rest.
CASES_LISTED_IN_ERRORS = 10


def _layout_path(name: str) -> property:
    """A read-only property: the study layout's path ``name`` (:class:`StudyLayout`)."""
    return property(lambda self: getattr(self.layout, name), doc=f"The study's ``{name}`` path.")


class Study:
    """A study folder (MSD layout) with its cases, labels, predictions, history and models.

    Use :meth:`open`, :meth:`create` or :meth:`open_or_create`, not the constructor (TypeError). A
    study whose folder cannot be written is opened read-only: reading works, writing raises
    :class:`StudyError`. Arrays in and out are in the image's canonical RAS+ ``[i, j, k]`` order.

    Raises:
        StudyError: any method given a ``case`` the study does not have; any method that writes,
            on a read-only study or when a write fails (the message names the file and the cause).
        InputError: a ``read_*`` method meets an unreadable file, or (GridMismatchError) one off its image's grid.
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
        """Open an existing study, add ``.uamc/`` if missing; reconcile state with the files.

        A folder that cannot be written opens read-only (with a :class:`StudyWarning`).

        Raises:
            StudyError: not a folder holding ``imagesTr/``, or damaged beyond repair (two images of one
                case, a newer ``state.json``, an unsupported ``dataset.json``); a failed write opens it read-only.
        """
        study = cls(opening.study_root(path), _private=True)
        opening.prepare_tool_dir(study)
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

        Raises:
            StudyError: ``path`` is a file or a non-empty folder (without ``exist_ok``), a duplicate
                case name, a folder that cannot be written, or as :meth:`open`.
            InputError: a missing or unreadable image, a name that cannot be a file name, bad ``labels``/``modality``.
        """
        return opening.create_study(
            cls, path, images, name=name, description=description, labels=labels,
            modality=modality, exist_ok=exist_ok,
        )

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        images: Iterable[str | os.PathLike[str] | Volume] = (),
        **create_options: Any,
    ) -> Study:
        """Open the study at ``path``; if it has no ``imagesTr/`` yet, create it from ``images``.

        Raises:
            StudyError, InputError: as :meth:`open` and :meth:`create`."""
        root = Path(path).expanduser()
        if (root / IMAGES_DIR).is_dir():
            return cls.open(root)
        return cls.create(root, images, **create_options)

    def add_images(self, images: Iterable[str | os.PathLike[str] | Volume]) -> list[str]:
        """Add images as new cases (all or none); returns their case names.

        Raises:
            StudyError: read-only study, a case name already taken, or a failed write (nothing added).
            InputError: as :meth:`create`.
        """
        self._require_writable()
        sources = new_image_sources(images, self._images)
        if not sources:
            return []
        add_staged_images(self.layout, sources, self._lock)
        self.refresh()
        return sorted(sources)

    # --------------------------------------------------------------------------- folders

    tool_dir = _layout_path("tool_dir")
    images_dir = _layout_path("images_dir")
    labels_dir = _layout_path("labels_dir")
    ground_truth_dir = _layout_path("ground_truth_dir")
    predictions_dir = _layout_path("predictions_dir")
    history_dir = _layout_path("history_dir")
    drafts_dir = _layout_path("drafts_dir")
    models_dir = _layout_path("models_dir")
    dataset_path = _layout_path("dataset_path")
    state_path = _layout_path("state_path")

    @property
    def read_only(self) -> bool:
        return self.read_only_reason is not None

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
        self._images = scan_images(self.layout)
        if self.read_only:
            return
        try:
            records.sync_with_files(self)
        except StudyError as exc:
            if exc.__cause__ is None or os_cause(exc.__cause__) is None:
                raise
            self._become_read_only(str(exc))

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
        """Status, uncertainty, times, scores and which files ``case`` has."""
        self._require_case(case)
        return records.case_info(self, case, self._load_state()["cases"].get(case, _new_case_entry()))

    def cases_info(self) -> list[CaseInfo]:
        """:meth:`case_info` of every case, sorted by name."""
        entries = self._load_state()["cases"]
        return [records.case_info(self, case, entries.get(case, {})) for case in self.cases()]

    def labeled_cases(self) -> list[str]:
        """Cases with an accepted label, sorted."""
        return [case for case in self.cases() if self.label_path(case) is not None]

    def unlabeled_cases(self) -> list[str]:
        """Cases without an accepted label, sorted."""
        return [case for case in self.cases() if self.label_path(case) is None]

    def ranked_for_labeling(self) -> list[str]:
        """Unlabeled cases, most uncertain first (cases without a score last, by name)."""
        return records.ranked_for_labeling(self)

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
        """Write a reference label to ``groundTruth/`` (phantoms, benchmarks); returns its path.

        ``label``: integer array (canonical order, the image's shape) or a :class:`Volume`.

        Raises:
            StudyError: read-only study, unknown case or a failed write.
            InputError: not an integer map >= 0 (values up to 65535); GridMismatchError: off the grid.
        """
        return _labels.save_ground_truth(self, case, label)

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

        Raises:
            StudyError: read-only study, unknown case, empty label (unless ``allow_empty``), a failed
                write (nothing changed) or, after the label was saved, a failed ``state.json`` update.
            InputError: not an integer map >= 0, or a value ``labels`` (``dataset.json``) does not name.
            GridMismatchError: ``label`` is not on the image's grid.
        """
        return _labels.accept(self, case, label, note=note, allow_empty=allow_empty)

    def history(self, case: str) -> list[HistoryEntry]:
        """Earlier accepted labels of ``case``, oldest first."""
        self._require_case(case)
        folder = self.history_dir / case
        if not folder.is_dir():
            return []
        return list_history(folder, self._load_state()["cases"].get(case, {}).get("history", {}))

    def restore(self, case: str, timestamp: str | HistoryEntry) -> Path:
        """Make an earlier label the accepted one again; the current label goes to history first.

        Raises:
            StudyError: read-only study, unknown case or history entry, or a failed write (as :meth:`accept`).
            InputError: the history file is unreadable or not on the image's grid.
        """
        return _labels.restore(self, case, timestamp)

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
        disagreement: np.ndarray | Volume | None = None,
    ) -> dict[str, Path]:
        """Write the model outputs of ``case`` (seg uint8; sdf and uncertainty float32, rounded
        to 1e-4 so they compress: :func:`~napari_uamc.data.io.rounded_map`); returns their paths.

        Arrays are in canonical order on the image's grid; ``uncertainty_score`` in nats. The
        heads' ``disagreement`` (optional) is kept too, so a reopened case can show it.

        Raises:
            StudyError: read-only study, unknown case or a failed write.
            InputError: ``seg`` not integers in 0..255, maps not finite numbers or (GridMismatchError)
                off the image's grid, a non-finite ``uncertainty_score``.
        """
        return _predictions.save_prediction(
            self, case, seg, sdf, uncertainty, uncertainty_score=uncertainty_score, model_version=model_version,
            disagreement=disagreement,
        )

    def read_prediction(self, case: str) -> dict[str, Volume] | None:
        """The ``seg``, ``sdf`` and ``uncertainty`` volumes of ``case`` (and ``disagreement`` if
        saved), or ``None``."""
        return _predictions.read_prediction(self, case)

    # ---------------------------------------------------------------------------- drafts

    def draft_path(self, case: str) -> Path:
        self._require_case(case)
        return self.layout.draft_file(case)

    def save_draft(self, case: str, label: np.ndarray | Volume) -> Path:
        """Keep unaccepted edits of ``case`` (overwrites the previous draft); returns its path.

        Raises:
            StudyError: read-only study, unknown case or failed write.
            InputError: not an integer map >= 0 (GridMismatchError: not on the image's grid).
        """
        return _labels.save_draft(self, case, label)

    def read_draft(self, case: str) -> Volume | None:
        return _labels.read_draft(self, case)

    def discard_draft(self, case: str) -> bool:
        """Delete the draft of ``case``; returns whether there was one."""
        return _labels.discard_draft(self, case)

    # ---------------------------------------------------------------------------- models

    def model_path(self, version: str) -> Path:
        """``models/<version>.pt`` (the engine writes it); :class:`InputError` unless ``v<NNN>``."""
        return self.layout.model_file(_check_model_version(version))

    def model_info_path(self, version: str) -> Path:
        """``models/<version>.json``: a :class:`ModelVersionInfo` record; :class:`InputError` as above."""
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
        """The model version used for the next Segment (``None``: none chosen yet); setting a
        version without a ``.pt`` file raises :class:`StudyError`."""
        return self._load_state().get("current_model")

    @current_model.setter
    def current_model(self, version: str | None) -> None:
        records.set_current_model(self, version)

    # ------------------------------------------------------------------------ per-case data

    def set_uncertainty(self, case: str, score: float | None) -> None:
        """Store the case's uncertainty score (nats; ``None`` clears it).

        Raises:
            StudyError: unknown case, read-only study or a failed write.
            InputError: not a finite number (negative numbers are not refused).
        """
        records.set_uncertainty(self, case, score)

    def record_score(self, case: str, key: str, value: Any) -> None:
        """Store ``value`` (a number, text, or a small dict/list of them) under ``scores[key]``.

        Raises:
            StudyError: unknown case, read-only study or a failed write.
            InputError: ``key`` is not non-empty text, or ``value`` is one JSON cannot hold (NaN too).
        """
        records.record_score(self, case, key, value)

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

    def _dataset_metadata(self) -> dict[str, Any]:
        """Name, description, labels and modality from ``dataset.json``."""
        return dataset_metadata(read_dataset(self.dataset_path), self.root.name)

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

    def _write_state(self, state: dict[str, Any]) -> None:
        write_state(self.state_path, state)

    def _editing_state(self) -> contextlib.AbstractContextManager[dict[str, Any]]:
        """:func:`~napari_uamc.data.study.records.editing_state` of this study."""
        return records.editing_state(self)

    def _reconciled(self, state: dict[str, Any], *, rebuilt: bool = False) -> dict[str, Any]:
        """``state`` in line with the files: cases from ``imagesTr/``, statuses from the labels."""
        return records.reconciled(self, state, rebuilt=rebuilt)
