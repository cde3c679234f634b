"""The work the panel runs in background threads: plain functions, no Qt, no napari.

Each takes a progress callback and a stop request, so the same function runs from a napari
worker, from a test, or from a script.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc.data.regions import UncertainRegion, uncertain_regions, uncertainty_score
from napari_uamc.data.volume import Volume

#: Label shown for the packaged model in model pickers.
DEFAULT_MODEL_LABEL = "default (synthetic phantoms only)"


@dataclass
class ModelChoice:
    """A model the person can pick: the packaged default or a version of the open study."""

    label: str
    path: Path | None  # None: the packaged default
    version: str | None = None  # study version name (v001...), None for the default

    def resolve(self) -> Path:
        if self.path is not None:
            return self.path
        from napari_uamc.engine.checkpoint import default_model_path

        return default_model_path()


@dataclass
class SegmentOutcome:
    """What one Segment click produced."""

    result: Any  # engine.inference.SegmentationResult
    regions: list[UncertainRegion]
    volume_ml: float
    uncertainty_score: float
    model_label: str
    model_version: str | None
    class_names: list[str]
    seconds: float
    saved_to_study: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


_MODEL_CACHE: dict[tuple[str, float, str], tuple[Any, Any]] = {}


def load_model_cached(path: Path, device: str) -> tuple[Any, Any]:
    """Load a checkpoint once per (file, modification time, device)."""
    from napari_uamc.engine.checkpoint import load_checkpoint

    key = (str(path), path.stat().st_mtime, device)
    if key not in _MODEL_CACHE:
        _MODEL_CACHE.clear()  # keep at most one model in memory
        _MODEL_CACHE[key] = load_checkpoint(path, device=_torch_device(device))
    return _MODEL_CACHE[key]


def _torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def segment_image(
    volume: Volume,
    model: ModelChoice,
    *,
    mc_samples: int = 8,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    study: Any = None,
    case: str | None = None,
) -> SegmentOutcome:
    """Run inference on ``volume`` and rank its uncertain regions.

    With ``study`` and ``case`` the three maps are also saved as the case's prediction and its
    uncertainty score recorded (for "next case").
    """
    import time

    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    started = time.perf_counter()
    path = model.resolve()
    network, meta = load_model_cached(path, device)
    config = InferenceConfig(mc_samples=mc_samples, device=device)
    result = segment_volume(network, meta, volume, config, progress=progress, should_stop=should_stop)
    regions = uncertain_regions(result.uncertainty, volume.spacing, n_classes=meta.n_classes)
    score = uncertainty_score(result.uncertainty)
    saved = False
    if study is not None and case is not None:
        sdf = result.sdf if result.sdf.ndim == 3 else result.sdf[0]
        study.save_prediction(
            case, result.label, sdf, result.uncertainty,
            uncertainty_score=score, model_version=model.version,
        )
        saved = True
    return SegmentOutcome(
        result=result,
        regions=regions,
        volume_ml=float(np.count_nonzero(result.label)) * volume.voxel_volume_ml,
        uncertainty_score=score,
        model_label=model.label,
        model_version=model.version,
        class_names=list(meta.class_names),
        seconds=time.perf_counter() - started,
        saved_to_study=saved,
    )


def label_changes(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """What a person changed: 1 where foreground was added, 2 where it was removed, 3 relabelled."""
    before = np.asarray(before)
    after = np.asarray(after)
    changes = np.zeros(after.shape, dtype=np.uint8)
    changes[(before == 0) & (after != 0)] = 1
    changes[(before != 0) & (after == 0)] = 2
    changes[(before != 0) & (after != 0) & (before != after)] = 3
    return changes


def refresh_ranking(
    study: Any,
    model: ModelChoice,
    *,
    mc_samples: int = 8,
    device: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[str]:
    """Segment every unaccepted case with ``model`` so the uncertainty ranking is current.

    Saves each prediction and uncertainty score in the study; returns the cases done (all of
    them unless stopped).
    """
    cases = study.unlabeled_cases()
    done: list[str] = []
    for index, case in enumerate(cases):
        if should_stop is not None and should_stop():
            break
        if progress is not None:
            progress(index, len(cases))
        segment_image(study.read_image(case), model, mc_samples=mc_samples, device=device,
                      study=study, case=case, should_stop=should_stop)
        done.append(case)
    if progress is not None:
        progress(len(done), len(cases))
    return done
