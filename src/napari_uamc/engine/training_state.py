"""Snapshots of a training run: the resume file's format, and the last state with a finite loss.

The resume file (``MODEL.resume.pt``, written by :meth:`Trainer.save_state
<napari_uamc.engine.training.Trainer.save_state>`) holds only tensors, ints and JSON strings, so it
loads with ``torch.load(..., weights_only=True)``::

    format, format_version, iteration, config_json, cases_json, architecture_json,
    student, teacher (state dicts), optimizer_json (param groups), optimizer_state
    [+ strings the caller adds, e.g. data_json]

:class:`LastGoodState` keeps an in-memory copy of the student, teacher and optimiser from the
last step whose loss was checked finite, so a non-finite loss can roll the model back.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from napari_uamc._atomic import atomic_path
from napari_uamc.engine.config import TrainConfig
from napari_uamc.errors import InputError, TrainingError

TRAINER_STATE_FORMAT = "napari-uamc-trainer-state"
TRAINER_STATE_VERSION = 1
#: Config fields that may differ between an interrupted run and its resumption.
RESUME_FREE_FIELDS = frozenset({"iterations", "data_workers", "log_interval", "precision", "mc_chunk"})


def pack_state(
    *,
    iteration: int,
    cfg: TrainConfig,
    cases: Mapping[str, list[str]],
    student: nn.Module,
    teacher: nn.Module,
    optimizer: torch.optim.Optimizer,
) -> dict[str, Any]:
    """The resume-file dictionary of a run (CPU copies; ``cases``: ``{"labeled": [...],
    "unlabeled": [...]}`` names)."""
    state = optimizer.state_dict()
    return {
        "format": TRAINER_STATE_FORMAT,
        "format_version": TRAINER_STATE_VERSION,
        "iteration": int(iteration),
        "config_json": json.dumps(cfg.to_dict()),
        "cases_json": json.dumps(dict(cases)),
        "architecture_json": json.dumps(_architecture(student)),
        "student": {k: v.detach().cpu().clone() for k, v in student.state_dict().items()},
        "teacher": {k: v.detach().cpu().clone() for k, v in teacher.state_dict().items()},
        "optimizer_json": json.dumps(state["param_groups"]),
        "optimizer_state": {
            str(index): {name: value.detach().cpu().clone() for name, value in entry.items()
                         if isinstance(value, Tensor)}
            for index, entry in state["state"].items()
        },
    }


def unpack_state(
    state: Mapping[str, Any],
    *,
    cfg: TrainConfig,
    cases: Mapping[str, list[str]],
    student: nn.Module,
    teacher: nn.Module,
    optimizer: torch.optim.Optimizer,
) -> int:
    """Load :func:`pack_state` output into ``student``, ``teacher`` and ``optimizer``; returns the
    iteration to continue from. Warns (UserWarning) when settings other than
    :data:`RESUME_FREE_FIELDS` differ from ``cfg``.

    Raises:
        TrainingError: not a training state, written by a newer version, made with other
            ``cases``, or its weights do not fit ``student``.
    """
    if not isinstance(state, Mapping) or state.get("format") != TRAINER_STATE_FORMAT:
        raise TrainingError("this is not a napari-uamc training state (resume file)")
    if int(state.get("format_version", 0)) > TRAINER_STATE_VERSION:
        raise TrainingError("this training state was written by a newer napari-uamc")
    saved_cases = json.loads(state["cases_json"])
    if saved_cases != dict(cases):
        raise TrainingError(
            "the training state was made with other cases (labeled "
            f"{_short(saved_cases['labeled'])}, {len(saved_cases['unlabeled'])} unlabeled) than "
            f"this run (labeled {_short(cases['labeled'])}, {len(cases['unlabeled'])} unlabeled)"
        )
    saved_cfg = json.loads(state["config_json"])
    now_cfg = cfg.to_dict()
    changed = sorted(k for k in now_cfg if k not in RESUME_FREE_FIELDS and saved_cfg.get(k) != now_cfg[k])
    if changed:
        warnings.warn(f"resuming with changed settings: {', '.join(changed)}", stacklevel=3)
    try:
        student.load_state_dict(state["student"])
        teacher.load_state_dict(state["teacher"])
    except RuntimeError as error:
        raise TrainingError(
            f"the training state does not fit this network: {str(error).splitlines()[0]}"
        ) from None
    groups = json.loads(state["optimizer_json"])
    optimizer_state = {int(k): dict(v) for k, v in state["optimizer_state"].items()}
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": groups})
    return int(state["iteration"])


def write_training_state(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write a training state to ``path`` atomically (the old file stays until the new is whole).

    Raises:
        OSError: the file cannot be written (its folder must exist).
    """
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        torch.save(dict(state), handle)


def read_training_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The training state in ``path``, on the CPU, loaded with ``weights_only=True``.

    Raises:
        InputError: the file holds no napari-uamc training state.
        OSError: the file cannot be read.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "config_json" not in state:
        raise InputError(f"{path} is not a napari-uamc training state")
    return state


def state_config(state: Mapping[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` a training state was made with.

    Raises:
        InputError: the stored config is not valid.
    """
    return TrainConfig.from_dict(json.loads(state["config_json"]))


class LastGoodState:
    """A copy of student, teacher and optimiser taken before an update whose loss was finite."""

    def __init__(self) -> None:
        self._saved: dict[str, Any] | None = None

    def remember(self, iteration: int, student: nn.Module, teacher: nn.Module,
                 optimizer: torch.optim.Optimizer) -> None:
        """Keep a copy (on the device) of the state at ``iteration``."""
        self._saved = {
            "iteration": iteration,
            "student": {k: v.detach().clone() for k, v in student.state_dict().items()},
            "teacher": {k: v.detach().clone() for k, v in teacher.state_dict().items()},
            "optimizer": _clone_optimizer_state(optimizer.state_dict()),
        }

    def restore(self, student: nn.Module, teacher: nn.Module, optimizer: torch.optim.Optimizer) -> int | None:
        """Load the kept copy back; returns its iteration (None when nothing was kept)."""
        good = self._saved
        if good is None:
            return None
        student.load_state_dict(good["student"])
        teacher.load_state_dict(good["teacher"])
        optimizer.load_state_dict(good["optimizer"])
        return good["iteration"]

    def forget(self) -> None:
        self._saved = None


def modules_are_finite(*modules: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``modules`` is finite."""
    tensors = [t for module in modules for t in module.state_dict().values()]
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())


def _clone_optimizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``optimizer.state_dict()`` whose tensors are cloned (not shared)."""
    return {
        "state": {
            index: {k: v.detach().clone() if isinstance(v, Tensor) else v for k, v in entry.items()}
            for index, entry in state["state"].items()
        },
        "param_groups": copy.deepcopy(state["param_groups"]),
    }


def _architecture(model: nn.Module) -> dict[str, Any]:
    return {
        "in_channels": model.in_channels, "n_classes": model.n_classes, "width": model.width,
        "norm": model.norm, "dropout": model.dropout_p,
    }


def _short(names: Sequence[str], shown: int = 4) -> str:
    text = ", ".join(names[:shown])
    return text + (f", ... ({len(names)})" if len(names) > shown else "")
