"""Segmenting a volume: sliding window, deterministic pass and MC-dropout uncertainty.

:func:`segment_volume` follows METHOD.md section 5:

1. z-score the image; resample it to the model's training spacing if it differs by more than
   the tolerance (ENGINEERING.md); zero-pad axes smaller than the window;
2. deterministic pass: slide a window of the training patch with the configured overlap (or use
   a few large tiles); per window the encoder runs once (eval mode) and the decoder once with
   dropout off (probabilities, SDF);
3. MC pass: T decodes with dropout on (norm layers in eval) that reuse one encoder pass per
   window. By default the samples are drawn on their own large tiles that cover the volume with
   little overlap, so every voxel gets T samples, as the method defines, at the least cost
   (the network is fully convolutional; a large window costs less per voxel than many
   overlapping patches);
4. blend the windows with Gaussian (or uniform) weights into float32 maps on the CPU;
   label = argmax of the deterministic probabilities; uncertainty = entropy (nats) of the mean
   of the T softmax samples; disagreement = ``max_c |softmax_c - T_inv(sdf_c)|``;
5. bring everything back onto the input's grid (probabilities interpolated linearly, then argmax)
   and optionally keep the largest connected component of each class.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from napari_uamc.data.study.layout import prediction_name
from napari_uamc.data.volume import Volume
from napari_uamc.engine.checkpoint import ModelMeta, check_meta_fits
from napari_uamc.engine.device import resolve_device, resolve_precision
from napari_uamc.engine.inference_config import InferenceConfig
from napari_uamc.engine.model import SIZE_MULTIPLE, DualTaskVNet
from napari_uamc.engine.preprocess import (
    checked_resampled_shape,
    needs_resampling,
    resample_to_shape,
    zscore,
)
from napari_uamc.engine.sdf import DEFAULT_SDF_K
from napari_uamc.engine.sweep import (
    Cancelled,
    ProgressCallback,
    StopRequest,
    entropy,
    mc_mean_probabilities,
    network_maps,
    plan_passes,
)
from napari_uamc.errors import CheckpointError, InputError

__all__ = [
    "Cancelled",
    "InferenceConfig",
    "SegmentationResult",
    "entropy",
    "keep_largest_components",
    "mc_mean_probabilities",
    "output_paths",
    "plan_passes",
    "segment_volume",
    "write_segmentation",
]

#: Refuse to work on volumes (after resampling) with more voxels than this (about 4 GB floats).
MAX_VOXELS = 1024**3


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings (tanh form), as float32."""
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


@dataclass
class SegmentationResult:
    """Outputs of :func:`segment_volume`, all on the input volume's canonical grid.

    ``label`` uint8 class indices; ``sdf`` float32 network SDF (unitless, negative inside),
    ``[X, Y, Z]`` for a binary model, ``[C-1, X, Y, Z]`` otherwise; ``uncertainty`` float32
    entropy in nats in [0, ln C] (0 where no MC sample was drawn); ``disagreement`` float32
    ``max_c |softmax_c - T_inv(sdf_c)|`` in [0, 1]; ``probabilities`` float32 ``[C, X, Y, Z]``
    when asked for.
    """

    label: np.ndarray
    sdf: np.ndarray
    uncertainty: np.ndarray
    disagreement: np.ndarray
    class_names: list[str]
    probabilities: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, object] = field(default_factory=dict)

    def volume_ml(self, spacing: tuple[float, float, float]) -> dict[str, float]:
        """Volume of each foreground class in millilitres (1 mL = 1000 mm^3)."""
        voxel_ml = float(np.prod(spacing)) / 1000.0
        counts = np.bincount(self.label.ravel(), minlength=len(self.class_names))
        return {
            name: float(counts[c]) * voxel_ml
            for c, name in enumerate(self.class_names)
            if c > 0
        }

    def mean_uncertainty(self, foreground_only: bool = True) -> float:
        """Mean entropy (nats) over the predicted foreground (or the whole volume)."""
        region = self.label > 0 if foreground_only else np.ones(self.label.shape, bool)
        if not region.any():
            return 0.0
        return float(self.uncertainty[region].mean(dtype=np.float64))


# ----------------------------------------------------------------------------------------------
def _check_model(model: DualTaskVNet, meta: ModelMeta) -> None:
    check_meta_fits(model, meta)
    if meta.in_channels != 1:
        raise CheckpointError(
            f"the model expects {meta.in_channels} input channels, but napari-uamc segments "
            "single-channel images"
        )
    if meta.n_classes > np.iinfo(np.uint8).max:
        raise CheckpointError(f"the model has {meta.n_classes} classes; at most 255 are supported")


def _check_volume(volume: Volume) -> None:
    array = volume.array
    if array.ndim != 3 or min(array.shape) < 1:
        raise InputError(f"{volume.name}: expected a non-empty 3D image, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"{volume.name}: image values must be real numbers, not {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(f"{volume.name}: {bad} voxels are NaN or infinite")


def keep_largest_components(label: np.ndarray, n_classes: int) -> np.ndarray:
    """Per foreground class, keep its largest 26-connected component (the rest -> background)."""
    out = label.copy()
    structure = np.ones((3, 3, 3), dtype=bool)
    for c in range(1, n_classes):
        mask = label == c
        from scipy import ndimage  # lazily: only for the optional largest-component step

        components, count = ndimage.label(mask, structure=structure)
        if count > 1:
            sizes = np.bincount(components.ravel())
            sizes[0] = 0
            out[mask & (components != int(np.argmax(sizes)))] = 0
    return out


@contextlib.contextmanager
def _seeded_dropout(seed: int | None, device: torch.device):
    """Draw the MC-dropout masks from ``seed`` without touching the caller's random state."""
    if seed is None or device.type not in ("cpu", "cuda"):
        yield
        return
    if device.type == "cpu":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
        return
    with torch.random.fork_rng(devices=[device]), torch.cuda.device(device):
        torch.cuda.manual_seed(seed)
        yield


def segment_volume(
    model: DualTaskVNet,
    meta: ModelMeta,
    volume: Volume,
    cfg: InferenceConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
    should_stop: StopRequest | None = None,
) -> SegmentationResult:
    """Segment ``volume`` with ``model``; see the module docstring for the steps.

    ``progress(done, total)`` reports the work done, in units of one decoder pass over a
    training-patch-sized window (so the ETA is fair across window sizes); ``should_stop()`` is
    checked before each window and each MC batch, and raises :class:`Cancelled`. ``model`` is
    not modified: an eval-mode (by default fused) copy on the chosen device does the work.
    ``volume.array`` is in canonical ``[x, y, z]`` order with ``volume.spacing`` in mm; it is
    resampled to ``meta.spacing`` (mm) when they differ, and every output is on its grid.

    Raises:
        CheckpointError: ``meta`` does not describe ``model``, the model wants more than one input
            channel or has over 255 classes, or its training patch is not a multiple of 16.
        InputError: ``volume`` is empty or not real and finite; ``cfg.device`` or ``cfg.precision``
            is unknown or unavailable; resampling would shrink an axis to under 4 voxels (a spacing
            in the wrong unit) or give more than 1024**3 voxels.
        Cancelled: ``should_stop()`` returned True.
    """
    cfg = cfg or InferenceConfig()
    started = time.perf_counter()
    _check_model(model, meta)
    _check_volume(volume)
    device = resolve_device(cfg.device)
    dtype = resolve_precision(cfg.precision, device)
    patch = cfg.patch or tuple(meta.patch)
    if any(p % SIZE_MULTIPLE for p in patch):
        raise CheckpointError(f"the model's patch {patch} is not a multiple of {SIZE_MULTIPLE}")

    image = zscore(volume.array)
    resampled = needs_resampling(volume.spacing, meta.spacing, cfg.resample_tolerance)
    if resampled:
        target = checked_resampled_shape(volume.shape, volume.spacing, meta.spacing, volume.name)
        if math.prod(target) > MAX_VOXELS:
            raise InputError(
                f"{volume.name}: resampling from {volume.spacing} mm to the model's "
                f"{meta.spacing} mm would give {target} voxels, too many to segment"
            )
        image = resample_to_shape(image, target, order=1)
    prepared = time.perf_counter()

    with _seeded_dropout(cfg.seed if cfg.mc_samples else None, device):
        probabilities, sdf, uncertainty, counts = network_maps(
            model, image, patch, cfg, device, dtype, progress, should_stop  # type: ignore[arg-type]
        )
    networked = time.perf_counter()

    if resampled:  # every map back onto the input grid in one multi-threaded call
        stacked = resample_to_shape(np.concatenate([probabilities, sdf, uncertainty[None]]), volume.shape, order=1)
        classes = probabilities.shape[0]
        probabilities, sdf, uncertainty = stacked[:classes], stacked[classes:-1], stacked[-1]
        del stacked
    label = np.argmax(probabilities, axis=0).astype(np.uint8)
    if cfg.largest_component:
        label = keep_largest_components(label, meta.n_classes)
    sdf_k = float(meta.config.get("sdf_k", DEFAULT_SDF_K))
    disagreement = np.abs(probabilities[1:] - _sigmoid(-sdf_k * sdf)).max(axis=0).astype(np.float32)
    finished = time.perf_counter()

    return SegmentationResult(
        label=label,
        sdf=(sdf[0] if meta.n_classes == 2 else sdf).astype(np.float32, copy=False),
        uncertainty=np.clip(uncertainty, 0.0, math.log(meta.n_classes)).astype(np.float32),
        disagreement=disagreement,
        class_names=list(meta.class_names),
        probabilities=probabilities if cfg.keep_probabilities else None,
        timings={
            "preprocess": prepared - started,
            "network": networked - prepared,
            "postprocess": finished - networked,
            "total": finished - started,
        },
        info={
            **counts,
            "resampled": resampled,
            "device": str(device),
            "precision": str(dtype).removeprefix("torch."),
            "patch": tuple(patch),
        },
    )


def output_paths(out_dir: str | Path, case: str, class_names: list[str]) -> dict[str, Path]:
    """Files :func:`write_segmentation` writes: seg, SDF (one per foreground class), uncertainty."""
    out_dir = Path(out_dir)
    paths = {"seg": out_dir / prediction_name(case, "seg")}
    if len(class_names) == 2:
        paths["sdf"] = out_dir / prediction_name(case, "sdf")
    else:
        for name in class_names[1:]:
            safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
            paths[f"sdf_{name}"] = out_dir / prediction_name(case, f"sdf_{safe}")
    paths["uncertainty"] = out_dir / prediction_name(case, "uncertainty")
    return paths


def write_segmentation(
    result: SegmentationResult, volume: Volume, out_dir: str | Path, case: str
) -> dict[str, Path]:
    """Write label (uint8), SDF and uncertainty (float32, rounded to 1e-4: ``rounded_map``) on
    ``volume``'s source grid and affine.

    A binary model gives ``<case>_seg``, ``<case>_sdf`` and ``<case>_uncertainty`` ``.nii.gz``;
    with more classes the SDF is one file per foreground class, ``<case>_sdf_<class>.nii.gz``.

    Raises:
        GridMismatchError: ``result`` is not on ``volume``'s grid.
        UamcError: a file could not be written (as :func:`~napari_uamc.data.io.write_volumes`).
    """
    from napari_uamc.data.io import rounded_map, write_volumes

    paths = output_paths(out_dir, case, result.class_names)
    jobs = [(paths["seg"], result.label, volume, np.uint8),
            (paths["uncertainty"], rounded_map(result.uncertainty), volume, np.float32)]
    if result.sdf.ndim == 3:
        jobs.append((paths["sdf"], rounded_map(result.sdf), volume, np.float32))
    else:
        jobs += [(paths[f"sdf_{name}"], rounded_map(result.sdf[channel]), volume, np.float32)
                 for channel, name in enumerate(result.class_names[1:])]
    write_volumes(jobs)  # side by side: gzip releases the GIL
    return paths
