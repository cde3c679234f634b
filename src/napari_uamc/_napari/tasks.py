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
from napari_uamc.data.study.versions import DEFAULT_MODEL_NAME
from napari_uamc.data.volume import Volume
from napari_uamc.engine.progress_messages import WRITING_MESSAGE  # no torch

#: Label shown for the packaged model in model pickers.
DEFAULT_MODEL_LABEL = "default (left atrium, LA 2018 MRI)"


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
            uncertainty_score=score,
            # the fine-tune reuses a prediction of the very model it starts from ("default": packaged)
            model_version=model.version or (DEFAULT_MODEL_NAME if model.path is None else None),
            disagreement=result.disagreement,  # so a reopened case shows it too
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


#: Seconds between checks of the stop request and of the child's health while it trains.
CHILD_POLL_SECONDS = 0.2
#: Seconds a stopped child may take to end (every stage checks the stop request within about a
#: second on 2 CPU cores: docs/napari-plugin.md); after that it is terminated, and what it left
#: half-written is removed (no version is written then).
STOP_GRACE_SECONDS = 5.0
#: Seconds a child that reported its result, or is writing its version, may take before it is
#: terminated (a write is never cut short for the stop's sake: fsync can be slow on a busy disk).
CHILD_EXIT_SECONDS = 30.0
#: The fine-tune child reports the progress of a long stage at most this often (seconds), and
#: the thread relaying its reports ticks this often (each stage then says how long it has run).
STAGE_REPORT_SECONDS = 0.25
TICK_SECONDS = 1.0
#: How the child says it compares the new version with its parent on the other cases.
COMPARING_MESSAGE = "comparing the new version "


@dataclass
class FinetuneOutcome:
    """What a fine-tune in the child process produced: the version (written, not adopted unless
    asked), how much it changes the other cases' predictions, and how long a Stop took."""

    result: Any  # engine.finetune.FinetuneResult
    change: Any = None  # engine.finetune.PredictionChange (None: not compared)
    #: seconds from the stop request to the child's result (None: not stopped)
    stop_seconds: float | None = None


def _finetune_child_main(study_root: str, options: dict[str, Any], compare: bool, queue: Any, stop: Any) -> None:
    """Body of the fine-tune child process: run the engine's fine-tune (and, unless stopped, the
    comparison with the parent), report through ``queue``."""
    import time

    from napari_uamc.engine.finetune import compare_with_parent, finetune_study
    from napari_uamc.errors import UamcError

    reported = [0.0]

    def stage_progress(done: int, total: int) -> None:  # at most every STAGE_REPORT_SECONDS, and the end
        now = time.monotonic()
        if done >= total or now - reported[0] >= STAGE_REPORT_SECONDS:
            reported[0] = now
            queue.put(("stage", (done, total)))

    try:
        result = finetune_study(
            study_root,
            should_stop=stop.is_set,
            on_step=lambda report: queue.put(("step", report)),
            on_message=lambda text: queue.put(("message", text)),
            on_progress=stage_progress,
            **options,
        )
        change = None
        if compare and not stop.is_set() and result.unlabeled:
            queue.put(("message", f"{COMPARING_MESSAGE}{result.version} with {result.parent} on the other cases"))
            change = compare_with_parent(
                study_root, result, device=options.get("device", "auto"), should_stop=stop.is_set,
                on_progress=lambda done, total: queue.put(("progress", (done, total))),
            )
    except BaseException as error:  # noqa: BLE001 - every failure must reach the parent
        queue.put(("error", (type(error).__name__, str(error), isinstance(error, UamcError))))
        return
    queue.put(("done", (result, change)))


def finetune_in_child(
    study_root: str | Path,
    *,
    on_step: Callable[[Any], None] | None = None,
    on_message: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_stage_progress: Callable[[int, int], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    compare: bool = True,
    stop_grace_s: float | None = None,
    **options: Any,
) -> FinetuneOutcome:
    """Run :func:`napari_uamc.engine.finetune.finetune_study` in a child process, then (unless
    stopped, and with ``compare``) :func:`~napari_uamc.engine.finetune.compare_with_parent`.

    Measured on 2 cores, torch trains about 25 % slower when called from any thread other
    than a process's main thread (docs/benchmarks.md), so the plugin trains in a child process
    whose main thread does the work; this thread only relays reports and the stop request.
    A child that has not ended ``stop_grace_s`` (default :data:`STOP_GRACE_SECONDS`) after the
    stop request, and is not writing its version, is terminated, what it left half-written is
    removed, and ``Cancelled`` is raised. Engine errors come back as the
    same message (``Cancelled`` as ``Cancelled``). Reports: ``on_step``, ``on_message`` (the
    engine's), ``on_progress`` (the comparison's cases), ``on_stage_progress`` (the engine's
    stage after training: BatchNorm patches, scored cases), ``on_tick`` (every
    :data:`TICK_SECONDS` while it runs, so a stage can say how long it has run).
    """
    import multiprocessing
    import queue as queue_module
    import time

    from napari_uamc.data.study.versions import remove_unfinished_versions
    from napari_uamc.engine.inference import Cancelled
    from napari_uamc.errors import TrainingError, UamcError

    context = multiprocessing.get_context("spawn")
    reports = context.Queue()
    stop = context.Event()
    started_wall = time.time()
    child = context.Process(
        target=_finetune_child_main, args=(str(study_root), options, compare, reports, stop),
        name="napari-uamc-finetune", daemon=True,
    )
    child.start()
    grace = STOP_GRACE_SECONDS if stop_grace_s is None else stop_grace_s
    stop_asked_at: float | None = None
    writing = False
    ticked = _now()

    def stop_seconds() -> float | None:
        return None if stop_asked_at is None else round(_now() - stop_asked_at, 2)

    try:
        while True:
            if should_stop is not None and should_stop() and stop_asked_at is None:
                stop.set()
                stop_asked_at = _now()
            if on_tick is not None and _now() - ticked >= TICK_SECONDS:
                ticked = _now()
                on_tick()
            try:
                kind, payload = reports.get(timeout=CHILD_POLL_SECONDS)
            except queue_module.Empty:
                if stop_asked_at is not None and _now() - stop_asked_at > (CHILD_EXIT_SECONDS if writing else grace):
                    child.terminate()
                    child.join()
                    removed = remove_unfinished_versions(study_root, started_wall)
                    raise Cancelled(
                        f"the fine-tune did not end within {grace:g} s of Stop and was ended; no model "
                        "version was written" + (f" (removed its unfinished files: {', '.join(removed)})"
                                                 if removed else "")
                    ) from None
                if not child.is_alive():
                    raise TrainingError(
                        f"the fine-tune process ended unexpectedly (exit code {child.exitcode}); "
                        "no new model version was written"
                    ) from None
                continue
            if kind == "step" and on_step is not None:
                on_step(payload)
            elif kind == "message":
                writing = writing or str(payload).startswith(WRITING_MESSAGE)
                if on_message is not None:
                    on_message(payload)
            elif kind == "progress" and on_progress is not None:
                on_progress(*payload)
            elif kind == "stage" and on_stage_progress is not None:
                on_stage_progress(*payload)
            elif kind == "done":
                result, change = payload
                return FinetuneOutcome(result, change, stop_seconds())
            elif kind == "error":
                name, message, user_error = payload
                if name == "Cancelled":
                    took = stop_seconds()
                    raise Cancelled(message + (f" (ended {took:.1f} s after Stop)" if took is not None else ""))
                if user_error:  # the engine's own message, written for the person
                    raise UamcError(message)
                raise TrainingError(f"the fine-tune failed: {name}: {message}")
    finally:
        child.join(timeout=CHILD_EXIT_SECONDS)
        if child.is_alive():
            child.terminate()
            child.join()


def _now() -> float:
    import time

    return time.monotonic()
