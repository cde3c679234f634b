"""The model outputs of a study's cases: ``.uamc/predictions/<case>_{seg,sdf,uncertainty}.nii.gz``,
and ``<case>_disagreement.nii.gz`` when the heads' disagreement was given (the panel gives it).

:class:`~napari_uamc.data.study.facade.Study` keeps the public methods (``save_prediction``,
``read_prediction``); they call the functions here with themselves as ``study``. The maps are
written on the image's exact grid and affine: ``seg`` as uint8 class indices, ``sdf`` and
``uncertainty`` as float32 rounded to 1e-4 (:func:`~napari_uamc.data.io.rounded_map`), the
disagreement (0..1, shown from 0.15 up) to ``DISAGREEMENT_STEP``, so it compresses to little.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_uamc.data._study_files import writing
from napari_uamc.data.io import read_label as read_label_file
from napari_uamc.data.io import read_volume, rounded_map, write_volumes
from napari_uamc.data.study.checks import (
    _PREDICTION_DTYPES,
    _float_map,
    _integer_label_array,
    _uncertainty_value,
)
from napari_uamc.data.study.history import _iso, _utc_now
from napari_uamc.data.study.state import _new_case_entry
from napari_uamc.data.volume import Volume
from napari_uamc.errors import InputError

#: The :class:`~napari_uamc.data.study.facade.Study` that calls in (not imported: the facade
#: imports this module, and the import graph has no circles).
_Study = Any

#: The saved disagreement map is rounded to this step (a display map: 0.15 to 0.6 is what shows).
DISAGREEMENT_STEP = 0.01


def save_prediction(
    study: _Study,
    case: str,
    seg: np.ndarray | Volume,
    sdf: np.ndarray | Volume,
    uncertainty: np.ndarray | Volume,
    *,
    uncertainty_score: float | None,
    model_version: str | None,
    disagreement: np.ndarray | Volume | None = None,
) -> dict[str, Path]:
    """:meth:`Study.save_prediction`: write the three maps (and the disagreement, if given; an
    older one is removed otherwise, so it never outlives its prediction) and mark the case predicted."""
    study._require_writable()
    image = study.read_image(case)
    seg_array = _integer_label_array(seg, image, f"segmentation for case {case!r}")
    seg_max = np.iinfo(_PREDICTION_DTYPES["seg"]).max
    if seg_array.size and int(seg_array.max()) > seg_max:
        raise InputError(f"segmentation for case {case!r} has values above {seg_max}")
    arrays = {
        "seg": seg_array,
        "sdf": rounded_map(_float_map(sdf, image, f"signed distance map for case {case!r}")),
        "uncertainty": rounded_map(_float_map(uncertainty, image, f"uncertainty map for case {case!r}")),
    }
    score = _uncertainty_value(uncertainty_score, case)
    paths = dict(study.prediction_paths(case))
    dtypes = dict(_PREDICTION_DTYPES)
    disagreement_path = study.layout.optional_prediction_files(case)["disagreement"]
    if disagreement is not None:
        what = f"disagreement map for case {case!r}"
        arrays["disagreement"] = rounded_map(_float_map(disagreement, image, what), DISAGREEMENT_STEP)
        paths["disagreement"], dtypes["disagreement"] = disagreement_path, np.float32
    with writing("write the prediction of", study.predictions_dir):
        study.predictions_dir.mkdir(exist_ok=True)
        if disagreement is None:
            disagreement_path.unlink(missing_ok=True)
        write_volumes((paths[kind], array, image, dtypes[kind]) for kind, array in arrays.items())
    now = _iso(_utc_now())
    with study._editing_state() as state:
        entry = state["cases"].setdefault(case, _new_case_entry())
        entry.update(
            status=study.status(case).value,
            updated=now,
            predicted_at=now,
            prediction_model=model_version,
        )
        if score is not None:
            entry["uncertainty"] = score
    return paths


def read_prediction(study: _Study, case: str) -> dict[str, Volume] | None:
    """:meth:`Study.read_prediction`: the three maps on the image's grid (and ``disagreement``
    when it was saved), or ``None``."""
    if not study.has_prediction(case):
        return None
    image = study.read_image(case)
    paths = study.prediction_paths(case)
    result = {"seg": read_label_file(paths["seg"], like=image)}
    optional = study.layout.optional_prediction_files(case)
    paths.update({kind: path for kind, path in optional.items() if path.is_file()})
    for kind in ("sdf", "uncertainty", *(kind for kind in optional if kind in paths)):
        volume = read_volume(paths[kind])
        image.require_same_grid(volume)
        result[kind] = volume
    return result
