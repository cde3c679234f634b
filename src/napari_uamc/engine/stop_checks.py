"""Stop requests inside a training step: a fine-tune's Stop is honoured within a fraction of a
step (a step of the packaged model takes about 6 s on 2 busy CPU cores), not after it.

Used by :func:`napari_uamc.engine.finetune.finetune_study`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class StoppedInStep(Exception):
    """The stop request came in the middle of a training step: the step is abandoned before its
    optimizer update, so the weights stay those of the last whole step."""


def stop_checks(model: Any, should_stop: Callable[[], bool] | None) -> Callable[[], None]:
    """Check ``should_stop()`` at every block of ``model``'s forward passes (the student's and
    the teacher's, a deep copy made afterwards) and, through gradient hooks on the blocks'
    outputs, during the backward pass; it raises :class:`StoppedInStep`. A training step of the
    packaged model takes about 6 s on 2 busy CPU cores, too long to wait for after a Stop.
    Returns a function that disarms the checks (the hooks stay, doing nothing)."""
    armed = [should_stop is not None]

    def check(*_args: Any) -> None:
        if armed[0] and should_stop():  # type: ignore[misc]
            raise StoppedInStep("stopped in the middle of a training step")

    def after(module: Any, args: Any, output: Any) -> None:
        if armed[0] and getattr(output, "requires_grad", False):
            output.register_hook(check)  # returns None: the gradient is unchanged

    for name in ("encoder", "down", "up", "decoder"):
        for block in getattr(model, name, None) or []:
            block.register_forward_pre_hook(check)
            block.register_forward_hook(after)
    return lambda: armed.__setitem__(0, False)
