"""napari's unit registry is built in a worker and handed to pint on the GUI thread (issue 12 part 9)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pint = pytest.importorskip("pint")

from pint.registry import LazyRegistry  # noqa: E402

from napari_uamc._napari import unit_registry  # noqa: E402


@pytest.fixture
def unused_registry(monkeypatch):
    """pint's application registry as a fresh napari process has it: lazy, never used."""
    lazy = LazyRegistry()
    monkeypatch.setattr(pint.get_application_registry(), "_registry", lazy)
    monkeypatch.setattr(unit_registry, "_built", None)
    return lazy


def test_built_in_a_worker_without_touching_the_registry_in_use(unused_registry):
    worker = threading.Thread(target=unit_registry.build_in_background)
    worker.start()
    worker.join()
    assert type(unused_registry) is LazyRegistry  # the worker never built pint's own (not thread-safe)
    assert pint.get_application_registry().get() is unused_registry
    assert unit_registry.install()
    installed = pint.get_application_registry().get()
    assert installed is not unused_registry and type(installed) is pint.UnitRegistry
    assert not unit_registry.install()  # once

    from napari.components import ViewerModel

    layer = ViewerModel().add_image(np.zeros((2, 3, 4), dtype=np.float32), scale=(2.5, 0.625, 0.625))
    assert all(unit == installed.pixel for unit in layer.units)  # napari's units come from it


def test_a_registry_already_in_use_is_never_replaced(unused_registry):
    unit_registry.build_in_background()
    assert unused_registry.pixel is not None  # something used pint's lazy registry first (it builds itself)
    assert type(unused_registry) is not LazyRegistry
    assert not unit_registry.install()
    assert pint.get_application_registry().get() is unused_registry


def test_nothing_is_built_once_the_registry_is_in_use(unused_registry):
    assert unused_registry.pixel is not None
    unit_registry.build_in_background()
    assert unit_registry._built is None
