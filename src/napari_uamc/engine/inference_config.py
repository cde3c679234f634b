"""How :func:`~napari_uamc.engine.inference.segment_volume` runs: :class:`InferenceConfig`.

Below both the inference driver (:mod:`~napari_uamc.engine.inference`) and the network sweep
(:mod:`~napari_uamc.engine.sweep`), which read it; ``from napari_uamc.engine.inference import
InferenceConfig`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_uamc.engine.model import SIZE_MULTIPLE
from napari_uamc.engine.preprocess import RESAMPLE_TOLERANCE
from napari_uamc.engine.windows import DEFAULT_OVERLAP, LAYOUTS, WEIGHTINGS
from napari_uamc.errors import InputError

DET_WINDOW_MODES = LAYOUTS
MC_WINDOW_MODES = ("tiles", "cover", "all")
#: Largest window of the "tiles" layouts: 2**22 voxels (a 288 x 288 x 88 LA MRI in two windows
#: of 144 x 288 x 96); larger windows measured no faster per voxel, only bigger.
DEFAULT_TILE_VOXELS = 2**22
#: A window is "confidently background" (MC sampling may be skipped) when every voxel has at
#: least this background probability in the deterministic pass.
DEFAULT_BACKGROUND_CONFIDENCE = 0.95


@dataclass(frozen=True)
class InferenceConfig:
    """How :func:`~napari_uamc.engine.inference.segment_volume` runs; the defaults are the product's defaults.

    Window layouts: ``windows="sliding"`` runs the deterministic pass on windows of the training
    patch with ``overlap`` (or an explicit ``stride``), as the paper does; ``"tiles"`` on the
    fewest large windows of at most ``tile_voxels``. ``mc_windows`` places the MC samples:
    ``"tiles"`` on their own large tiles (each voxel gets T samples; the encoder runs once per
    tile), ``"cover"`` on the fewest deterministic windows that cover the volume (their encoder
    features are shared), ``"all"`` on every deterministic window (T per window).

    Raises:
        InputError: a field out of range or not of its type (checked on construction).
    """

    mc_samples: int = 8  # T MC-dropout samples per voxel (0: no uncertainty, zeros)
    windows: str = "tiles"  # deterministic pass layout: "tiles" | "sliding" (docs/benchmarks.md)
    overlap: float = DEFAULT_OVERLAP  # sliding-window overlap, fraction of the patch, in [0, 1)
    stride: tuple[int, int, int] | None = None  # explicit sliding step (overrides overlap)
    patch: tuple[int, int, int] | None = None  # sliding window; None: the model's training patch
    tile_voxels: int = DEFAULT_TILE_VOXELS  # largest window of the "tiles" layouts
    weighting: str = "gaussian"  # blending of overlapping windows: "gaussian" | "uniform"
    mc_windows: str = "tiles"  # "tiles" | "cover" | "all" (see above)
    mc_batch: int = 1  # MC samples decoded together (batch of the shared features)
    precision: str = "auto"  # "auto" | "float32" | "bfloat16"
    channels_last: bool = True  # channels-last-3d memory format for the convolutions
    fuse: bool = True  # fold BatchNorm into the convs, fuse conv + ReLU (engine/fused_inference.py)
    largest_component: bool = False  # keep only the largest connected component per class
    mc_only_foreground_windows: bool = False  # skip MC on confidently-background windows
    background_confidence: float = DEFAULT_BACKGROUND_CONFIDENCE  # threshold of the above
    resample_tolerance: float = RESAMPLE_TOLERANCE  # relative spacing difference that resamples
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N" | "mps"
    keep_probabilities: bool = False  # also return the blended softmax [C, X, Y, Z]
    #: seed of the MC-dropout masks on CPU and CUDA: the same image, model and machine give the
    #: same uncertainty (and so the same "most uncertain" ranking) every time; None draws fresh
    #: masks (as does MPS). Only the generator of the device used is seeded, then restored.
    seed: int | None = 0

    def __post_init__(self) -> None:
        if not _is_int(self.mc_samples) or self.mc_samples < 0:
            raise InputError(f"mc_samples must be an integer >= 0, not {self.mc_samples!r}")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            raise InputError(f"seed must be an integer in [0, 2**63) or None, not {self.seed!r}")
        if self.windows not in DET_WINDOW_MODES:
            raise InputError(f"windows must be one of {DET_WINDOW_MODES}, not {self.windows!r}")
        if not isinstance(self.overlap, (int, float)) or not 0.0 <= self.overlap < 1.0:
            raise InputError(f"overlap must be a fraction in [0, 1), not {self.overlap!r}")
        if self.stride is not None:
            object.__setattr__(self, "stride", _triple(self.stride, "stride", minimum=1))
        if self.patch is not None:
            patch = _triple(self.patch, "patch", minimum=SIZE_MULTIPLE)
            if any(p % SIZE_MULTIPLE for p in patch):
                raise InputError(f"patch sizes must be multiples of {SIZE_MULTIPLE}, not {patch}")
            object.__setattr__(self, "patch", patch)
        if not _is_int(self.tile_voxels) or self.tile_voxels < SIZE_MULTIPLE**3:
            raise InputError(
                f"tile_voxels must be an integer >= {SIZE_MULTIPLE**3}, not {self.tile_voxels!r}"
            )
        if self.weighting not in WEIGHTINGS:
            raise InputError(f"weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")
        if self.mc_windows not in MC_WINDOW_MODES:
            raise InputError(
                f"mc_windows must be one of {MC_WINDOW_MODES}, not {self.mc_windows!r}"
            )
        if not _is_int(self.mc_batch) or self.mc_batch < 1:
            raise InputError(f"mc_batch must be an integer >= 1, not {self.mc_batch!r}")
        if not 0.0 < self.background_confidence <= 1.0:
            raise InputError(
                f"background_confidence must be in (0, 1], not {self.background_confidence!r}"
            )
        if self.resample_tolerance < 0:
            raise InputError(f"resample_tolerance must be >= 0, not {self.resample_tolerance!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _triple(value: object, name: str, minimum: int) -> tuple[int, int, int]:
    try:
        items = tuple(int(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be three integers (x, y, z), not {value!r}") from None
    if len(items) != 3 or any(v < minimum for v in items):
        raise InputError(f"{name} must be three integers >= {minimum} (x, y, z), not {value!r}")
    return items  # type: ignore[return-value]
