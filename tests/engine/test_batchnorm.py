"""BatchNorm recalibration: running statistics averaged over every patch, momentum restored."""

from __future__ import annotations

import numpy as np
import torch

from napari_uamc.engine.batchnorm import recalibrate_batchnorm
from napari_uamc.engine.model import DualTaskVNet


def test_batchnorm_recalibration_averages_over_all_patches():
    torch.manual_seed(0)
    model = DualTaskVNet(width=2)
    images = [np.random.default_rng(i).normal(i, 1.0, (20, 18, 16)).astype(np.float32) for i in range(3)]
    count = recalibrate_batchnorm(model, images, (16, 16, 16), batch_size=2, patches_per_image=2, seed=4)
    assert count == 6 and not model.training
    first = model.encoder[0][0]
    recorded = first.norm.running_mean.clone()
    # the same patches again: the first layer's mean over all of them, whatever came before
    rng = np.random.default_rng(4)
    crops = []
    for image in images:
        for _ in range(2):
            start = [int(rng.integers(s - p + 1)) for s, p in zip(image.shape, (16, 16, 16))]
            crops.append(image[tuple(slice(o, o + 16) for o in start)])
    with torch.no_grad():
        conv = first.conv(torch.from_numpy(np.stack(crops)[:, None]))
    torch.testing.assert_close(recorded, conv.mean(dim=(0, 2, 3, 4)), rtol=1e-4, atol=1e-5)
    assert first.norm.momentum == 0.1  # restored
