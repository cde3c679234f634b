"""How the layers the panel makes look: names, colormaps, contrast, opacity, blending.

The one place that decides the appearance of a case's layers. No Qt; napari layer objects only.
Every map is drawn *translucent* with an alpha colormap, never added: the MRI under it keeps its
grey levels, and what carries no information (certain voxels, heads that agree, the SDF far
from the surface) is transparent.

==========================  ======  ====================================================
layer                       kind    look
==========================  ======  ====================================================
``<image> segmentation``    Labels  blue, filled at 0.45 opacity in 2D; hidden in 3D
``<image> surface``         Surface in 3D only: the segmentation's boundary, opaque, the
                                    same blue, small islands left out (surfaces.py)
``<image> SDF``             Image   diverging, fixed limits -1..1 (the network's range):
                                    the zero level (the SDF head's surface) as an opaque
                                    yellow line in a transparent gap, a violet (inside) and
                                    red (outside) halo fading out; hidden at first
``<image> uncertainty``     Image   transparent below ``UNCERTAINTY_LEVEL`` (the level at
                                    which *Where to correct* counts a voxel), yellow to red
                                    and at most 70 % opaque above it; absolute limits
                                    (0 to ln C nats), so a model that is unsure everywhere
                                    looks unsure everywhere
``<image> disagreement``    Image   transparent below 0.15, magenta to white, up to 85 %
                                    opaque, limits 0 to 0.6
``<image> changes``         Labels  1 added, 2 removed, 3 relabelled; not editable
==========================  ======  ====================================================

In 3D (:func:`style_for_ndisplay`) the maps are hidden (a volume of them is a fog around the
surface), the segmentation's Labels layer gives way to its surface (a mesh draws in a tenth of
the time of a labels volume with software OpenGL, and leaves out stray islands) and the MRI is
dimmed to a faint context; back in 2D everything returns to how it was.

The last five are *helper* layers: views of the model's output, never a painting target.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_uamc.data.regions import DEFAULT_RELATIVE_THRESHOLD

#: Suffixes of the layers the panel makes for an image called ``<image>``.
SEGMENTATION_SUFFIX = " segmentation"
SDF_SUFFIX = " SDF"
UNCERTAINTY_SUFFIX = " uncertainty"
DISAGREEMENT_SUFFIX = " disagreement"
CHANGES_SUFFIX = " changes"
SURFACE_SUFFIX = " surface"
#: the focus of the *Where to correct* region last clicked: one ring, not editable
FOCUS_SUFFIX = " region focus"
#: Layers that show the model's output or a comparison: never active, never painted.
HELPER_SUFFIXES = (SDF_SUFFIX, UNCERTAINTY_SUFFIX, DISAGREEMENT_SUFFIX, CHANGES_SUFFIX, SURFACE_SUFFIX)
#: ``<image>`` + this + the version names an offered version's preview (offer_preview.py); hidden
#: in 3D, where a labels outline turns into a solid volume over the surface.
PREVIEW_INFIX = " preview "
#: Image layers the panel makes (not images a person can segment).
MAP_SUFFIXES = (SDF_SUFFIX, UNCERTAINTY_SUFFIX, DISAGREEMENT_SUFFIX)

#: Uncertainty shows from this fraction of the maximum entropy ln C up: the level at which the
#: *Where to correct* list counts a voxel as uncertain, so what is tinted is what is listed.
UNCERTAINTY_LEVEL = DEFAULT_RELATIVE_THRESHOLD
#: Kept for scripts that imported it: the old name of the level.
UNCERTAINTY_DISPLAY_FLOOR = UNCERTAINTY_LEVEL
UNCERTAINTY_MAX_ALPHA = 0.7
SEGMENTATION_OPACITY = 0.45
#: Head disagreement (0..1) shows from this level; saturates at DISAGREEMENT_TOP.
DISAGREEMENT_LEVEL = 0.15
DISAGREEMENT_TOP = 0.6
#: The SDF's zero level is drawn where |SDF| < this (the network's SDF is in -1..1).
SDF_ZERO_BAND = 0.06
#: The SDF's halo is most opaque at |SDF| = 0.5 and transparent within 0.1 and beyond 0.88 (on a real
#: LA scan half the volume is above 0.93: the network's SDF saturates a few mm from the surface).
SDF_HALO_ALPHA = 0.4
#: In 3D the MRI is a faint context behind the segmentation surface.
MRI_OPACITY_3D = 0.15

_TRANSPARENT = [0.0, 0.0, 0.0, 0.0]
_STEP = 1e-3  # width of a colormap's jump from transparent to visible


def is_helper(name: str) -> bool:
    """Whether a layer name is one of the panel's helper layers (see the module docstring)."""
    return name.endswith(HELPER_SUFFIXES)


def _colormap(name: str, controls: list[float], colors: list[list[float]]) -> Any:
    from napari.utils.colormaps import Colormap

    return Colormap(colors=np.asarray(colors, dtype=float), controls=np.asarray(controls, dtype=float), name=name)


def sdf_colormap() -> Any:
    """An opaque yellow zero level in a transparent gap, then a violet (inside) and red (outside)
    halo that is strongest a little way from the surface and fades out with distance: far from
    the structure the SDF says least (tanh-bounded, it saturates), so it no longer washes the
    scan red (a clinician-style try-out found it strongest where it says least)."""
    # inside: violet, not the segmentation's blue (a try-out could not tell the two apart)
    blue, red, line = [0.55, 0.25, 0.9], [0.85, 0.15, 0.15], [1.0, 0.9, 0.1, 1.0]
    half = SDF_ZERO_BAND / 2  # -1..1 maps to 0..1: a band of |sdf| < SDF_ZERO_BAND is +-half
    return _colormap(
        "uamc_sdf_diverging",
        [0.0, 0.06, 0.25, 0.45, 0.5 - half - 2 * _STEP, 0.5 - half, 0.5 + half, 0.5 + half + 2 * _STEP,
         0.55, 0.75, 0.94, 1.0],
        [blue + [0.0], blue + [0.0], blue + [SDF_HALO_ALPHA], blue + [0.0], blue + [0.0], line, line,
         red + [0.0], red + [0.0], red + [SDF_HALO_ALPHA], red + [0.0], red + [0.0]],
    )


def uncertainty_colormap() -> Any:
    """Transparent below UNCERTAINTY_LEVEL (of 0..1 = 0..ln C), then yellow to red, translucent."""
    level = UNCERTAINTY_LEVEL
    return _colormap(
        "uamc_uncertainty",
        [0.0, level - _STEP, level, 1.0],
        [_TRANSPARENT, _TRANSPARENT, [1.0, 0.95, 0.2, 0.35], [0.95, 0.1, 0.05, UNCERTAINTY_MAX_ALPHA]],
    )


def disagreement_colormap() -> Any:
    """Transparent below DISAGREEMENT_LEVEL (of 0..DISAGREEMENT_TOP), then magenta to white."""
    level = DISAGREEMENT_LEVEL / DISAGREEMENT_TOP
    return _colormap(
        "uamc_disagreement",
        [0.0, level - _STEP, level, 1.0],
        [_TRANSPARENT, _TRANSPARENT, [1.0, 0.1, 0.9, 0.55], [1.0, 0.85, 1.0, 0.85]],
    )


#: The structure's colour (label 1): a blue that neither the MRI's greys nor the warm uncertainty use.
SEGMENTATION_COLOR = (0.15, 0.6, 1.0, 1.0)
#: Any other label a person paints.
OTHER_LABEL_COLOR = (0.2, 0.9, 0.3, 1.0)
#: An offered version's preview: an orange outline this many voxels wide (offer_preview.py).
PREVIEW_COLOR = (1.0, 0.6, 0.0, 1.0)
PREVIEW_CONTOUR = 1


def segmentation_colormap() -> Any:
    from napari.utils.colormaps import DirectLabelColormap

    return DirectLabelColormap(color_dict={None: list(OTHER_LABEL_COLOR), 0: _TRANSPARENT,
                                           1: list(SEGMENTATION_COLOR)})


def style_segmentation(layer: Any) -> None:
    layer.colormap = segmentation_colormap()
    layer.opacity = SEGMENTATION_OPACITY
    layer.editable = True
    layer.blending = "translucent"


def style_sdf(layer: Any, sdf: np.ndarray) -> None:
    del sdf  # fixed limits: the network's SDF is tanh-bounded, so -1..1 means the same in every case
    layer.colormap = sdf_colormap()
    layer.contrast_limits = (-1.0, 1.0)
    layer.blending = "translucent"
    layer.opacity = 1.0
    layer.visible = False


def style_uncertainty(layer: Any, uncertainty: np.ndarray, n_classes: int = 2) -> None:
    del uncertainty  # absolute limits: the same colour means the same entropy in every case
    layer.colormap = uncertainty_colormap()
    layer.contrast_limits = (0.0, math.log(max(2, n_classes)))
    layer.blending = "translucent"
    layer.opacity = 1.0
    layer.visible = True


def style_disagreement(layer: Any) -> None:
    layer.colormap = disagreement_colormap()
    layer.contrast_limits = (0.0, DISAGREEMENT_TOP)
    layer.blending = "translucent"
    layer.opacity = 1.0
    layer.visible = True


def style_surface(layer: Any, *, shown: bool) -> None:
    """The 3D surface of a segmentation: opaque, the segmentation's blue, lit; shown only in 3D."""
    color = list(SEGMENTATION_COLOR)
    layer.colormap = _colormap("uamc_surface", [0.0, 1.0], [color, color])
    layer.contrast_limits = (0.0, 1.0)
    layer.shading = "smooth"
    layer.blending = "translucent"
    layer.opacity = 1.0
    layer.visible = shown


def style_changes(layer: Any) -> None:
    # a view, never a painting target: painting stays on the segmentation, which Accept saves
    layer.editable = False


def style_preview(layer: Any) -> None:
    """An offered version's preview (offer_preview.py): an orange outline, never painted."""
    from napari.utils.colormaps import DirectLabelColormap

    layer.colormap = DirectLabelColormap(color_dict={None: list(PREVIEW_COLOR), 0: _TRANSPARENT})
    layer.contour = PREVIEW_CONTOUR
    layer.opacity = 1.0
    layer.blending = "translucent"
    layer.editable = False


def style_for_ndisplay(roles: list[tuple[str, Any]], ndisplay: int, saved: dict[str, dict[str, Any]]) -> None:
    """Switch layers between their 2D and 3D looks.

    ``roles`` pairs a role (``"image"``, ``"segmentation"``, ``"surface"`` or ``"map"``) with a
    layer; ``saved`` (layer name -> settings) keeps the 2D settings the 3D look changed, to put
    them back in 2D. A surface shows in 3D only.
    """
    for role, layer in roles:
        if role == "surface":
            layer.visible = ndisplay == 3
    if ndisplay == 3:
        for role, layer in roles:
            if layer.name in saved or role == "surface":
                continue
            if role == "image":
                saved[layer.name] = {"opacity": layer.opacity}
                layer.opacity = MRI_OPACITY_3D
            elif role == "segmentation":  # its surface stands in for it (surfaces.py)
                saved[layer.name] = {"visible": layer.visible}
                layer.visible = False
            else:  # a map: a fog around the surface in 3D
                saved[layer.name] = {"visible": layer.visible}
                layer.visible = False
        return
    for _role, layer in roles:
        for key, value in saved.pop(layer.name, {}).items():
            setattr(layer, key, value)
    saved.clear()
