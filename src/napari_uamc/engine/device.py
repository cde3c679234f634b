"""Choosing the torch device and the arithmetic precision (``--device``, ``--precision``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from napari_uamc.errors import InputError

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "bfloat16")


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA if available, else CPU; ``cuda``/``cuda:N``/``mps`` checked to exist."""
    if isinstance(name, torch.device):
        name = str(name)
    text = str(name).strip().lower()
    kind = text.split(":", 1)[0]
    if kind not in DEVICES:
        raise InputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise InputError(
                "device 'cuda' was requested but this PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu or auto"
            )
        device = torch.device(text)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {text!r} does not exist: "
                f"{torch.cuda.device_count()} CUDA device(s) visible"
            )
        return device
    if kind == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InputError("device 'mps' was requested but Apple's MPS backend is not available")
        return torch.device("mps")
    if text != "cpu":
        raise InputError(f"unknown device {name!r}; the CPU is just 'cpu'")
    return torch.device("cpu")


def cpu_supports_bfloat16() -> bool:
    """True when the CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX) for oneDNN."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 where the hardware runs it natively (CUDA, capable CPUs), else float32."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "float32":
        return torch.float32
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
    elif device.type == "cpu":
        supported = cpu_supports_bfloat16()
    else:
        supported = False
    if precision == "bfloat16":
        if device.type not in ("cpu", "cuda"):
            raise InputError(f"bfloat16 is not supported on {device.type}; use --precision float32")
        return torch.bfloat16
    return torch.bfloat16 if supported else torch.float32


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Mixed precision for ``dtype`` other than float32 (a no-op for float32)."""
    if dtype == torch.float32:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


#: glibc ``mallopt`` parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
#: Freed heap memory kept for reuse before it is returned to the system.
_KEEP_FREED_BYTES = 2**30


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory for large tensors instead of mapping fresh pages each time.

    Large activations (hundreds of MB for big inference windows) are otherwise allocated with
    ``mmap`` and returned on free, so every network pass pays page faults to zero new pages
    (measured: about a third of the time of a whole-volume pass in system time). Process-wide;
    meant for command-line runs. Returns False where glibc is not available (nothing changed).
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES) == 1 and ok
    except (OSError, AttributeError):
        return False
    return ok
