"""napari-uamc: semi-supervised 3D segmentation (UG-MCL) for napari and the command line.

Importing the package is cheap: torch is only imported by :mod:`napari_uamc.engine`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
