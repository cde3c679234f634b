"""The packaged default model segments real left-atrium MRI it never trained on.

A check of seconds, not a benchmark (``benchmarks/bench_real_model.py`` scores all 16 held-out
scans): the last 3 of the LA 2018 ``train.list`` (part of ``la2018-val16``; the model trained on
the first 64), read from ../shared/data/la2018 beside the clone.
"""

from __future__ import annotations

import numpy as np

from _helpers import LA2018, la2018_cases, requires_la2018
from napari_uamc.data.io import read_h5_case
from napari_uamc.data.metrics import dice
from napari_uamc.engine.checkpoint import default_model_path, load_checkpoint
from napari_uamc.engine.inference import InferenceConfig, segment_volume

#: Floors well under what the model scores (0.92, 0.87, 0.78 on these three; 0.89 over all 16),
#: and far above a model that does not know the atrium (the phantom model: about 0.04).
CASE_FLOOR, MEAN_FLOOR = 0.70, 0.80


@requires_la2018
def test_packaged_model_segments_held_out_real_scans():
    model, meta = load_checkpoint(default_model_path())
    assert meta.class_names == ["background", "left atrium"] and not meta.synthetic_only
    held_out = la2018_cases()[-3:]
    trained_on = set(meta.history[-1]["labeled"])
    assert not trained_on & set(held_out) and len(trained_on) == 64  # never trained on them
    scores = []
    for case in held_out:
        image, label = read_h5_case(LA2018 / case / "mri_norm2.h5")
        result = segment_volume(model, meta, image, InferenceConfig(mc_samples=0, device="cpu"))
        assert result.label.shape == image.shape  # back on the scan's own 0.625 mm grid
        scores.append(dice(result.label > 0, label.array > 0))
    assert min(scores) >= CASE_FLOOR, scores
    assert float(np.mean(scores)) >= MEAN_FLOOR, scores


def test_packaged_model_file_is_small_enough_to_ship():
    assert default_model_path().stat().st_size <= 25 * 1024**2
