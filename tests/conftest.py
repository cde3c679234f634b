"""Fixtures shared by the test modules (plain helpers live in ``_helpers.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: one thread is faster, and immune to other processes on a shared CPU.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session", autouse=True)
def fixed_cpu_precision(tmp_path_factory) -> Iterator[None]:
    """The suite's own cache folder, with ``auto`` precision fixed to float32.

    ``auto`` normally times float32 against bfloat16 once per machine; a timing can come out
    either way on a loaded machine, so the tests pin it (the measurement has its own tests, and
    bfloat16 training has its own). float32, not the CPU's choice: on an AMD EPYC with
    AVX512-BF16 the tiny random networks of the tests reached NaN losses in bfloat16 in some runs
    and not others (3 of 4 fresh-clone CI runs failed a different test each).
    Set in ``os.environ`` so the subprocesses that tests start see the same folder.
    """
    import json
    import os

    from napari_uamc._cache import CACHE_ENV
    from napari_uamc.engine.device import PRECISION_CACHE_FILE, machine_key

    folder = tmp_path_factory.mktemp("uamc-cache")
    (folder / PRECISION_CACHE_FILE).write_text(json.dumps({machine_key(): {"choice": "float32"}}))
    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield
    if previous is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = previous
