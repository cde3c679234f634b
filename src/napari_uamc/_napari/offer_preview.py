"""Preview on this case: the offered version's segmentation of the image on screen (no Qt).

Before Adopt / Discard, a person can look at what the offered version does on the case they
know. :class:`OfferPreview` runs the Segment button's inference
(:func:`~napari_uamc._napari.tasks.segment_image`, deterministic: no MC samples; nothing saved)
with the version's checkpoint (``.uamc/models/vNNN.pt``) in the session's runner, then shows
``<image> preview vNNN``: an orange contour on the image's grid that is never the active layer,
never editable, never saved or accepted, and says its Dice against the segmentation on screen
(and the accepted label, when the case has one) in the offer box. The layer goes when the offer
is decided or changes, when the case changes and when the panel closes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from psygnal import Signal

from napari_uamc._napari import layers as layer_io
from napari_uamc._napari import styling
from napari_uamc._napari.jobs import Job
from napari_uamc._napari.styling import PREVIEW_INFIX
from napari_uamc._napari.tasks import ModelChoice, SegmentOutcome, segment_image
from napari_uamc._words import dice_text
from napari_uamc.errors import UamcError

#: The session's status section of the preview's line (shown in the offer box).
SECTION = "preview"


@dataclass
class PreviewResult:
    """What a preview's worker produced: the inference and the case's accepted label (canonical)."""

    outcome: SegmentOutcome
    accepted: np.ndarray | None


def preview_segment(volume: Any, model: ModelChoice, *, device: str = "auto", study: Any = None,
                    case: str | None = None, progress: Callable[[int, int], None] | None = None,
                    should_stop: Callable[[], bool] | None = None) -> PreviewResult:
    """Segment ``volume`` with ``model`` deterministically (nothing saved) and read the case's
    accepted label, if any: the worker's part of a preview."""
    outcome = segment_image(volume, model, mc_samples=0, device=device, progress=progress,
                            should_stop=should_stop)
    label = study.read_label(case) if study is not None and case is not None else None
    return PreviewResult(outcome, None if label is None else np.asarray(label.array))


class OfferPreview:
    """The offer box's *Preview on this case*: one preview at a time, for the offered version."""

    #: True while a preview runs
    running = Signal(bool)
    #: progress: done, total
    progress = Signal(int, int)

    def __init__(self, session: Any) -> None:  # its napari_uamc._napari.session.Session
        self._session = session
        self._stop = threading.Event()
        self._job: Job | None = None
        #: the preview layer on screen (None: none)
        self.layer_name: str | None = None
        #: disconnects the watch for paint on the compared segmentation (None: no watch)
        self._unwatch: Any = None
        session.finetuning.offered.connect(lambda _offer: self.clear())
        session.case_changed.connect(lambda _case: self.clear())

    @property
    def busy(self) -> bool:
        return self._job is not None

    def _say(self, text: str, level: str = "info", *, notify: bool = False) -> None:
        self._session.say(SECTION, text, level, notify=notify)

    def start(self) -> None:
        """Segment the picked image with the offered version, in the background."""
        session = self._session
        if self._job is not None:
            return
        offer, study = session.finetuning.offer, session.study
        try:
            if offer is None or study is None:
                raise UamcError("no version is offered: there is nothing to preview")
            layer = session.selected_image_layer()
            path = study.model_path(offer.version)
            if not path.is_file():
                raise UamcError(f"{offer.version}'s weights are missing ({path}): it cannot be previewed; "
                                "Discard it")
            volume = layer_io.volume_from_layer(layer)
        except UamcError as error:
            self._say(str(error), "error", notify=True)
            return
        self.clear()
        image, version, case = layer.name, offer.version, session.study_case_of(layer)
        self._stop.clear()
        self.progress.emit(0, 1)
        self._say(f"previewing {version} on {image}…")
        self._job = Job(
            "preview", preview_segment,
            dict(volume=volume, model=ModelChoice(version, path, version), device=session.device,
                 study=study if case else None, case=case, should_stop=self._stop.is_set),
            reporters={"progress": lambda done, total: self.progress.emit(done, max(1, total))},
            on_returned=lambda result: self._show(image, volume, version, result),
            on_errored=self._failed,
            on_finished=self._finished,
        )
        self.running.emit(True)
        session.runner.start(self._job)

    def stop(self) -> None:
        self._stop.set()

    def clear(self) -> None:
        """Stop a running preview and remove the preview layer and its line."""
        self._stop.set()
        self._stop_watching()
        if self.layer_name is not None:
            self._session.layers.remove(self.layer_name)
            self.layer_name = None
        if self._session.texts.get(SECTION, ("", ""))[0]:
            self._say("")

    def _show(self, image: str, volume: Any, version: str, result: PreviewResult) -> None:
        session = self._session
        offer = session.finetuning.offer
        if self._stop.is_set() or offer is None or offer.version != version or session.layers.get(image) is None:
            return  # the offer, the case or the image went while it ran: cleared already
        label = result.outcome.result.label
        name = image + PREVIEW_INFIX + version
        session.layers.put_labels_view(image, PREVIEW_INFIX + version, volume, label, styling.style_preview)
        self.layer_name = name
        self.progress.emit(1, 1)
        line = self.dice_line(version, image, label, result.accepted)
        self._say(line, "ok")
        self._watch_paint(image, line)

    def _watch_paint(self, image: str, line: str) -> None:
        """Once the person paints the segmentation the preview was compared with, its Dice is of
        the segmentation before: the line says so (recomputing it on every stroke of a full-size
        scan would cost the GUI a tenth of a second each)."""
        segmentation = self._session.layers.segmentation(image)
        if segmentation is None or "segmentation on screen" not in line:
            return

        def painted(_event: Any = None) -> None:
            self._stop_watching()
            if self._session.texts.get(SECTION, ("", ""))[0] == line:
                self._say(line.removesuffix(".") + " (the segmentation on screen as it was before your latest "
                          "edits: Preview on this case again to compare with them).", "ok")

        segmentation.events.paint.connect(painted)
        self._unwatch = lambda: segmentation.events.paint.disconnect(painted)

    def _stop_watching(self) -> None:
        if self._unwatch is not None:
            unwatch, self._unwatch = self._unwatch, None
            unwatch()

    def dice_line(self, version: str, image: str, label: np.ndarray, accepted: np.ndarray | None) -> str:
        """The preview's one line: its Dice with the segmentation on screen and the accepted label."""
        from napari_uamc.data.metrics import dice  # scipy.ndimage: not while the panel opens

        mask = np.asarray(label) != 0
        said = [f"Preview of {version} on {image} (orange outline in 2D, hidden in 3D; "
                f"layer '{image}{PREVIEW_INFIX}{version}')"]
        segmentation = self._session.layers.segmentation(image)
        if segmentation is not None:
            on_screen = layer_io.layer_data_to_canonical(segmentation.data)
            if on_screen.shape == mask.shape:
                said.append(f"Dice with the segmentation on screen {dice_text(dice(mask, on_screen != 0))}")
        if accepted is not None and accepted.shape == mask.shape:
            said.append(f"with your accepted label {dice_text(dice(mask, accepted != 0))}")
        if len(said) == 1:
            said.append("no segmentation on screen to compare with")
        return said[0] + ": " + ", ".join(said[1:]) + "."

    def _failed(self, error: BaseException) -> None:
        from napari_uamc.engine.inference import Cancelled

        if isinstance(error, Cancelled):
            if self._session.texts.get(SECTION, ("", ""))[0]:  # Stop pressed (a clear() emptied it)
                self._say("preview stopped")
            return
        self._session.job_failed(SECTION, error)

    def _finished(self) -> None:
        self._job = None
        self.running.emit(False)
