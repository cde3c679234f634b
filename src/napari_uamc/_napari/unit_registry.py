"""napari's unit registry, built in a worker instead of on napari's GUI thread.

napari asks pint's application registry for units when it makes its first layer, and pint builds
that registry on first use: about 0.6 s of parsing unit definitions, on the GUI thread, as a
stall of the first case opened. A worker builds a registry of its own here
(:func:`build_in_background`) and the GUI thread hands it to pint (:func:`install`) before the
first layer, with pint's public ``set_application_registry``. pint's lazy registry is not safe to
build from two threads at once (it changes its class before it is filled), so the worker never
touches it, and :func:`install` only replaces a registry nobody has used yet.
"""

from __future__ import annotations

import threading
from typing import Any

_lock = threading.Lock()
_built: Any = None  # a pint.UnitRegistry, built by a worker, not yet handed to pint


def _unused(registry: Any) -> bool:
    """Whether ``registry`` is pint's lazy registry that nothing has used (so nothing holds its units)."""
    from pint.registry import LazyRegistry

    return type(registry) is LazyRegistry


def build_in_background() -> None:
    """Build a unit registry for :func:`install` if pint's application registry is still unused
    (any thread; the application registry itself is only read)."""
    global _built
    import pint

    with _lock:
        if _built is None and _unused(pint.get_application_registry().get()):
            # the settings pint's lazy registry would build itself with
            _built = pint.UnitRegistry(on_redefinition="raise")


def install() -> bool:
    """On the GUI thread: make the built registry pint's application registry if that one is
    still unused; returns whether it did."""
    import pint

    registry = _built
    if registry is None or not _unused(pint.get_application_registry().get()):
        return False
    pint.set_application_registry(registry)
    return True
