"""BatchNorm recalibration: re-estimate running statistics on patches of the images at hand.

Used by the fine-tune (:mod:`napari_uamc.engine.finetune`) after training on few cases, whose
running statistics drift from the images the model will segment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from napari_uamc.engine.augment import padding_for
from napari_uamc.engine.device import autocast


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    images: Sequence[np.ndarray],
    patch: Sequence[int],
    *,
    batch_size: int = 2,
    patches_per_image: int = 2,
    seed: int = 0,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    channels_last: bool = True,
    should_stop: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Re-estimate every BatchNorm's running statistics on random patches of ``images``.

    ``images``: z-scored float arrays ``[X, Y, Z]`` (any size; smaller than ``patch`` is
    zero-padded); ``patch``: ``(x, y, z)`` in voxels; ``patches_per_image`` crops are drawn from
    each image with ``seed``, run ``batch_size`` at a time under autocast to ``dtype``.
    The statistics are reset and then averaged cumulatively (``momentum=None``) over all
    patches, with dropout off (as at inference) and no gradients; the model ends in eval mode
    on ``device``.
    ``progress(done, total)`` is called after each batch, in patches.
    ``should_stop()`` is checked before each batch: once it is true no further batch runs (the
    statistics stay the average over the batches done; none done: the model's own statistics).
    Returns the number of patches used (0 when the model has no BatchNorm or no image is given,
    or when stopped before the first batch).

    Raises:
        RuntimeError: from torch, e.g. out of memory on ``device``.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or not images:
        return 0
    device = torch.device(device)
    rng = np.random.default_rng(seed & 0xFFFFFFFFFFFFFFFF)
    crops = []
    for image in images:
        padded = np.pad(image, padding_for(image.shape, patch)) if any(
            s < p for s, p in zip(image.shape, patch)) else image
        for _ in range(patches_per_image):
            start = [int(rng.integers(s - p + 1)) for s, p in zip(padded.shape, patch)]
            window = tuple(slice(o, o + p) for o, p in zip(start, patch))
            crops.append(np.ascontiguousarray(padded[window], dtype=np.float32))
    if should_stop is not None and should_stop():
        return 0
    saved_momentum = [m.momentum for m in norms]
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    model.eval()
    for module in norms:
        module.reset_running_stats()
        module.momentum = None
        module.train()
    used = 0
    try:
        for start in range(0, len(crops), batch_size):
            if used and should_stop is not None and should_stop():
                break
            x = torch.from_numpy(np.stack(crops[start:start + batch_size])[:, None]).to(device)
            with autocast(device, dtype):
                model(x.contiguous(memory_format=memory_format))
            used += x.shape[0]
            if progress is not None:
                progress(used, len(crops))
    finally:
        for module, momentum in zip(norms, saved_momentum):
            module.momentum = momentum
        model.to(memory_format=torch.contiguous_format)
        model.eval()
    return used
