"""The loop's state and decisions, without Qt: study, case, layers, drafts, Segment, Accept.

A :class:`Session` works on a napari viewer model (``napari.Viewer`` or the Qt-free
``napari.components.ViewerModel``) and reports what changed through psygnal signals; the panel's
widgets (:mod:`napari_uamc._napari._qt`) only show it and call its methods. Long work runs
through a runner (:mod:`napari_uamc._napari.jobs`): at once without a GUI, in napari thread
workers in the panel.

Nothing painted is lost. The segmentation layer's edits (voxels the panel did not put there) are
kept as the case's draft in the study before the panel replaces or removes the layer: on Segment,
on opening another case or study, on closing napari (also when napari removes its layers first).
Outside a study, Segment sets the painted layer aside under another name instead.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

from psygnal import Signal

from napari_uamc._napari import layers as layer_io
from napari_uamc._napari import unit_registry
from napari_uamc._napari.case_layers import CaseLayers, warm_up
from napari_uamc._napari.case_opening import CaseOpener, next_case_note
from napari_uamc._napari.corrections import Corrections
from napari_uamc._napari.finetuning import Finetuning
from napari_uamc._napari.jobs import InlineRunner, Job, Runner, in_turns
from napari_uamc._napari.offer_preview import OfferPreview
from napari_uamc._napari.saved_prediction import disagreement_note, disagreement_of
from napari_uamc._napari.styling import DISAGREEMENT_SUFFIX, SEGMENTATION_SUFFIX
from napari_uamc._napari.tasks import SegmentOutcome, segment_image
from napari_uamc._napari.versions import ModelCatalog
from napari_uamc.errors import UamcError

#: Why a panel cannot open while a spawned child process starts (see _refuse_in_a_starting_child).
UNGUARDED_SCRIPT = (
    "napari-uamc: the fine-tune's child process is running this script again, because the script "
    "drives the panel without an `if __name__ == \"__main__\":` guard (the child is started with "
    "multiprocessing's 'spawn' method, which imports the main script in the child). Put the code "
    "that opens napari and drives the panel under that guard; this fine-tune writes no new version."
)


def _refuse_in_a_starting_child() -> None:
    """A panel made while a spawned child process imports the main script again (as
    multiprocessing's own check for starting a process then does): a script without the
    ``__main__`` guard, re-run by the fine-tune's child. Without this the child opened a second
    napari and ran the script's loop again; now it stops at once, saying why."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise UamcError(UNGUARDED_SCRIPT)


class Session:
    """One person's loop over one viewer: the open study and case and what is on screen."""

    #: a section's status line changed: section ("study", "segment", "accept", "finetune"), text, level
    status = Signal(str, str, str)
    #: something to tell the person at once (a napari notification): text, level
    notice = Signal(str, str)
    #: the study, its cases' status or scores changed
    study_changed = Signal()
    #: another case (or none) is open
    case_changed = Signal(object)
    #: the image layers that can be segmented, and the picked one
    images_changed = Signal(list, str)
    #: the model choices, the picked one or the versions' scores changed
    models_changed = Signal()
    segment_running = Signal(bool)
    segment_progress = Signal(int, int)
    #: the uncertain regions of the last Segment of the picked image (list of UncertainRegion)
    regions_changed = Signal(list)
    #: the current case's earlier labels: list of (text, history entry or corrections.DRAFT)
    history_changed = Signal(list)

    def __init__(self, viewer: Any, runner: Runner | None = None) -> None:
        _refuse_in_a_starting_child()
        self.viewer = viewer
        self.runner: Runner = runner or InlineRunner()
        self.layers = CaseLayers(viewer, self.runner)
        self.models = ModelCatalog()
        self.finetuning = Finetuning(self)
        self.corrections = Corrections(self)
        self.opener = CaseOpener(self)  # opening a case in the background (case_opening.py)
        self.preview = OfferPreview(self)  # the offered version on the case on screen (offer_preview.py)
        self.study: Any = None  # data.study.Study
        self.case: str | None = None
        self.image_name = ""
        self.mc_samples = 8
        self.device = "auto"
        #: image layer name -> its last Segment (or, reopened, its saved prediction: SavedOutcome)
        self.outcomes: dict[str, Any] = {}
        self.show_disagreement = False
        self.texts: dict[str, tuple[str, str]] = {}
        self._segment_stop = threading.Event()
        self._segment_job: Job | None = None
        self._segment_showing = False  # a Segment's result is being put on screen, in turns
        # imports the first Segment and case need; napari's unit registry (see unit_registry)
        self.runner.start(Job("warm up", warm_up, {}, on_returned=lambda _: unit_registry.install()))
        self._removing_case = False
        self._closed = False
        viewer.layers.events.inserted.connect(self._layer_inserted)
        viewer.layers.events.removing.connect(self._layer_removing)
        viewer.layers.events.removed.connect(self._layer_removed)

    def close(self) -> None:
        """Stop listening to the viewer and stop telling anyone (the panel is gone). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):  # the viewer's Qt side may be gone already
            self.preview.clear()  # never left on screen by a panel that went
        events = self.viewer.layers.events
        events.inserted.disconnect(self._layer_inserted)
        events.removing.disconnect(self._layer_removing)
        events.removed.disconnect(self._layer_removed)
        self.layers.close()
        for owner in (self, self.finetuning, self.preview):
            for name in dir(type(owner)):
                if isinstance(getattr(type(owner), name, None), Signal):
                    getattr(owner, name).disconnect()

    # ------------------------------------------------------------------ messages
    def say(self, section: str, text: str, level: str = "info", *, notify: bool = False) -> None:
        """Set a section's status line (and tell the person at once when ``notify``)."""
        self.texts[section] = (text, level)
        self.status.emit(section, text, level)
        if notify:
            self.notice.emit(text, level)

    def job_failed(self, section: str, error: BaseException) -> None:
        from napari_uamc.engine.inference import Cancelled

        if isinstance(error, Cancelled):
            self.say(section, "stopped")
            return
        message = str(error) if isinstance(error, UamcError) else f"{type(error).__name__}: {error}"
        self.say(section, message, "error", notify=True)

    # ------------------------------------------------------------------ images and models
    def _images_changed(self) -> None:
        names = [layer.name for layer in self.layers.image_layers()]
        if self.image_name not in names:  # as a combo box does: the first one
            self.image_name = names[0] if names else ""
        self.images_changed.emit(names, self.image_name)

    def select_image(self, name: str) -> None:
        if name != self.image_name:
            self.image_name = name
            self.images_changed.emit([layer.name for layer in self.layers.image_layers()], name)
            outcome = self.outcomes.get(name)
            self.regions_changed.emit(list(outcome.regions) if outcome else [])

    def selected_image_layer(self) -> Any:
        layer = self.layers.get(self.image_name) if self.image_name else None
        if layer is None:
            raise UamcError("no image layer to segment: open an MRI (File > Open) or a study case")
        return layer

    def refresh_models(self) -> None:
        """Re-read the study's model versions (the study's current model becomes the picked one)."""
        self.models.reload(self.study)
        self.models_changed.emit()

    def select_model(self, index: int) -> None:
        """The one model choice: Segment uses it and the fine-tune starts from it. In a study,
        picking a model makes it the study's current model (as *Use selected version* does)."""
        self.models.select(index)
        if self.study is not None and self.models.selected.version != self.study.current_model:
            self.finetuning.pick(self.models.selected.version)  # an unreviewed version is offered

    def use_version(self, version: str | None) -> None:
        """Make a version (None: the packaged default) the study's current model: Segment uses it,
        the fine-tune starts from it; says what changed and refreshes the ranking (finetuning.py)."""
        self.finetuning.use_version(version)

    def version_added(self) -> None:
        """A fine-tune wrote (or discarded) a version: re-read the study's versions."""
        if self.study is not None:
            self.study.refresh()
        self.refresh_models()
        self.study_changed.emit()

    def _layer_inserted(self, event: Any) -> None:
        """A layer from the "Phantom study" sample (or any study image) opens its study."""
        self._images_changed()
        layer = getattr(event, "value", None)
        meta = layer_io.uamc_metadata(layer) if layer is not None else None
        folder = (meta or {}).get(layer_io.KEY_STUDY)
        if not folder or self.study is not None:
            return
        self.open_study(folder, open_first_case=False)
        case = meta.get(layer_io.KEY_CASE)
        if self.study is not None and case in self.study.cases():
            self._set_case(case)
            self.select_image(layer.name)

    def _layer_removed(self, event: Any = None) -> None:
        self._images_changed()
        layer_io.forget_axis_labels(self.viewer)  # the viewer empty: napari's labels again

    def _layer_removing(self, event: Any) -> None:
        """napari removes the case's segmentation (closing, or a person): keep its edits first."""
        if self._removing_case or self.case is None:
            return
        layer = self.viewer.layers[event.index]
        if layer.name == self.case + SEGMENTATION_SUFFIX:
            self.keep_draft()

    # ------------------------------------------------------------------ study and case
    def open_study(self, path: str | Path, *, open_first_case: bool = True) -> None:
        """Open a study folder; opens the unaccepted case the model is least sure about."""
        from napari_uamc.data.study import Study

        try:
            study = Study.open(path)
        except UamcError as error:
            self.say("study", str(error), "error", notify=True)
            return
        self.close_case()
        self.study = study
        self.finetuning.set_offer(None)  # an offer belongs to the study it was made in
        self.say("study", "")
        self.study_changed.emit()
        self.refresh_models()
        self.finetuning.offer_unreviewed()  # a version written while napari was closed
        if open_first_case and study.cases():
            first = study.suggest_next_case()
            if first is None:  # every case accepted
                self.open_case(study.cases()[0])
            else:
                self.opener.open(first, next_case_note(study, first, None))

    def create_study_from_layers(self, folder: str | Path) -> None:
        """Create a study from the image layers open in napari, then open it."""
        from napari_uamc.data.study import Study

        try:
            volumes = [layer_io.volume_from_layer(layer, name=layer.name) for layer in self.layers.image_layers()]
            if not volumes:
                raise UamcError("no image layers to put in a study: open some MRIs first")
            Study.create(folder, volumes)
        except UamcError as error:
            self.say("study", str(error), "error", notify=True)
            return
        self.open_study(folder, open_first_case=False)

    def next_case(self) -> str | None:
        """The unaccepted case to correct next: the most uncertain one other than the open one."""
        if self.study is None:
            return None
        ranked = [case for case in self.study.ranked_for_labeling() if case != self.case]
        return ranked[0] if ranked else None

    def open_next_case(self) -> None:
        """Open the unaccepted case with the highest uncertainty score (active learning)."""
        if self.study is None:
            self.notice.emit("open a study first", "info")
            return
        case = self.next_case()
        if case is None:
            others = "every other case" if self.case in self.study.unlabeled_cases() else "every case"
            self.notice.emit(f"{others} of the study is accepted", "info")
            return
        self.opener.open(case, next_case_note(self.study, case, self.case))

    def open_case(self, case: str) -> None:
        """Show a study case: its image and its draft, accepted label or prediction (case_opening.py:
        read in the background, the draft of the case left kept, its layers taken over)."""
        self.opener.open(case)

    @property
    def opening(self) -> bool:
        """Whether a case's files are being read (its layers are not on screen yet)."""
        return self.opener.busy

    def _set_case(self, case: str | None) -> None:
        self.case = case
        for section in ("segment", "accept", "versions"):  # their texts were about earlier actions
            self.say(section, "")
        self.segment_progress.emit(0, 1)
        self.case_changed.emit(case)
        self.study_changed.emit()
        self.corrections.refresh_history()

    def close_case(self) -> None:
        """Keep unaccepted edits of the case on screen as a draft, then remove its layers."""
        if self.case is None:
            return
        self.keep_draft()
        case = self.case
        self._removing_case = True
        try:
            self.layers.remove_all_of(case)
        finally:
            self._removing_case = False
        self.outcomes.pop(case, None)
        self._set_case(None)

    def keep_draft(self) -> bool:
        """Save the current case's painted segmentation as its draft; returns whether one was saved."""
        if self.study is None or self.case is None or not self.layers.is_edited(self.case):
            return False
        try:
            self.study.save_draft(self.case, self.layers.edited_canonical(self.case))
        except UamcError as error:
            self.say("accept", f"could not keep the draft of {self.case}: {error}", "error", notify=True)
            return False
        self.layers.mark_saved(self.case)
        self.notice.emit(f"{self.case}: your unaccepted edits are kept as a draft", "info")
        return True

    def study_case_of(self, layer: Any) -> str | None:
        if self.study is None:
            return None
        meta = layer_io.uamc_metadata(layer) or {}
        case = meta.get(layer_io.KEY_CASE) or layer.name
        return case if case in self.study.cases() else None

    # ------------------------------------------------------------------ segment
    @property
    def segmenting(self) -> bool:
        return self._segment_job is not None

    def stop_segment(self) -> None:
        self._segment_stop.set()

    def segment(self) -> None:
        """Segment the picked image with the picked model (in the background)."""
        if self._segment_job is not None:
            self.notice.emit("a segmentation is already running", "info")
            return
        try:
            layer = self.selected_image_layer()
            volume = layer_io.volume_from_layer(layer)
            model = self.models.selected
            if model.path is not None:  # a study version; the packaged one resolves in the worker
                model.resolve()  # (finding it imports torch: seconds on the GUI thread)
        except UamcError as error:
            self.say("segment", str(error), "error", notify=True)
            return
        case = self.study_case_of(layer)
        name = layer.name
        self._segment_stop.clear()
        self.segment_progress.emit(0, 1)
        self.say("segment", f"segmenting {name} with {model.label}…")
        job = Job(
            "segment", segment_image,
            dict(volume=volume, model=model, mc_samples=self.mc_samples, device=self.device,
                 should_stop=self._segment_stop.is_set, study=self.study if case else None, case=case),
            reporters={"progress": lambda done, total: self.segment_progress.emit(done, max(1, total))},
            on_returned=lambda outcome: self._segmented(name, volume, outcome),
            on_errored=lambda error: self.job_failed("segment", error),
            on_finished=self._segment_finished,
        )
        self._segment_job = job
        self.segment_running.emit(True)
        self.runner.start(job)

    def _segment_finished(self) -> None:
        if self._segment_job is None or self._segment_showing:
            return  # already done, or the result is still being put on screen (it ends then)
        self._segment_job = None
        self.segment_running.emit(False)

    def _segmented(self, image: str, volume: Any, outcome: SegmentOutcome) -> None:
        if self.layers.get(image) is None:  # closed while it ran (its study prediction is saved)
            self.say("segment", f"{image} was closed before its segmentation ended")
            return
        kept = self._keep_edits_of(image)
        self.outcomes[image] = outcome

        def rest() -> None:
            if self.show_disagreement:
                self.set_disagreement(True)
            self.layers.clear_focus(image)  # the ring marked a region of the Segment before
            if image == self.image_name:
                self.regions_changed.emit(list(outcome.regions))
            self.segment_progress.emit(1, 1)
            self.say("segment", (
                f"{image}: segmented volume <b>{outcome.volume_ml:.1f} mL</b>, "
                f"uncertainty score {outcome.uncertainty_score:.4f} nats (mean over the whole volume, "
                f"which ranks the cases; the command 'uamc segment' reports the mean inside the segmentation), "
                f"{outcome.seconds:.1f} s ({outcome.model_label})"
            ), "ok")
            if kept:
                self.say("accept", kept, notify=True)
            if outcome.saved_to_study:
                self.study_changed.emit()

        def shown() -> None:
            self._segment_showing = False
            self._segment_finished()

        self._segment_showing = True  # one layer per event-loop turn (jobs.in_turns)
        in_turns(self.runner, [*self.layers.result_steps(image, volume, outcome.result), rest], shown)

    def _keep_edits_of(self, image: str) -> str:
        """Before Segment replaces a painted segmentation: keep the edit; returns what was done."""
        if not self.layers.is_edited(image):
            return ""
        case = self.study_case_of(self.layers.get(image))
        if case is not None:
            try:
                self.study.save_draft(case, self.layers.edited_canonical(image))
                self.corrections.refresh_history()
                self.study_changed.emit()
                return (f"{case}: Segment replaced your painted segmentation on screen; your edits are kept "
                        "as the case's draft (Earlier labels: 'draft', then Restore selected label)")
            except UamcError:
                pass  # no draft possible (read-only study): keep the layer instead
        aside = self.layers.set_aside(image)
        return f"{image}: your painted segmentation is kept as the layer '{aside}'"

    # ------------------------------------------------------------------ accept (see corrections.py)
    def accept(self) -> None:
        self.corrections.accept()

    def show_changes(self) -> None:
        self.corrections.show_changes()

    # ------------------------------------------------------------------ where to correct
    def jump_to_region(self, region: Any) -> None:
        """Go to a region's focus voxel on the picked image: its slice, the whole scan in view
        (the view kept when the voxel is on the canvas, else fitted to the image), the voxel
        marked with a ring (``<image> region focus``)."""
        layer = self.layers.get(self.image_name)
        if layer is not None:
            world = self.layers.world_point(layer, region.focus)
            self.layers.jump_to(world, fit=[layer])
            self.layers.mark_focus(self.image_name, world)

    def displayed_focus(self, region: Any) -> tuple[int, int, int] | None:
        """A region's focus voxel as napari shows the picked image's voxels: (slice, row, column)."""
        return self.layers.displayed_focus(self.image_name, region)

    def focus_world(self, region: Any) -> list[float] | None:
        """A region's focus voxel in world coordinates (mm), as napari's status bar shows it."""
        layer = self.layers.get(self.image_name)
        return None if layer is None else self.layers.world_point(layer, region.focus)

    def jump_to(self, world: list[float]) -> None:
        self.layers.jump_to(world)

    def set_disagreement(self, on: bool) -> None:
        """Show (or remove) where the two heads disagree, for the picked image."""
        self.show_disagreement = on
        try:
            layer = self.selected_image_layer()
        except UamcError:
            return
        if not on:
            self.layers.remove(layer.name + DISAGREEMENT_SUFFIX)
            return
        disagreement = disagreement_of(self.outcomes.get(layer.name))
        if disagreement is None:
            self.notice.emit(self.disagreement_note(), "info")
            return
        volume = layer_io.volume_from_layer(layer)
        self.layers.put_disagreement(layer.name, volume, disagreement)

    def disagreement_note(self) -> str:
        """Why the picked image's disagreement layer cannot be shown ("" when it can)."""
        return disagreement_note(self.outcomes.get(self.image_name))

    # ------------------------------------------------------------------ shutdown
    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop running work and wait for it, keep unaccepted edits as a draft, then stop talking:
        the window is closing, and a job's report that arrives later must not reach its widgets."""
        self._segment_stop.set()
        self.preview.stop()
        self.finetuning.stop()
        self.runner.wait_all(timeout_s)
        self.keep_draft()
        self.close()
