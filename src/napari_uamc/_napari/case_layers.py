"""Which napari layers belong to an image, and whether its segmentation was painted.

No Qt: works on a ``napari.components.ViewerModel`` as on a full viewer. For an image layer
called ``<image>`` the panel makes ``<image> segmentation`` and the helper layers named in
:mod:`napari_uamc._napari.styling`. :class:`CaseLayers` puts them in the viewer (styled, on the
image's grid), keeps helper layers from becoming the active layer, keeps the selection off a
segmentation the 3D view hides, and remembers what it last put in each segmentation layer, so an
edit (painting since then) is never overwritten unseen.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_uamc._napari import layers as layer_io
from napari_uamc._napari import styling, unit_registry
from napari_uamc._napari.saved_prediction import saved_outcome
from napari_uamc._napari.styling import (
    CHANGES_SUFFIX,
    DISAGREEMENT_SUFFIX,
    FOCUS_SUFFIX,
    MAP_SUFFIXES,
    PREVIEW_INFIX,
    SDF_SUFFIX,
    SEGMENTATION_SUFFIX,
    SURFACE_SUFFIX,
    UNCERTAINTY_SUFFIX,
)
from napari_uamc._napari.surfaces import Surfaces


@dataclass
class CaseFiles:
    """What opening a study case reads: done in a worker, so napari never waits on the disk."""

    case: str
    volume: Any  # data.volume.Volume
    image_layer: tuple  # (data, kwargs, "image"), its contrast limits computed
    prediction: dict[str, Any] | None
    draft: Any
    accepted: Any
    #: the saved prediction's regions and disagreement (saved_prediction.SavedOutcome), or None
    saved: Any = None
    #: the slice the case opens at (napari's slider index): see :func:`middle_slice`; None: left as it is
    middle_slice: int | None = None

    @property
    def shown(self) -> Any:
        """The label the case's segmentation layer shows: its draft, accepted label or prediction."""
        return self.draft or self.accepted or (self.prediction["seg"] if self.prediction else None)


def warm_up() -> None:
    """Import in the background what the first case and the first Segment would otherwise import
    on the GUI thread (seconds here: napari's layer modules and their tables, torch)."""
    warm_up_layers()
    import napari_uamc.engine.inference  # noqa: F401 (torch)


def warm_up_layers() -> None:
    """The napari part of :func:`warm_up` (no torch): layer modules, pandas, OpenGL arrays, and a
    unit registry for napari's first layer (see :mod:`napari_uamc._napari.unit_registry`)."""
    # imports only (the import lock makes them safe in a thread); no layer is made here: napari's
    # lazily built unit registry is not safe to build from two threads at once
    import napari.layers  # noqa: F401
    import scipy.spatial.transform  # noqa: F401 (napari's first 3D view: 0.4 s on the GUI thread)
    import skimage.measure  # noqa: F401 (the 3D surface, surfaces.py)
    from napari.components import histogram  # noqa: F401 (the image controls' histogram)

    try:  # what vispy's first texture upload and the first Labels layer (its features table) import
        import OpenGL.arrays.ctypesarrays  # noqa: F401
        import OpenGL.arrays.ctypespointers  # noqa: F401
        import OpenGL.arrays.nones  # noqa: F401
        import OpenGL.arrays.strings  # noqa: F401
        import pandas  # noqa: F401
    except ImportError:
        pass
    unit_registry.build_in_background()


def middle_slice(label: Any, volume: Any) -> int:
    """The slice a case opens at, as napari's slider counts (the displayed slice, canonical z):
    the middle of the extent of ``label`` (a canonical volume or array) along z, or the middle of
    ``volume`` when there is no label, an empty one, or one on another grid."""
    shape = np.shape(volume.array)
    array = None if label is None else np.asarray(getattr(label, "array", label))
    if array is not None and array.shape == shape:
        slices = np.flatnonzero(array.any(axis=(0, 1)))
        if slices.size:
            return int(slices[0] + slices[-1]) // 2
    return shape[2] // 2


def read_case(study: Any, case: str) -> CaseFiles:
    """Read a study case's image, prediction, draft and accepted label (no viewer, no Qt).

    Also does the work napari would do on the GUI thread when the layers are added: the image's
    contrast limits; and the first time, the imports napari's first layers need; and what the
    saved prediction allows (its uncertain regions, its disagreement map); and the slice the case
    opens at (:func:`middle_slice`: a scan of the whole label, about 20 ms for 640 x 640 x 88 voxels).
    """
    warm_up_layers()
    volume = study.read_image(case)
    prediction = study.read_prediction(case)
    draft = study.read_draft(case)
    accepted = study.read_label(case)
    image_layer = layer_io.image_layer_tuple(
        volume, name=case, case=case, metadata={layer_io.META_KEY: {layer_io.KEY_STUDY: str(study.root)}}
    )
    saved = None
    if prediction is not None:  # where to correct, from the saved maps (seconds on a big scan)
        info = study.case_info(case)
        saved = saved_outcome(prediction, volume.spacing, info.prediction_model, info.uncertainty)
    files = CaseFiles(case, volume, image_layer, prediction, draft, accepted, saved)
    files.middle_slice = middle_slice(files.shown, volume)
    return files


def _plain_transform(layer: Any) -> bool:
    """Whether a layer has no transform but its scale (as the panel makes them)."""
    ndim = layer.ndim
    return bool(np.allclose(layer.translate, 0) and np.allclose(layer.rotate, np.eye(ndim))
                and np.allclose(layer.shear, 0) and np.allclose(layer.affine.affine_matrix, np.eye(ndim + 1)))


#: The diameter of the ring that marks a region's focus (mm).
FOCUS_RING_MM = 6.0


class CaseLayers:
    """The panel's layers in one viewer."""

    def __init__(self, viewer: Any, runner: Any = None) -> None:
        from napari_uamc._napari.jobs import InlineRunner

        self.viewer = viewer
        #: the segmentations' 3D surfaces, made in the background when the 3D view needs them
        self.surfaces = Surfaces(viewer, runner or InlineRunner())
        #: segmentation layer name -> the model's prediction (canonical order), for changes and Dice
        self.baselines: dict[str, np.ndarray] = {}
        #: segmentation layer name -> the layer data the panel last put there or saved from it
        self._snapshots: dict[str, np.ndarray] = {}
        #: layer name -> its 2D settings that the 3D look changed (see styling.style_for_ndisplay)
        self._saved_2d: dict[str, dict[str, Any]] = {}
        #: painted segmentations set aside as layers of their own (never taken over by a next case)
        self._aside: set[str] = set()
        #: layers of a case left that the next case has no use for, hidden until removed
        self._left_over: list[Any] = []
        #: in 3D: the hidden segmentation the selection left and the layer standing in (weak refs)
        self._hidden_target: tuple[weakref.ref, weakref.ref | None] | None = None
        viewer.dims.events.ndisplay.connect(self._ndisplay_changed)

    def close(self) -> None:
        self.viewer.dims.events.ndisplay.disconnect(self._ndisplay_changed)

    # ------------------------------------------------------------------ lookups
    def get(self, name: str) -> Any:
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def image_layers(self) -> list[Any]:
        """Image layers a person can segment (not the panel's maps)."""
        from napari.layers import Image

        return [
            layer for layer in self.viewer.layers
            if isinstance(layer, Image) and not layer.name.endswith(MAP_SUFFIXES)
        ]

    def segmentation(self, image: str) -> Any:
        return self.get(image + SEGMENTATION_SUFFIX)

    def belongs_to(self, name: str, image: str) -> bool:
        return name == image or name.startswith(image + " ")

    # ------------------------------------------------------------------ edits
    def is_edited(self, image: str) -> bool:
        """Whether ``<image> segmentation`` holds voxels the panel did not put there.

        A layer the panel never filled (a person's own *New labels layer*) counts as edited as
        soon as it holds any label.
        """
        layer = self.segmentation(image)
        if layer is None:
            return False
        snapshot = self._snapshots.get(layer.name)
        data = np.asarray(layer.data)
        if snapshot is None:
            return bool(np.any(data))
        return snapshot.shape != data.shape or not np.array_equal(snapshot, data)

    def mark_saved(self, image: str) -> None:
        """The segmentation's current voxels are kept somewhere (a draft, an accepted label)."""
        layer = self.segmentation(image)
        if layer is not None:
            self._snapshots[layer.name] = np.array(layer.data, copy=True)

    def edited_canonical(self, image: str) -> np.ndarray:
        """The segmentation's voxels in canonical order (contiguous), for saving."""
        return np.ascontiguousarray(layer_io.layer_data_to_canonical(self.segmentation(image).data))

    def set_aside(self, image: str) -> str:
        """Rename ``<image> segmentation`` so a new one can take its place; returns the new name."""
        layer = self.segmentation(image)
        old = layer.name
        layer.name = f"{image} segmentation (your edit)"
        layer.editable = True
        self._aside.add(layer.name)
        self._snapshots.pop(old, None)
        self.baselines.pop(old, None)
        self._restore_2d(layer, old)  # no longer the case's segmentation: no 3D look either
        self.surfaces.forget(old)
        return layer.name  # napari makes it unique if that name is taken

    # ------------------------------------------------------------------ 2D and 3D looks
    def _roles(self) -> list[tuple[str, Any]]:
        """The panel's layers and the images they belong to, with their role in the 3D look."""
        roles: list[tuple[str, Any]] = []
        for layer in self.viewer.layers:
            name = layer.name
            if name.endswith(SEGMENTATION_SUFFIX):
                roles.append(("segmentation", layer))
                image = self.get(name[: -len(SEGMENTATION_SUFFIX)])
                if image is not None:
                    roles.append(("image", image))
            elif name.endswith(MAP_SUFFIXES) or PREVIEW_INFIX in name:  # hidden in 3D
                roles.append(("map", layer))
            elif name.endswith(SURFACE_SUFFIX):
                roles.append(("surface", layer))
        return roles

    def _ndisplay_changed(self, event: Any = None) -> None:
        styling.style_for_ndisplay(self._roles(), self.viewer.dims.ndisplay, self._saved_2d)
        if self.viewer.dims.ndisplay == 3:
            self._leave_hidden_segmentation()
            self.surfaces.refresh()  # lazily: only what changed since, in the background
        else:
            self._return_to_segmentation()

    def paint_into(self, layer: Any) -> None:
        """Make segmentation ``layer`` the active layer; in 3D, where it is hidden, its image
        stands in until the view is 2D again."""
        self.viewer.layers.selection.active = layer
        if self.viewer.dims.ndisplay == 3:
            self._leave_hidden_segmentation()

    def _leave_hidden_segmentation(self) -> None:
        """A hidden segmentation never stays the active layer (its paint tools would paint
        unseen): the selection moves to its image (the MRI, dimmed in 3D), or to nothing."""
        selection = self.viewer.layers.selection
        active = selection.active
        if active is None or active.visible or not active.name.endswith(SEGMENTATION_SUFFIX):
            return
        stand_in = self.get(active.name[: -len(SEGMENTATION_SUFFIX)])
        self._hidden_target = (weakref.ref(active), None if stand_in is None else weakref.ref(stand_in))
        selection.active = stand_in

    def _return_to_segmentation(self) -> None:
        """Back in 2D, the segmentation the 3D view hid is the active layer again, unless the
        person chose another layer meanwhile: it is when its image (what the panel chose in 3D,
        or the person looking at it), its surface (hidden in 2D) or nothing is active. By name
        too: a case opened in 3D may refill or replace the layers."""
        target, self._hidden_target = self._hidden_target, None
        if target is None:
            return
        segmentation, stand_in = target[0](), target[1] and target[1]()
        if segmentation is None or segmentation not in self.viewer.layers:
            return
        image = segmentation.name[: -len(SEGMENTATION_SUFFIX)]
        active = self.viewer.layers.selection.active
        if active is None or active is stand_in or active.name in (image, image + SURFACE_SUFFIX):
            self.viewer.layers.selection.active = segmentation

    def _restyle_3d(self) -> None:
        """A layer put while the viewer shows 3D takes the 3D look too."""
        if self.viewer.dims.ndisplay == 3:
            self._ndisplay_changed()

    # ------------------------------------------------------------------ putting layers
    def layer_kwargs(self, volume: Any, name: str, case: str) -> dict[str, Any]:
        return {
            "name": name,
            "scale": layer_io.display_scale(volume.spacing),
            "metadata": {layer_io.META_KEY: layer_io.volume_metadata(volume, case=case)},
        }

    def _set_layer(self, name: str, data: np.ndarray, kind: str, kwargs: dict[str, Any]) -> Any:
        unit_registry.install()
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            for key in ("scale", "metadata"):
                setattr(layer, key, kwargs[key])
            return layer
        if kind == "labels":
            return self.viewer.add_labels(data, **kwargs)
        # limits given at once: napari would otherwise scan the whole volume for them
        return self.viewer.add_image(data, contrast_limits=(0.0, 1.0), **kwargs)

    @contextmanager
    def _active_kept(self) -> Iterator[None]:
        """Adding a helper layer leaves the active layer as it was (napari activates new layers)."""
        selection = self.viewer.layers.selection
        before = selection.active
        try:
            yield
        finally:
            if before is not None and before in self.viewer.layers:
                selection.active = before

    def put_segmentation(self, image: str, volume: Any, label: np.ndarray,
                         *, baseline: np.ndarray | None) -> Any:
        """Show ``label`` (canonical) as ``<image> segmentation`` and make it the painting target."""
        name = image + SEGMENTATION_SUFFIX
        kwargs = self.layer_kwargs(volume, name, image)
        data = np.ascontiguousarray(layer_io.volume_to_layer_data(np.asarray(label, dtype=np.uint8)))
        layer = self._set_layer(name, data, "labels", kwargs)
        styling.style_segmentation(layer)
        if baseline is not None:
            self.baselines[name] = np.array(baseline, dtype=np.uint8, copy=True)
        self._snapshots[name] = np.array(layer.data, copy=True)
        self.viewer.layers.selection.active = layer
        self._restore_2d(layer)
        self._restyle_3d()  # in 3D: hidden, its image stands in as the active layer
        return layer

    def _restore_2d(self, layer: Any, name: str | None = None) -> None:
        """Put back the 2D settings the 3D look changed (before the layer is restyled or renamed)."""
        for key, value in self._saved_2d.pop(name or layer.name, {}).items():
            setattr(layer, key, value)

    def put_maps(self, image: str, volume: Any, sdf: np.ndarray, uncertainty: np.ndarray) -> None:
        self.put_sdf(image, volume, sdf)
        self.put_uncertainty(image, volume, uncertainty)

    def put_sdf(self, image: str, volume: Any, sdf: np.ndarray) -> Any:
        return self._put_map(image, SDF_SUFFIX, volume, sdf, lambda layer: styling.style_sdf(layer, sdf))

    def put_uncertainty(self, image: str, volume: Any, uncertainty: np.ndarray) -> Any:
        return self._put_map(image, UNCERTAINTY_SUFFIX, volume, uncertainty,
                             lambda layer: styling.style_uncertainty(layer, uncertainty))

    def put_disagreement(self, image: str, volume: Any, disagreement: np.ndarray) -> Any:
        return self._put_map(image, DISAGREEMENT_SUFFIX, volume, disagreement, styling.style_disagreement)

    def _put_map(self, image: str, suffix: str, volume: Any, array: np.ndarray,
                 style: Callable[[Any], None]) -> Any:
        """Put one of ``image``'s maps on screen (refilled or added), styled by ``style(layer)``,
        without taking the active layer, and with the 3D look when the viewer shows 3D."""
        name = image + suffix
        with self._active_kept():
            layer = self._set_layer(name, layer_io.volume_to_layer_data(array), "image",
                                    self.layer_kwargs(volume, name, image))
            style(layer)
            self._saved_2d.pop(name, None)
            self._restyle_3d()
        return layer

    def put_changes(self, image: str, volume: Any, changes: np.ndarray) -> Any:
        return self.put_labels_view(image, CHANGES_SUFFIX, volume, changes, styling.style_changes)

    def put_labels_view(self, image: str, suffix: str, volume: Any, labels: np.ndarray,
                        style: Callable[[Any], None]) -> Any:
        """Put ``labels`` (canonical) as ``<image><suffix>``, a labels layer on the image's grid that
        shows something (``style`` makes it not editable), without taking the active layer."""
        name = image + suffix
        with self._active_kept():
            layer = self._set_layer(name, np.ascontiguousarray(layer_io.volume_to_layer_data(labels)),
                                    "labels", self.layer_kwargs(volume, name, image))
            style(layer)
            self._saved_2d.pop(name, None)
            self._restyle_3d()  # a preview put in 3D is hidden there too
        return layer

    def case_steps(self, files: CaseFiles, previous: str | None = None) -> list[Any]:
        """Putting an opened case's layers on screen, one layer a step (see jobs.in_turns).

        The layers of the ``previous`` case (still on screen) are taken over and refilled where
        the new case has the same layer (see :meth:`take_over`).
        """
        case, volume, prediction, shown = files.case, files.volume, files.prediction, files.shown
        data, kwargs, _ = files.image_layer
        refilled = {"": "Image"}
        if prediction:
            refilled.update({UNCERTAINTY_SUFFIX: "Image", SDF_SUFFIX: "Image"})
        if shown is not None:
            refilled[SEGMENTATION_SUFFIX] = "Labels"
        steps = [lambda: self.go_to_slice(self.put_image(data, kwargs), files.middle_slice)]
        if prediction:
            steps.append(lambda: self.put_uncertainty(case, volume, prediction["uncertainty"].array))
            steps.append(lambda: self.put_sdf(case, volume, prediction["sdf"].array))
        if shown is not None:
            baseline = prediction["seg"].array if prediction else None
            steps.append(lambda: self.put_segmentation(case, volume, shown.array, baseline=baseline))
        if previous is not None:
            # in a turn of their own (napari collects garbage then), and before the image is
            # refilled: removing layers after a refill crashed software OpenGL (Mesa) at the next draw
            steps[:0] = [lambda: self.take_over(previous, case, refilled), self.remove_left_over]
        return steps

    def result_steps(self, image: str, volume: Any, result: Any) -> list[Any]:
        """Putting a Segment's maps and label on screen, one layer a step (see jobs.in_turns)."""
        sdf = result.sdf if result.sdf.ndim == 3 else result.sdf[0]
        return [lambda: self.put_uncertainty(image, volume, result.uncertainty),
                lambda: self.put_sdf(image, volume, sdf),
                lambda: self.put_segmentation(image, volume, result.label, baseline=result.label)]

    def put_image(self, data: np.ndarray, kwargs: dict[str, Any]) -> Any:
        """Show a case's image (``image_layer_tuple``'s data and kwargs): refill the layer of that
        name if there is one (napari builds no new layer controls then), else add it."""
        name = kwargs["name"]
        layer = self.get(name)
        if layer is None:
            unit_registry.install()
            return self.viewer.add_image(data, **kwargs)
        layer.data = data
        for key in ("scale", "contrast_limits", "colormap", "metadata"):
            setattr(layer, key, kwargs[key])
        return layer

    def take_over(self, old: str, new: str, refilled: dict[str, str]) -> None:
        """The next case ``new`` takes over the layers of the closed case ``old``: a layer it also
        has (``refilled``: name suffix -> layer type) is renamed, to be refilled, when the panel
        made it as it is (identity transform but for scale); the others are hidden now and go
        later, in one batch (:meth:`remove_left_over`). Layers set aside (a painted segmentation
        kept as a layer) stay. Refilling a layer costs napari less than adding one (no new layer
        controls), and removing layers costs a full garbage collection per batch (0.1-0.2 s), so
        it gets an event-loop turn of its own."""
        layers = self.viewer.layers
        clash = old != new and any(self.belongs_to(layer.name, new) for layer in layers)
        for layer in list(layers):
            name = layer.name
            if not self.belongs_to(name, old) or name in self._aside:
                continue
            suffix = name[len(old):]
            saved_2d = self._saved_2d.get(name)
            self._forget(name)
            if not clash and refilled.get(suffix) == type(layer).__name__ and _plain_transform(layer):
                layer.name = new + suffix
                if saved_2d is not None:  # its 3D look goes with it
                    self._saved_2d[layer.name] = saved_2d
            else:
                layer.visible = False
                self._left_over.append(layer)

    def remove_left_over(self) -> None:
        """Remove, in one batch, the layers :meth:`take_over` left hidden (those still in the viewer)."""
        left, self._left_over = self._left_over, []
        layers = self.viewer.layers
        if not any(layer in layers for layer in left):
            return  # a batch costs napari a garbage collection even when it removes nothing
        batch = getattr(layers, "batched_update", nullcontext)
        with batch():
            for layer in left:
                if layer in layers:
                    layers.remove(layer)

    def displayed_focus(self, image: str, region: Any) -> tuple[int, int, int] | None:
        """A region's focus voxel as napari shows the image's voxels: (slice, row, column)."""
        layer = self.get(image)
        if layer is None:
            return None
        return layer_io.displayed_index(region.focus, layer_io.layer_data_to_canonical(layer.data).shape)

    def remove(self, name: str) -> None:
        """Remove layer ``name`` and forget what the panel kept about it (see :meth:`_forget`)."""
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        self._forget(name)

    def remove_all_of(self, image: str) -> None:
        """Remove the image layer and every layer named after it.

        In one batch where napari offers it: napari runs a full garbage collection after each
        removal (about 250 ms here), once per batch.
        """
        batch = getattr(self.viewer.layers, "batched_update", nullcontext)
        with batch():
            self._remove_all_of(image)

    def _remove_all_of(self, image: str) -> None:
        for name in [layer.name for layer in self.viewer.layers]:
            if self.belongs_to(name, image):
                self.viewer.layers.remove(name)
                self._forget(name)

    def _forget(self, name: str) -> None:
        """Drop what the panel kept about layer ``name`` (its snapshot, baseline, 2D look, surface)."""
        self._snapshots.pop(name, None)
        self.baselines.pop(name, None)
        self._saved_2d.pop(name, None)
        self.surfaces.forget(name)

    # ------------------------------------------------------------------ navigation
    @staticmethod
    def world_point(layer: Any, canonical: Any) -> list[float]:
        """The world coordinates of a canonical voxel index ``(x, y, z)`` of an image layer."""
        shape = layer_io.layer_data_to_canonical(layer.data).shape
        displayed = layer_io.displayed_index(canonical, shape)
        return [index * scale + offset for index, scale, offset in zip(displayed, layer.scale, layer.translate)]

    def mark_focus(self, image: str, world: list[float]) -> Any:
        """Mark a *Where to correct* region's focus (world coordinates, mm) with one ring in
        ``<image> region focus``: a Points layer that is never the active layer nor editable,
        and goes with the case's other layers."""
        name = image + FOCUS_SUFFIX
        with self._active_kept():
            layer = self.get(name)
            if layer is None:
                unit_registry.install()
                layer = self.viewer.add_points(
                    [world], name=name, symbol="ring", size=FOCUS_RING_MM, face_color="#ffd700",
                    border_width=0, opacity=0.9, out_of_slice_display=False)
            else:
                layer.data = np.asarray([world], dtype=float)
            layer.editable = False
        return layer

    def clear_focus(self, image: str) -> None:
        """Take the ring off ``<image> region focus`` (a new Segment lists other regions). The
        layer stays, empty, for the next click: removing it costs napari a garbage collection on
        the GUI thread, and it goes with the case's other layers."""
        layer = self.get(image + FOCUS_SUFFIX)
        if layer is not None and len(layer.data):
            layer.data = np.empty((0, layer.ndim), dtype=float)

    def go_to_slice(self, layer: Any, index: int | None) -> None:
        """Put the slider at slice ``index`` of image ``layer`` (None: leave it): a newly opened case
        starts at the middle of its segmentation (:func:`middle_slice`, found in the worker that
        read its files), not at the previous case's slice number, which napari keeps as the layers
        are reused. :meth:`case_steps` calls it in the image's own turn, right after the refill:
        the layers refilled in the next turns are sliced there once, and no last turn re-slices
        every layer of the case (that cost up to 170 ms, docs/benchmarks.md)."""
        if index is None:
            return
        point = list(self.viewer.dims.point)
        point[-3] = index * float(layer.scale[0]) + float(layer.translate[0])
        self.viewer.dims.point = point

    def jump_to(self, world: list[float], fit: Any = None) -> None:
        """Move the slider to a world point's slice, the whole scan staying in view.

        In 2D the camera is kept (the person's zoom and pan) when the point is on the canvas;
        otherwise the view fits the layers ``fit`` (all layers when None), as napari's *home*
        button does. It no longer centres the camera on the point: at the zoom that fits the
        scan, that pushed part of the scan off the canvas, behind the panel, and left half the
        canvas black. The scan whole on the canvas matters more than the point in its middle.
        In 3D every slice shows and the camera is left alone.
        """
        viewer = self.viewer
        step = list(viewer.dims.point)
        step[-3:] = world
        viewer.dims.point = step
        if viewer.dims.ndisplay != 2:
            return
        scene = getattr(viewer, "scene", None)  # napari >= 0.9 keeps the camera in the scene
        camera = scene.camera if scene is not None else viewer.camera
        canvas = getattr(viewer, "canvas", None)  # the canvas in pixels, (height, width)
        if hasattr(canvas, "viewbox_size"):  # napari >= 0.9: one grid cell's when in grid mode
            size = canvas.viewbox_size(viewer.layers)
        else:
            size = getattr(canvas, "size", None) or viewer._canvas_size
        point = np.array([step[axis] for axis in viewer.dims.displayed], dtype=float)
        half = np.asarray(size[-2:], dtype=float) / (2.0 * camera.zoom)  # world units, (row, column)
        if np.all(np.abs(point - np.asarray(camera.center[-2:], dtype=float)) <= 0.9 * half):
            return  # on the canvas (not at its very edge): the view stays as the person left it
        fit_to_view = getattr(viewer, "fit_to_view", None)  # napari >= 0.9 fits given layers
        if fit_to_view is not None:
            fit_to_view(layers=fit)
        else:
            viewer.reset_view()
