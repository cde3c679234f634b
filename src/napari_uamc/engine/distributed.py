"""Data-parallel training through ``torch.distributed`` (launched by ``torchrun``).

``torchrun --nproc-per-node N -m napari_uamc.cli train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init_from_env` joins the process group (NCCL on CUDA, gloo on CPU). The
trainer then wraps the student in ``DistributedDataParallel``; each rank draws its own batches
(the seed is combined with the rank) and only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def current() -> DistContext:
    """The context of an initialised process group, else a single process."""
    if dist.is_available() and dist.is_initialized():
        local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
        return DistContext(dist.get_rank(), dist.get_world_size(), local)
    return DistContext()


def init_from_env(device_type: str | None = None) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (no-op without it).

    ``device_type`` "cuda" selects NCCL and binds this process to ``cuda:LOCAL_RANK``; anything
    else uses gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 or not dist.is_available():
        return DistContext()
    if not dist.is_initialized():
        use_cuda = (device_type or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda"
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return current()


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank (a collective: call it on all ranks)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
