"""Model versions of a study: ``.uamc/models/v<NNN>.pt`` and the record ``v<NNN>.json``.

Versions are numbered ``v001``, ``v002``, ... (:data:`~napari_uamc.data.study.layout.MODEL_VERSION_PATTERN`);
a version exists when its ``.pt`` file does. A new number is claimed by creating its ``.json``
exclusively (:func:`reserve_model_version`), so two writers never take the same one.
:class:`ModelVersionInfo` is what the fine-tune writes into the ``.json``; a person's decision
about a version (``adopted`` or ``discarded``, with the time) is added to it by
:func:`record_decision`. A fine-tune version with neither, not in use, is *unreviewed*
(:func:`unreviewed_versions`): the panel offers it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from napari_uamc._atomic import write_text_atomic
from napari_uamc.data._study_files import read_json, writing
from napari_uamc.data.study.layout import (
    MODEL_INFO_SUFFIX,
    MODEL_SUFFIX,
    MODEL_VERSION_PATTERN,
    StudyLayout,
    model_version_name,
)
from napari_uamc.errors import InputError

__all__ = ["DECISIONS", "DEFAULT_MODEL_NAME", "ModelVersionInfo", "RESERVED_PLACEHOLDER", "record_decision",
           "unreviewed_versions"]

#: A person's decisions about a version, each a key of its record holding when it was made.
DECISIONS = ("adopted", "discarded")

#: What a reserved version's ``.json`` holds until its writer replaces it.
RESERVED_PLACEHOLDER = '{"status": "being written"}\n'

#: How the packaged default model is named where a study version's name would stand (a fine-tune's
#: parent, the model of a saved prediction).
DEFAULT_MODEL_NAME = "default"


def _check_model_version(version: str) -> str:
    if not isinstance(version, str) or not MODEL_VERSION_PATTERN.match(version):
        raise InputError(f"model version {version!r} must look like v001")
    return version


def _model_number(version: str) -> int:
    match = MODEL_VERSION_PATTERN.match(version)
    assert match is not None
    return int(match.group(1))


def versions_on_disk(models_dir: Path, suffixes: set[str]) -> set[str]:
    """Version names of the files in ``models_dir`` with one of ``suffixes``."""
    if not models_dir.is_dir():
        return set()
    return {
        path.stem for path in models_dir.iterdir()
        if path.suffix in suffixes and MODEL_VERSION_PATTERN.match(path.stem) and path.is_file()
    }


def model_versions(models_dir: Path) -> list[str]:
    """Versions with a ``.pt`` file, oldest first (``v001``, ``v002``, ...)."""
    return sorted(versions_on_disk(models_dir, {MODEL_SUFFIX}), key=_model_number)


def next_model_version(models_dir: Path) -> str:
    """The version after every one on disk (counting ``.json`` files without a ``.pt``)."""
    on_disk = versions_on_disk(models_dir, {MODEL_SUFFIX, MODEL_INFO_SUFFIX})
    numbers = [_model_number(version) for version in on_disk]
    return model_version_name(max(numbers, default=0) + 1)


def reserve_model_version(layout: StudyLayout) -> str:
    """Claim the next version name by creating its ``.json`` exclusively (see the module)."""
    models_dir = layout.models_dir
    with writing("reserve a model version in", models_dir):
        models_dir.mkdir(parents=True, exist_ok=True)
        while True:
            version = next_model_version(models_dir)
            try:
                with open(layout.model_info_file(version), "x", encoding="utf-8") as handle:
                    handle.write(RESERVED_PLACEHOLDER)
            except FileExistsError:
                continue
            return version


# ------------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class ModelVersionInfo:
    """The record of a model version (``v<NNN>.json``), as
    :func:`~napari_uamc.engine.finetune.finetune_study` writes it.

    Every field may be missing from an older file (or a reservation placeholder): :meth:`from_json`
    fills in the defaults here. The nested records (``cases``, ``budget``, ``settings``,
    ``starting_agreement``, ``learning_rate``, ``spacing``, ``training_dice``) stay plain JSON dicts;
    ``anchors`` names the unaccepted cases a warm start trained on with the starting model's labels.
    """

    version: str | None = None
    parent: str | None = None
    parent_path: str | None = None
    created: str | None = None
    kind: str | None = None
    cases: dict[str, Any] = field(default_factory=dict)
    iterations: int | None = None
    stopped_early: bool = False
    budget: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    training_seconds: float | None = None
    device: str | None = None
    precision: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    result: str | None = None
    bn_recalibration_patches: int | None = None
    starting_agreement: dict[str, Any] = field(default_factory=dict)
    learning_rate: dict[str, Any] = field(default_factory=dict)
    anchors: list[str] = field(default_factory=list)
    #: replay against forgetting: ``{"source": folder or None, "cases": [...], "why": ...}``
    replay: dict[str, Any] = field(default_factory=dict)
    spacing: dict[str, Any] = field(default_factory=dict)
    training_dice: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: when a person (or ``uamc finetune``'s default) made it the study's model, and when it was discarded
    adopted: str | None = None
    discarded: str | None = None

    @property
    def reviewed(self) -> bool:
        """Whether a decision about the version is on record (adopted or discarded)."""
        return bool(self.adopted or self.discarded)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (every field, under its own name)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelVersionInfo:
        """The record of a parsed ``v<NNN>.json``; missing keys take their defaults, unknown
        keys are ignored. Raises ``ValueError`` if ``data`` is not a JSON object."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a model version record is a JSON object, not {type(data).__name__}")
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def training_dice_mean(self) -> float | None:
        """The mean training Dice, if the record has a number for it."""
        mean = (self.training_dice or {}).get("mean") if isinstance(self.training_dice, Mapping) else None
        return mean if isinstance(mean, (int, float)) else None


# ------------------------------------------------------------------------------- decisions


def read_version_record(info_file: Path) -> ModelVersionInfo:
    """The record in ``info_file`` (an empty one if it is missing or unreadable)."""
    try:
        return ModelVersionInfo.from_json(read_json(info_file))
    except (OSError, ValueError, TypeError):
        return ModelVersionInfo()


def record_decision(info_file: Path, version: str, decision: str) -> None:
    """Add ``decision`` (``adopted`` or ``discarded``) and its UTC time to ``info_file``, atomically;
    the first time of a decision is kept. Every other key of the record is kept as it was."""
    from datetime import datetime, timezone

    if decision not in DECISIONS:
        raise InputError(f"a decision is one of {DECISIONS}, not {decision!r}")
    try:
        record = read_json(info_file)
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        record = {"version": version}
    if record.get(decision):
        return
    record[decision] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with writing(f"record that {version} was {decision} in", info_file):
        write_text_atomic(info_file, json.dumps(record, indent=1, sort_keys=True), parents=True)


def unreviewed_versions(study: Any) -> list[str]:
    """Fine-tune versions (with a ``.pt``) that nobody adopted or discarded and that are not in
    use, newest first: written while no panel watched (or offered and left undecided)."""
    current = study.current_model
    return [
        version for version in reversed(study.model_versions())
        if version != current and _is_unreviewed(read_version_record(study.model_info_path(version)))
    ]


def _is_unreviewed(info: ModelVersionInfo) -> bool:
    return info.kind == "finetune" and not info.reviewed


def remove_unfinished_versions(study: Any, since: float) -> list[str]:
    """After a fine-tune process was killed: remove what it left half-written in the study's
    models folder, i.e. versions reserved (``vNNN.json`` still the reservation placeholder) since
    ``since`` (a ``time.time()``), with any ``.pt`` of theirs, and temporary files of atomic writes
    made since then. ``study``: a ``Study`` or its folder. Returns the names removed."""
    from napari_uamc._atomic import TEMP_MARK
    from napari_uamc.data.study import Study

    if not isinstance(study, Study):
        study = Study.open(study)
    folder = study.models_dir
    removed: list[str] = []
    if not folder.is_dir():
        return removed
    for path in sorted(folder.iterdir()):
        try:
            recent = path.stat().st_mtime >= since - 1.0
            if not recent or not path.is_file():
                continue
            if path.name.startswith(".") and TEMP_MARK in path.name:
                path.unlink()
                removed.append(path.name)
            elif path.suffix == ".json" and path.read_text() == RESERVED_PLACEHOLDER:
                model = path.with_suffix(".pt")
                if model.exists():
                    model.unlink()
                    removed.append(model.name)
                path.unlink()
                removed.append(path.name)
        except OSError:
            continue
    return removed
