"""Accept and its neighbours for the session: Show my changes, earlier labels, the draft (no Qt).

:class:`Corrections` saves the segmentation layer as the case's accepted label through the study
(recording the model's honest Dice against it), shows what a person changed against the model's
prediction, lists the case's earlier labels and its draft, and brings one back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_uamc._napari import layers as layer_io
from napari_uamc._napari.styling import SEGMENTATION_SUFFIX
from napari_uamc._napari.tasks import label_changes
from napari_uamc._napari.versions import ACCEPT_DICE_PREFIX, DEFAULT_VERSION_KEY
from napari_uamc._words import counted, dice_text, format_ml
from napari_uamc.errors import UamcError

#: A history row that stands for the case's draft (unaccepted edits), not an accepted label.
DRAFT = "draft"


class Corrections:
    """The Accept section's decisions, on the session's study, case and layers."""

    def __init__(self, session: Any) -> None:  # its napari_uamc._napari.session.Session
        self._s = session

    def _segmentation_layers(self) -> tuple[Any, Any]:
        layer = self._s.selected_image_layer()
        seg = self._s.layers.segmentation(layer.name)
        if seg is None:
            raise UamcError(f"no '{layer.name}{SEGMENTATION_SUFFIX}' layer: segment {layer.name} first, "
                            "or open a study case")
        return layer, seg

    def accept(self) -> None:
        """Save the segmentation layer as the case's accepted label (through the study API)."""
        from napari_uamc.data.metrics import dice

        try:
            image_layer, seg_layer = self._segmentation_layers()
            if self._s.study is None:
                raise UamcError(
                    f"{image_layer.name} is not part of an open study: open a study, or create one "
                    "from the open layers (New study from layers…), then accept"
                )
            case = self._s.study_case_of(image_layer)
            if case is None:
                raise UamcError(f"{image_layer.name} is not an image of the study {self._s.study.root}")
            label = np.ascontiguousarray(layer_io.layer_data_to_canonical(seg_layer.data))
            path = self._s.study.accept(case, label)
        except UamcError as error:
            self._s.say("accept", str(error), "error", notify=True)
            return
        self._s.layers.mark_saved(image_layer.name)
        message = f"accepted {case} ({path.parent.name}/{path.name})"
        baseline = self._s.layers.baselines.get(seg_layer.name)
        outcome = self._s.outcomes.get(image_layer.name)
        version = outcome.model_version if outcome else None
        if baseline is not None:
            score = dice(baseline != 0, label != 0)
            self._s.study.record_score(case, ACCEPT_DICE_PREFIX + (version or DEFAULT_VERSION_KEY), score)
            # the count too: a visible edit of 173 voxels of a real scan is Dice 0.9995, "1.000" at 3 decimals
            changed = int(np.count_nonzero(np.asarray(baseline) != label))
            voxel_ml = float(np.prod(np.abs(image_layer.scale[-3:]))) / 1000.0  # scale: mm
            message += (f"; you changed {counted(changed, 'voxel')} ({format_ml(changed * voxel_ml)}); the model's "
                        "prediction had Dice "
                        f"{dice_text(score)} against your label")
        self._s.say("accept", message, "ok")
        self.refresh_history()
        self._s.study_changed.emit()
        self._s.models_changed.emit()

    def show_changes(self) -> None:
        """Add a layer showing what the person changed against the model's prediction."""
        try:
            image_layer, seg_layer = self._segmentation_layers()
        except UamcError as error:
            self._s.say("accept", str(error), "error", notify=True)
            return
        baseline = self._s.layers.baselines.get(seg_layer.name)
        if baseline is None:
            self._s.notice.emit("no model prediction to compare with: segment first", "info")
            return
        volume = layer_io.volume_from_layer(image_layer)
        changes = label_changes(baseline, layer_io.layer_data_to_canonical(seg_layer.data))
        self._s.layers.put_changes(image_layer.name, volume, changes)
        self._s.layers.paint_into(seg_layer)
        added, removed = int((changes == 1).sum()), int((changes == 2).sum())
        voxel_ml = float(np.prod(np.abs(volume.spacing))) / 1000.0
        self._s.say("accept", f"changes: {counted(added, 'voxel')} added (1, {format_ml(added * voxel_ml)}), "
                              f"{removed} removed (2, {format_ml(removed * voxel_ml)})")

    def refresh_history(self) -> None:
        rows: list[tuple[str, Any]] = []
        if self._s.study is not None and self._s.case is not None:
            if self._s.study.draft_path(self._s.case).is_file():
                rows.append(("draft: your unaccepted edits (not accepted)", DRAFT))
            for entry in reversed(self._s.study.history(self._s.case)):
                rows.append((f"{entry.time:%Y-%m-%d %H:%M:%S} UTC" + (f"  {entry.note}" if entry.note else ""),
                             entry))
        self._s.history_changed.emit(rows)

    def restore(self, entry: Any, text: str = "") -> None:
        """Show the draft (``DRAFT``), or make an earlier label the accepted one again and show it."""
        study, case = self._s.study, self._s.case
        if study is None or case is None:
            return
        try:
            if entry == DRAFT and self._s.layers.is_edited(case):
                raise UamcError(f"{case}: the segmentation on screen has edits that are not kept anywhere; "
                                "Accept them first, or undo them, then bring the draft back")
            if entry != DRAFT:
                study.restore(case, entry)
            volume = study.read_image(case)
            restored = study.read_draft(case) if entry == DRAFT else study.read_label(case)
            if restored is None:
                raise UamcError(f"{case}: there is no draft any more")
        except UamcError as error:
            self._s.say("accept", str(error), "error", notify=True)
            return
        self._s.layers.put_segmentation(case, volume, restored.array, baseline=None)
        what = "your draft" if entry == DRAFT else f"the label of {case} from {text}"
        self._s.say("accept", f"restored {what}")
        self.refresh_history()
        self._s.study_changed.emit()
