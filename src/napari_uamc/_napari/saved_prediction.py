"""What a case's saved prediction gives the panel when the case is reopened (no Segment this session).

The study keeps the last Segment's maps (``.uamc/predictions/``). From them alone the panel lists
*Where to correct* (the regions of the saved uncertainty) and shows the heads' disagreement when
its map was saved (Segment saves it since the panel shows it; older predictions lack it, and it
cannot be recomputed from the saved label and SDF: it needs the network's probabilities).
Qt-free and napari-free: :func:`saved_outcome` runs in the worker that reads the case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_uamc.data.regions import UncertainRegion, uncertain_regions
from napari_uamc.data.study.versions import DEFAULT_MODEL_NAME

#: Why a reopened case shows no disagreement layer.
NO_SAVED_DISAGREEMENT = (
    "this case's saved prediction has no disagreement map (it was made before the panel saved one, "
    "or from the command line): Segment again to see where the two heads disagree"
)
#: Why an image never segmented shows none.
NOT_SEGMENTED = "segment the image first to see where the two heads disagree"


@dataclass
class SavedOutcome:
    """A reopened case's prediction, as the panel uses a Segment's outcome (regions, version, maps)."""

    regions: list[UncertainRegion]
    disagreement: np.ndarray | None  # canonical order, None: not saved
    model_version: str | None  # None: the packaged default (as a Segment's outcome says it)
    saved: bool = True
    #: the case's uncertainty score (nats) as the study records it, None if it has none
    uncertainty_score: float | None = None


def saved_outcome(prediction: dict[str, Any], spacing: Any, prediction_model: str | None,
                  uncertainty_score: float | None = None) -> SavedOutcome:
    """Regions of the saved uncertainty and the saved disagreement (if any) of one case."""
    seg = prediction["seg"].array
    # the model's class count is not saved; the label's classes give it (the packaged model has 2)
    n_classes = max(2, int(seg.max()) + 1) if seg.size else 2
    regions = uncertain_regions(prediction["uncertainty"].array, tuple(spacing), n_classes=n_classes)
    disagreement = prediction.get("disagreement")
    version = None if prediction_model == DEFAULT_MODEL_NAME else prediction_model
    return SavedOutcome(regions, None if disagreement is None else disagreement.array, version,
                        uncertainty_score=uncertainty_score)


def disagreement_of(outcome: Any) -> np.ndarray | None:
    """The disagreement map of a Segment's outcome or a saved one (None: none known)."""
    if outcome is None:
        return None
    if isinstance(outcome, SavedOutcome):
        return outcome.disagreement
    return outcome.result.disagreement


def disagreement_note(outcome: Any) -> str:
    """Why the disagreement layer cannot be shown for this outcome ("" when it can)."""
    if outcome is None:
        return NOT_SEGMENTED
    return "" if disagreement_of(outcome) is not None else NO_SAVED_DISAGREEMENT
