"""The one training configuration: the paper's left-atrium (LA 2018) settings, named once.

Every choice METHOD.md marks *(flag)* is a field here, so the CLI, the plugin, the benchmarks and
the tests all switch the same thing. The config is JSON-able (:meth:`TrainConfig.to_dict` /
:meth:`TrainConfig.from_dict`) so it can travel inside a checkpoint's metadata.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from napari_uamc.errors import InputError

#: Names of the loss terms (METHOD.md section 3): supervised segmentation (CE + Dice), the
#: supervised SDF term ("dual task": Dice of the SDF's smooth inverse, optional MSE), the
#: uncertainty-masked intra-task (mean-teacher) consistency, and the cross-task consistency.
TERM_SEG = "seg"
TERM_DIS = "dis"
TERM_ITC = "itc"
TERM_CTC = "ctc"
ALL_TERMS: frozenset[str] = frozenset({TERM_SEG, TERM_DIS, TERM_ITC, TERM_CTC})

#: The paper's ablation rows (Table 1) as term sets; row 6 is UG-MCL, row 5 is DTC.
ABLATION_ROWS: dict[int, frozenset[str]] = {
    1: frozenset({TERM_SEG}),
    2: frozenset({TERM_SEG, TERM_DIS}),
    3: frozenset({TERM_SEG, TERM_ITC}),
    4: frozenset({TERM_SEG, TERM_DIS, TERM_ITC}),
    5: frozenset({TERM_SEG, TERM_DIS, TERM_CTC}),
    6: ALL_TERMS,
}

#: Training methods by name (the CLI's ``--method``).
METHODS: dict[str, frozenset[str]] = {
    "ugmcl": ALL_TERMS,
    "supervised": ABLATION_ROWS[1],
}

NORMS = ("batch", "instance", "none")
TEACHER_TARGETS = ("single", "mc_mean")
#: Config keys renamed since records were first written: old name -> new name (``from_dict``).
RENAMED_KEYS = {"cold_start": "cold_start_rules"}
#: Every spatial patch dimension must be a multiple of this (four stride-2 downsamplings).
PATCH_MULTIPLE = 16


def ablation_terms(row: int) -> frozenset[str]:
    """Term set of the paper's ablation row ``row`` (1-6, METHOD.md section 3)."""
    if isinstance(row, bool) or row not in ABLATION_ROWS:
        raise InputError(f"Ablation row must be one of 1-6, not {row!r}")
    return ABLATION_ROWS[row]


def method_terms(method: str) -> frozenset[str]:
    """Term set of a named method: ``"ugmcl"`` (all terms) or ``"supervised"`` (row 1)."""
    try:
        return METHODS[method]
    except KeyError:
        raise InputError(
            f"Method must be one of {', '.join(sorted(METHODS))}, not {method!r}"
        ) from None


def parse_terms(text: str | Any) -> frozenset[str]:
    """Validated term set from ``"seg,dis,itc"`` (commas and/or spaces) or an iterable of names."""
    if isinstance(text, str):
        names = [name for name in text.replace(",", " ").split() if name]
    else:
        try:
            names = [str(name) for name in text]
        except TypeError:
            raise InputError(f"Terms must be a list of names, not {text!r}") from None
    terms = frozenset(name.strip().lower() for name in names)
    unknown = sorted(terms - ALL_TERMS)
    if unknown:
        raise InputError(
            f"Unknown loss term(s) {', '.join(map(repr, unknown))}; "
            f"choose from {', '.join(sorted(ALL_TERMS))}"
        )
    if TERM_SEG not in terms:
        raise InputError(
            f"The loss terms {sorted(terms)} lack 'seg': the segmentation head is what "
            "inference uses, so every method trains it"
        )
    return terms


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of UG-MCL training and fine-tuning; defaults are the paper's LA settings."""

    # --- optimiser and schedule (SGD, step decay) -------------------------------------------
    lr: float = 0.01  # initial learning rate of a training run from scratch
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 1e-4  # SGD weight decay
    lr_step: int = 2500  # the learning rate is multiplied by lr_gamma every lr_step iterations
    lr_gamma: float = 0.1  # step-decay factor
    iterations: int = 6000  # optimiser steps of the run
    batch_size: int = 4  # patches per step, labeled + unlabeled
    labeled_batch_size: int = 2  # labeled patches per step (the first part of each batch)
    patch: tuple[int, int, int] = (112, 112, 80)  # training patch (x, y, z), multiples of 16
    seed: int = 1337  # seed of every random generator the trainer uses

    # --- network (METHOD.md section 1) ---------------------------------------------------------
    width: int = 16  # n_filters F of the V-Net (channels of the first stage)
    n_classes: int = 2  # classes C including background (binary: 2)
    norm: str = "batch"  # "batch" | "instance" (affine) | "none"
    dropout: float = 0.5  # Dropout3d probability at the bottleneck and before the heads

    # --- mean teacher and uncertainty (METHOD.md section 3) ------------------------------------
    mc_samples: int = 8  # T teacher passes (fresh noise and dropout) for the uncertainty
    noise_std: float = 0.1  # std of the Gaussian noise added to the teacher's input
    noise_clip: float = 0.2  # the noise is clamped to [-noise_clip, noise_clip]
    ema_alpha: float = 0.99  # maximum EMA decay; alpha = min(1 - 1/(step+1), ema_alpha)
    teacher_target: str = "single"  # (flag) "single": one extra teacher pass; "mc_mean": mean of T
    beta: float = 0.75  # (flag) weight of the segmentation part of L_itc (1 - beta: SDF part)
    consistency: float = 0.1  # lambda_max of lambda(t) = consistency * ramp(t)
    consistency_rampup: int | None = None  # ramp length L in iterations; None = the whole run
    tau_base: float = 0.75  # uncertainty threshold tau(t) = (tau_base + tau_range*ramp(t)) * ln C
    tau_range: float = 0.25  # see tau_base

    # --- signed distance (METHOD.md section 2) and loss terms ----------------------------------
    sdf_k: float = 1500.0  # steepness k of the smooth inverse T_inv(z) = sigmoid(-k z)
    sdf_mse_weight: float = 0.0  # (flag) w_sdf of the optional MSE(sdf, T(y)) in "dis"; DTC: 0.3
    terms: frozenset[str] = field(default=ALL_TERMS)  # (flag) loss terms: seg, dis, itc, ctc

    # --- fine-tuning in the annotation loop (METHOD.md section 8) ------------------------------
    finetune: bool = False  # fine-tune mode: consistency at full weight from step 0 (no ramp)
    finetune_lr: float = 0.001  # initial learning rate used instead of lr when finetune is on
    bn_recalibration: bool = False  # (flag) re-estimate BatchNorm statistics after training
    keep_ema: bool = False  # (flag) keep the EMA teacher (not the student) as the result
    # (flag) the cold-start rules: a model new to the study's images (engine/finetune.py) relearns at
    # its spacing/rate; True says the rules may apply, not that a run was a cold start
    cold_start_rules: bool = True
    anchors: bool = False  # warm start: also train on the other cases labeled by the starting model
    fresh_weights: bool = False  # (flag) fine-tune newly initialised weights of the model's architecture
    # (flag) 0: the teacher's passes on every unlabeled patch (the paper); N > 0: whole-case
    # targets (engine/teacher_targets.py), one case refreshed every N steps
    teacher_refresh: int = 0
    teacher_start: int = 0  # with teacher_refresh: the step at which the targets are first computed
    # (flag) with teacher_refresh and supervised terms: train on bidirectional copy-paste mixes of
    # labeled and unlabeled patches (engine/copy_paste.py); batch_size = 2 * labeled_batch_size
    copy_paste: bool = False
    # (flag) with teacher_refresh: trust a case's targets only while they are a plausible
    # segmentation (engine/teacher_targets.py, ``case_plausibility``); else none of its voxels
    target_gate: bool = False

    # --- how the trainer runs (helper G; validated by engine/training.py) -----------------------
    precision: str = "auto"  # "auto" (bf16 where native: CUDA, AMX/AVX512-BF16 CPUs) | "float32" | "bfloat16"
    channels_last: bool = True  # channels-last-3d memory format for the convolutions
    log_interval: int = 10  # on CUDA, loss values are read (a host sync) every this many steps
    data_workers: int | None = None  # batch-building processes; None: 0 on CPU, up to 8 on CUDA
    mc_chunk: int = 0  # teacher passes per batched forward; 0: auto (all on CUDA, 1 on CPU)

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", parse_terms(self.terms))
        object.__setattr__(self, "patch", _patch_tuple(self.patch))
        self._validate()

    # --- derived values -----------------------------------------------------------------------
    @property
    def base_lr(self) -> float:
        """Initial learning rate of this run (``finetune_lr`` in fine-tune mode)."""
        return self.finetune_lr if self.finetune else self.lr

    @property
    def unlabeled_batch_size(self) -> int:
        return self.batch_size - self.labeled_batch_size

    @property
    def rampup_length(self) -> int:
        """Effective ramp length L: 0 (ramp = 1 from the start) when fine-tuning."""
        if self.finetune:
            return 0
        return self.iterations if self.consistency_rampup is None else self.consistency_rampup

    @property
    def uses_sdf_head(self) -> bool:
        """Whether any term trains the SDF head (``dis`` or ``ctc``)."""
        return bool(self.terms & {TERM_DIS, TERM_CTC})

    @property
    def effective_beta(self) -> float:
        """beta of L_itc: 1 when no other term uses the SDF head (ablation row 3), else beta."""
        return self.beta if self.uses_sdf_head else 1.0

    def lr_at(self, iteration: int) -> float:
        """Step-decayed learning rate at ``iteration`` (0-based)."""
        return self.base_lr * self.lr_gamma ** (iteration // self.lr_step)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (validated)."""
        return dataclasses.replace(self, **changes)

    # --- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (tuples and sets become sorted/ordered lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Config from :meth:`to_dict` output; unknown keys are ignored with a warning."""
        if not isinstance(data, Mapping):
            raise InputError(f"A training config must be a mapping, not {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        data = {RENAMED_KEYS.get(key, key): value for key, value in data.items()}  # older records
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(
                f"Ignoring unknown training config key(s): {', '.join(unknown)}", stacklevel=2
            )
        return cls(**{key: value for key, value in data.items() if key in known})

    # --- validation ---------------------------------------------------------------------------
    def _validate(self) -> None:
        for name in ("lr", "finetune_lr", "lr_gamma", "sdf_k"):
            _require(_is_number(getattr(self, name)) and getattr(self, name) > 0, name, "> 0")
        for name in ("momentum", "weight_decay", "noise_std", "noise_clip", "consistency",
                     "sdf_mse_weight", "tau_base", "tau_range"):
            _require(_is_number(getattr(self, name)) and getattr(self, name) >= 0, name, ">= 0")
        for name in ("lr_step", "iterations", "batch_size", "labeled_batch_size", "width",
                     "mc_samples"):
            _require(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name,
                     "an integer >= 1")
        _require(_is_int(self.seed), "seed", "an integer")
        _require(_is_int(self.n_classes) and self.n_classes >= 2, "n_classes",
                 "an integer >= 2 (background included)")
        _require(self.labeled_batch_size <= self.batch_size, "labeled_batch_size",
                 f"<= batch_size ({self.batch_size})")
        _require(self.norm in NORMS, "norm", f"one of {NORMS}")
        _require(_is_number(self.dropout) and 0 <= self.dropout < 1, "dropout", "in [0, 1)")
        _require(_is_number(self.ema_alpha) and 0 <= self.ema_alpha < 1, "ema_alpha", "in [0, 1)")
        _require(_is_number(self.beta) and 0 <= self.beta <= 1, "beta", "in [0, 1]")
        _require(self.teacher_target in TEACHER_TARGETS, "teacher_target",
                 f"one of {TEACHER_TARGETS}")
        for name in ("teacher_refresh", "teacher_start"):
            _require(_is_int(getattr(self, name)) and getattr(self, name) >= 0, name, "an integer >= 0")
        _require(self.consistency_rampup is None
                 or (_is_int(self.consistency_rampup) and self.consistency_rampup >= 0),
                 "consistency_rampup", "None or an integer >= 0")
        for name in ("finetune", "bn_recalibration", "keep_ema", "cold_start_rules", "anchors", "fresh_weights",
                     "copy_paste", "target_gate"):
            _require(isinstance(getattr(self, name), bool), name, "True or False")
        if self.target_gate:
            _require(self.teacher_refresh >= 1, "target_gate",
                     "used with teacher_refresh >= 1 (it gates those targets)")
        if self.copy_paste:
            _require(self.teacher_refresh >= 1, "copy_paste", "used with teacher_refresh >= 1 (its pseudo-labels)")
            _require(self.batch_size == 2 * self.labeled_batch_size, "copy_paste",
                     f"used with batch_size = 2 * labeled_batch_size (one unlabeled patch per labeled one), "
                     f"not {self.batch_size} with {self.labeled_batch_size} labeled")
            _require(not self.terms & {TERM_ITC, TERM_CTC} and self.sdf_mse_weight == 0, "copy_paste",
                     "used with the terms seg and dis only and sdf_mse_weight 0")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _require(ok: bool, name: str, expected: str) -> None:
    if not ok:
        raise InputError(f"Training config: {name} must be {expected}")


def _patch_tuple(patch: Any) -> tuple[int, int, int]:
    try:
        dims = tuple(patch)
    except TypeError:
        raise InputError(f"Patch must be three integers (x, y, z), not {patch!r}") from None
    if len(dims) != 3 or not all(_is_int(d) and d > 0 for d in dims):
        raise InputError(f"Patch must be three positive integers (x, y, z), not {patch!r}")
    if any(d % PATCH_MULTIPLE for d in dims):
        raise InputError(
            f"Every patch dimension must be a multiple of {PATCH_MULTIPLE} "
            f"(the V-Net halves it four times), not {dims}"
        )
    return dims  # type: ignore[return-value]
