"""How the layers the panel makes look: names, colormaps, contrast, opacity, blending.

The one place that decides the appearance of a case's layers. No Qt; napari layer objects only.

==========================  ======  ====================================================
layer                       kind    look
==========================  ======  ====================================================
``<image> segmentation``    Labels  half transparent, the one layer a person paints on
``<image> SDF``             Image   diverging blue-white-red, symmetric limits (white = the
                                    predicted surface); hidden at first
``<image> uncertainty``     Image   inferno, added over the MRI; near-certain voxels black
``<image> disagreement``    Image   magma, added over the MRI, 0 to 1
``<image> changes``         Labels  1 added, 2 removed, 3 relabelled; not editable
==========================  ======  ====================================================

The last four are *helper* layers: views of the model's output, never a painting target.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Suffixes of the layers the panel makes for an image called ``<image>``.
SEGMENTATION_SUFFIX = " segmentation"
SDF_SUFFIX = " SDF"
UNCERTAINTY_SUFFIX = " uncertainty"
DISAGREEMENT_SUFFIX = " disagreement"
CHANGES_SUFFIX = " changes"
#: Layers that show the model's output or a comparison: never active, never painted.
HELPER_SUFFIXES = (SDF_SUFFIX, UNCERTAINTY_SUFFIX, DISAGREEMENT_SUFFIX, CHANGES_SUFFIX)
#: Image layers the panel makes (not images a person can segment).
MAP_SUFFIXES = (SDF_SUFFIX, UNCERTAINTY_SUFFIX, DISAGREEMENT_SUFFIX)

#: Uncertainty below this fraction of ln 2 shows black, so the MRI is not tinted where the model is sure.
UNCERTAINTY_DISPLAY_FLOOR = 0.05
SEGMENTATION_OPACITY = 0.5
UNCERTAINTY_OPACITY = 0.8


def is_helper(name: str) -> bool:
    """Whether a layer name is one of the panel's helper layers (see the module docstring)."""
    return name.endswith(HELPER_SUFFIXES)


def sdf_colormap() -> Any:
    from napari.utils.colormaps import Colormap

    return Colormap(
        [[0.13, 0.40, 0.67, 1.0], [0.97, 0.97, 0.97, 1.0], [0.70, 0.09, 0.17, 1.0]],
        name="uamc_sdf_diverging",
    )


def style_segmentation(layer: Any) -> None:
    layer.opacity = SEGMENTATION_OPACITY
    layer.editable = True


def style_sdf(layer: Any, sdf: np.ndarray) -> None:
    limit = float(np.max(np.abs(sdf))) if sdf.size else 0.0
    limit = limit or 1.0
    layer.colormap = sdf_colormap()
    layer.contrast_limits = (-limit, limit)
    layer.visible = False


def style_uncertainty(layer: Any, uncertainty: np.ndarray) -> None:
    layer.colormap = "inferno"
    layer.blending = "additive"
    layer.opacity = UNCERTAINTY_OPACITY
    top = float(np.percentile(uncertainty, 99.9)) if uncertainty.size else 0.0
    floor = UNCERTAINTY_DISPLAY_FLOOR * math.log(2)  # near-certain voxels stay black (no tint)
    layer.contrast_limits = (floor, max(top, 2 * floor))


def style_disagreement(layer: Any) -> None:
    layer.colormap = "magma"
    layer.blending = "additive"
    layer.contrast_limits = (0.0, 1.0)


def style_changes(layer: Any) -> None:
    # a view, never a painting target: painting stays on the segmentation, which Accept saves
    layer.editable = False
