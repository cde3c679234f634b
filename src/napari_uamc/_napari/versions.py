"""The models a person can segment and fine-tune with, and how each version has done (no Qt).

:class:`ModelCatalog` lists the packaged default and the open study's versions, knows which
one is picked, and writes the rows of the version list (parent, stopped early, training Dice,
honest Dice against labels accepted later).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_uamc._napari.tasks import DEFAULT_MODEL_LABEL, ModelChoice
from napari_uamc._words import counted, dice_text
from napari_uamc.data.study.versions import (
    DEFAULT_MODEL_NAME,
    read_version_record,
    record_decision,
    unreviewed_versions,
)

if TYPE_CHECKING:
    from napari_uamc.data.study.versions import ModelVersionInfo

#: Score key under which the honest accept Dice of a model version is stored per case.
ACCEPT_DICE_PREFIX = "accept_dice:"
DEFAULT_VERSION_KEY = DEFAULT_MODEL_NAME


class ModelCatalog:
    """The model choices for one study (or none) and the picked one."""

    def __init__(self) -> None:
        self.choices: list[ModelChoice] = [ModelChoice(DEFAULT_MODEL_LABEL, None, None)]
        self.index = 0

    def reload(self, study: Any) -> None:
        """Re-read the study's versions; the study's current model becomes the picked one."""
        self.choices = [ModelChoice(DEFAULT_MODEL_LABEL, None, None)]
        self.index = 0
        if study is None:
            return
        current = study.current_model
        unreviewed = set(unreviewed_versions(study))
        for version in study.model_versions():
            info = read_version_info(study, version)
            marks = ["not reviewed"] if version in unreviewed else []
            if info.stopped_early:
                marks.append("stopped early")
            if info.parent:
                marks.append(f"from {info.parent}")
            label = version + (f" ({', '.join(marks)})" if marks else "")
            self.choices.append(ModelChoice(label, study.model_path(version), version))
            if version == current:
                self.index = len(self.choices) - 1

    def select(self, index: int) -> None:
        self.index = min(max(0, index), len(self.choices) - 1)

    @property
    def selected(self) -> ModelChoice:
        return self.choices[self.index]


def version_rows(study: Any) -> list[tuple[str, str | None]]:
    """The version list, newest first, then the packaged default: (text, version or None)."""
    rows: list[tuple[str, str | None]] = []
    if study is None:
        return rows
    honest = honest_scores(study)
    current = study.current_model
    unreviewed = set(unreviewed_versions(study))
    for version in reversed(study.model_versions()):
        info = read_version_info(study, version)
        parts = [version + ("  (in use)" if version == current else "")]
        if version in unreviewed:
            parts.append("offered: not adopted or discarded yet")
        if info.parent:
            parts.append(f"from {info.parent}")
        if info.stopped_early:
            parts.append("stopped early")
        training = info.training_dice_mean
        if training is not None:
            parts.append(f"training Dice {dice_text(training)} (on its own training cases)")
        scores = honest.get(version, [])
        if scores:
            parts.append(_scored_later(scores))
        rows.append((", ".join(parts), version))
    text = DEFAULT_MODEL_LABEL + ("  (in use)" if current is None else "")
    default_scores = honest.get(DEFAULT_VERSION_KEY, [])
    if default_scores:
        text += ", " + _scored_later(default_scores)
    rows.append((text, None))
    return rows


def _scored_later(scores: list[float]) -> str:
    """A version's honest score in plain words: its segmentations against the labels you then
    accepted (how much correcting it needed), not a score on its training data."""
    return (f"its segmentations scored Dice {dice_text(np.mean(scores))} against the labels you then "
            f"accepted ({counted(len(scores), 'case')})")


def read_version_info(study: Any, version: str) -> ModelVersionInfo:
    """The record of a model version (an empty one if its file is missing or unreadable)."""
    return read_version_record(study.model_info_path(version))


def honest_scores(study: Any) -> dict[str, list[float]]:
    """Per model version, the Dice of its predictions against labels accepted afterwards."""
    scores: dict[str, list[float]] = {}
    for case in study.cases():
        for key, value in study.scores(case).items():
            if key.startswith(ACCEPT_DICE_PREFIX) and isinstance(value, (int, float)):
                scores.setdefault(key[len(ACCEPT_DICE_PREFIX):], []).append(float(value))
    return scores


def discard_version(study: Any, version: str) -> None:
    """Discard a version nobody adopted: its record is marked ``discarded`` (with the time, so the
    number is never reused and what was tried is still on file), then its ``.pt`` goes. The
    study's current model is refused: use another one first."""
    from napari_uamc.errors import StudyError

    if study.current_model == version:
        raise StudyError(f"{version} is the model in use: pick another one before discarding it")
    record_decision(study.model_info_path(version), version, "discarded")  # StudyError if it cannot
    try:
        study.model_path(version).unlink(missing_ok=True)
    except OSError as error:
        raise StudyError(f"could not discard {version}: {error}") from None
