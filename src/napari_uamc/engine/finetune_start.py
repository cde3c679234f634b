"""How a fine-tune reads its start: the starting model against the accepted labels.

Before training, :func:`~napari_uamc.engine.finetune.finetune_study` compares the starting
model's predictions of the accepted cases with the person's labels (:func:`starting_agreement`).
A model that agrees at Dice < :data:`COLD_START_DICE` is new to the study's images (a cold start):
it relearns at the spacing where its patch holds the structures whole (:func:`structure_spacing`)
and at its training learning rate (:func:`choose_learning_rate`), supervised. A warm start
fine-tunes gently and, when the study has other cases, semi-supervised
(:data:`WARM_SEMI_SUPERVISED`). Measured on real LA scans: docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from napari_uamc._words import dice_text
from napari_uamc.data.io import read_label
from napari_uamc.data.metrics import dice
from napari_uamc.data.study import Study
from napari_uamc.data.study.versions import DEFAULT_MODEL_NAME
from napari_uamc.engine.checkpoint import ModelMeta
from napari_uamc.engine.config import ALL_TERMS, TrainConfig
from napari_uamc.engine.dataset import TrainingCase
from napari_uamc.engine.preprocess import resample_label
from napari_uamc.engine.progress_messages import METHOD_PREFIXES

#: A warm start (the starting model agrees with the accepted labels at Dice >= COLD_START_DICE) with
#: other cases in the study also learns from them, semi-supervised: UG-MCL's consistency terms
#: (lambda 1) against whole-case teacher targets that the target gate trusts (2 accepted + 1
#: other patch a step, 1.5-1.7x the price of a supervised step on 2 CPU cores). Measured on real
#: LA scans in the same CPU time, paired by study: better than the supervised fine-tune in every
#: warm study (a model trained on 16 scans, 3 studies; the packaged model on its held-out scans, 3
#: studies), and than 1 + 1 patches a step (1.0x, 3 of 3), and worse from a cold start, whose
#: teacher's plausible-looking targets miss the atrium ("Target gate" and "A step within 1.5x" in
#: docs/benchmarks.md). Not applied when ``overrides`` name one of :data:`METHOD_CHOICES`.
WARM_SEMI_SUPERVISED: dict[str, Any] = {
    "terms": ALL_TERMS,
    "teacher_refresh": 25,
    "batch_size": 3,
    "labeled_batch_size": 2,
    "consistency": 1.0,
    "target_gate": True,
}
#: The fine-tune's method (and the shape of its step) is the person's when their overrides name
#: one of these: :data:`WARM_SEMI_SUPERVISED` is then not applied.
METHOD_CHOICES = frozenset({"terms", "copy_paste", "batch_size", "labeled_batch_size", "teacher_refresh"})
#: A starting model whose predictions agree with the accepted labels below this mean Dice is new
#: to the study's images (a cold start: a model trained elsewhere, a new scanner or sequence); it
#: fine-tunes at its training learning rate (``TrainConfig.lr``) instead of ``finetune_lr``, which
#: suits small corrections of a model that already knows the images (bench_loop on real scans,
#: docs/benchmarks.md). Overridden by an explicit ``finetune_lr``.
COLD_START_DICE = 0.5
#: A cold start also works at the spacing where the model's patch holds the accepted structures
#: whole, with this much room (:func:`structure_spacing`); a warm start keeps the model's spacing.
STRUCTURE_MARGIN = 1.1
#: With whole-case teacher targets (``teacher_refresh``), a cold start computes them first at this
#: step: the starting model's own predictions on images new to it are no target.
COLD_TEACHER_START = 150


def foreground_dice(predicted: np.ndarray, label: np.ndarray, n_classes: int) -> float:
    """Dice of two label maps, the mean over the foreground classes 1 .. n_classes - 1."""
    return float(np.mean([dice(predicted == c, label == c) for c in range(1, n_classes)]))


def starting_prediction(model, meta: ModelMeta, study: Study, name: str, parent: str, device: str,
                        should_stop: Callable[[], bool] | None = None) -> np.ndarray:
    """The starting model's label map of case ``name`` on the case's grid. A prediction the study
    holds from this very model (a version of the study, or ``"default"``, the packaged model) is
    reused, its label map alone (the float maps of a full-size scan take seconds to read);
    otherwise the case is segmented (deterministic pass). Raises ``inference.Cancelled`` when
    ``should_stop()`` turns true."""
    if parent == DEFAULT_MODEL_NAME or parent in study.model_versions():
        info = study.case_info(name)
        if info.has_prediction and info.prediction_model == parent:
            return read_label(study.prediction_paths(name)["seg"], like=study.read_image(name)).array
    from napari_uamc.engine.inference import InferenceConfig, segment_volume

    config = InferenceConfig(mc_samples=0, device=device)
    return segment_volume(model, meta, study.read_image(name), config, should_stop=should_stop).label


def starting_agreement(model, meta: ModelMeta, study: Study, cases: list[str], parent: str,
                       device: str, should_stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """Dice of the starting model's prediction (:func:`starting_prediction`) against each
    accepted label: how much the person corrected."""
    scores = {}
    for name in cases:
        predicted = starting_prediction(model, meta, study, name, parent, device, should_stop)
        label = study.read_label(name).array  # type: ignore[union-attr]
        scores[name] = foreground_dice(predicted, label, meta.n_classes)
    return scores


def anchor_cases(model, meta: ModelMeta, study: Study, cases: list[TrainingCase], parent: str, device: str,
                 should_stop: Callable[[], bool] | None = None) -> list[TrainingCase]:
    """The unaccepted ``cases`` labeled by the starting model's own predictions: trained on beside
    the accepted cases in a warm start, they hold the model to what it already does well where
    nobody corrected it (replay without the model's training data)."""
    anchors = []
    for case in cases:
        predicted = starting_prediction(model, meta, study, case.name, parent, device, should_stop)
        if predicted.shape != case.image.shape:  # the case was resampled to the working spacing
            predicted = resample_label(predicted, case.image.shape)
        anchors.append(TrainingCase(case.name, case.image, predicted.astype(np.uint8), case.spacing))
    return anchors


def with_anchors(accepted: list[TrainingCase], anchors: list[TrainingCase]) -> list[TrainingCase]:
    """The labeled cases of a step stream in which accepted cases and anchors come about equally
    often: each accepted case is repeated ``ceil(anchors / accepted)`` times (the arrays are shared)."""
    if not anchors:
        return list(accepted)
    repeats = -(-len(anchors) // len(accepted))
    return [case for _ in range(repeats) for case in accepted] + list(anchors)


def structure_spacing(study: Study, cases: list[str], patch: tuple[int, int, int]) -> tuple[float, float, float]:
    """The isotropic spacing (mm) at which ``patch`` holds the bounding box of every accepted
    structure with :data:`STRUCTURE_MARGIN` to spare, never finer than the images' finest spacing:
    a patch that sees the whole structure learns its shape, not just its edges."""
    needed, finest = 0.0, float("inf")
    for name in cases:
        label = study.read_label(name)
        finest = min(finest, *label.spacing)  # type: ignore[union-attr]
        found = np.argwhere(label.array > 0)  # type: ignore[union-attr]
        if found.size:
            extent = (found.max(0) - found.min(0) + 1) * np.array(label.spacing)  # type: ignore[union-attr]
            needed = max(needed, float(np.max(extent * STRUCTURE_MARGIN / np.array(patch))))
    size = max(needed, finest)
    return (size, size, size)


def choose_learning_rate(cfg: TrainConfig, agreement: Mapping[str, float]) -> tuple[float, str]:
    """``(finetune_lr, why)`` for a starting model that agrees with the accepted labels at the
    given Dice per case (see :data:`COLD_START_DICE`)."""
    mean = float(np.mean(list(agreement.values())))
    if mean < COLD_START_DICE:
        return cfg.lr, (f"the starting model agrees with the accepted labels at Dice {dice_text(mean)} "
                        f"(below {COLD_START_DICE}): new to these images, fine-tuning at its training "
                        f"learning rate {cfg.lr:g}")
    # the engine's fine-tune rate, not cfg's: a version made by a cold start records the rate it
    # used in its own config, and its children are warm starts
    warm = TrainConfig().finetune_lr
    return warm, (f"the starting model agrees with the accepted labels at Dice {dice_text(mean)}: "
                  f"fine-tuning at learning rate {warm:g}")


def method_sentence(semi: bool, cold: bool, others: int, recalibrates: bool = True,
                    taught: int | None = None) -> str:
    """What teaches a version, in words, when the engine chose it ("" when the person did, or
    no other case exists): the first of the version's notes, and a line of the panel's offer.

    ``taught``: how many of the ``others`` the semi-supervised fine-tune learned from (a training
    step used their whole-case targets while the gate trusted them); None before training, when
    the sentence says what it will try."""
    plural = "s" if others != 1 else ""
    if semi:
        how = ("UG-MCL consistency with its own whole-case predictions, where they are plausible: the "
               "default when the model already agrees with your labels")
        if taught is None:
            return f"{METHOD_PREFIXES[0]}: it also learns from the {others} other case{plural} ({how})"
        if taught == others:
            return f"{METHOD_PREFIXES[0]}: the {others} other case{plural} taught it too ({how})"
        if taught == 0:
            return (f"{METHOD_PREFIXES[0]}: only the accepted cases taught it (no training step used a plausible "
                    f"prediction of the {others} other case{plural}; {how})")
        return f"{METHOD_PREFIXES[0]}: {taught} of the {others} other cases taught it too ({how})"
    if cold and others:
        return (f"{METHOD_PREFIXES[1]}: only the accepted cases taught it (its predictions of the {others} "
                f"other case{plural} are no target yet"
                + ("; they re-estimated its normalisation statistics)" if recalibrates else ")"))
    return ""
