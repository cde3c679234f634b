"""Checking a folder before it is opened as a study, and creating a study folder.

:meth:`Study.open <napari_uamc.data.study.facade.Study.open>` and :meth:`Study.create` call
these; the study itself (``.uamc/``, the records) is then prepared by :class:`Study`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from napari_uamc.data._study_files import os_failure
from napari_uamc.data.study.dataset_json import DEFAULT_LABELS, DEFAULT_MODALITY, _index_names
from napari_uamc.data.study.images import _remove_empty_skeleton
from napari_uamc.data.study.layout import IMAGES_DIR
from napari_uamc.data.volume import Volume
from napari_uamc.errors import StudyError

#: The :class:`~napari_uamc.data.study.facade.Study` that calls in (not imported: the facade
#: imports this module, and the import graph has no circles).
_Study = Any


def study_root(path: str | os.PathLike[str]) -> Path:
    """``path`` (``~`` expanded) if it is a folder holding ``imagesTr/``.

    Raises:
        StudyError: it does not exist, is not a folder, or has no ``imagesTr/``.
    """
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
    return root


def create_study(
    cls: type[_Study],
    path: str | os.PathLike[str],
    images: Iterable[str | os.PathLike[str] | Volume],
    *,
    name: str | None,
    description: str,
    labels: Mapping[Any, str] | None,
    modality: Mapping[Any, str] | None,
    exist_ok: bool,
) -> _Study:
    """:meth:`Study.create`: the folder, its ``dataset.json`` metadata, then the images (all or
    none; a folder that was empty is emptied again if anything fails)."""
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


def prepare_tool_dir(study: _Study) -> None:
    """Create ``labelsTr/`` and ``.uamc/`` with its folders where missing; a folder that cannot
    be created or written makes ``study`` read-only (with a :class:`StudyWarning`)."""
    layout = study.layout
    folders = [
        layout.labels_dir,
        layout.tool_dir,
        layout.predictions_dir,
        layout.history_dir,
        layout.drafts_dir,
        layout.models_dir,
    ]
    try:
        for folder in folders:
            folder.mkdir(exist_ok=True)
    except OSError as exc:
        study._become_read_only(f"cannot create {folder}: {exc.strerror or exc}")
        return
    if not os.access(layout.tool_dir, os.W_OK) or not os.access(study.root, os.W_OK):
        study._become_read_only(f"{study.root} is not writable")
