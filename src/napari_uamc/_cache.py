"""The plugin's cache folder (sample study, the measured CPU precision): standard library only."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_folder"]

#: Environment variable that overrides the plugin's cache folder.
CACHE_ENV = "NAPARI_UAMC_CACHE"


def cache_folder() -> Path:
    """``$NAPARI_UAMC_CACHE``, else ``$XDG_CACHE_HOME/napari-uamc`` (``~/.cache/napari-uamc``)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "napari-uamc"
