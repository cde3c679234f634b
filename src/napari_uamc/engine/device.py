"""Choosing the torch device and the arithmetic precision (``--device``, ``--precision``)."""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

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


#: File (in the plugin's cache folder) that remembers the measured CPU precision per machine.
PRECISION_CACHE_FILE = "cpu-precision.json"
#: The measurement: the fused inference network (width 16) on one volume of this size.
_PROBE_WIDTH, _PROBE_SHAPE, _PROBE_REPEATS = 16, (64, 64, 32), 3


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_key() -> str:
    """What the measured precision depends on: the CPU model and the torch build."""
    return f"{cpu_model()} | torch {torch.__version__}"


def _probe_networks() -> dict[torch.dtype, torch.nn.Module]:
    from napari_uamc.engine.fused_inference import fuse_for_inference
    from napari_uamc.engine.model import DualTaskVNet

    torch.manual_seed(0)
    model = DualTaskVNet(width=_PROBE_WIDTH).eval()
    return {dtype: fuse_for_inference(model, dtype=dtype) for dtype in (torch.float32, torch.bfloat16)}


def _probe_seconds(dtype: torch.dtype, networks: dict | None = None) -> float:
    """Median seconds of a forward pass of the fused inference network (as Segment runs it) in
    ``dtype``, after a warm-up (the first call builds oneDNN's kernels)."""
    network = (networks or _probe_networks())[dtype]
    x = torch.randn(1, 1, *_PROBE_SHAPE, generator=torch.Generator().manual_seed(0)).to(dtype)
    x = x.contiguous(memory_format=torch.channels_last_3d)
    times = []
    with torch.inference_mode():
        for repeat in range(_PROBE_REPEATS + 1):
            started = time.perf_counter()
            network(x)
            if repeat:
                times.append(time.perf_counter() - started)
    return statistics.median(times)


def measured_cpu_precision(cache: Path | None = None) -> dict:
    """Which of float32 and bfloat16 runs the network faster on this CPU, measured once.

    A CPU can have bfloat16 instructions and still run them slower than float32 (AVX512-BF16
    without AMX units), so ``auto`` decides by timing the fused inference network in both
    (about a second, once) instead of reading a CPU flag. The result is cached per CPU model
    and torch version (:func:`machine_key`) in ``cache`` (default: the plugin's cache folder)
    and returned as
    ``{"choice": "bfloat16"|"float32", "float32_s": ..., "bfloat16_s": ..., "machine": ...}``.
    """
    from napari_uamc._atomic import write_json_atomic
    from napari_uamc._cache import cache_folder

    path = (cache or cache_folder()) / PRECISION_CACHE_FILE
    key = machine_key()
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    if isinstance(entry, dict) and entry.get("choice") in ("float32", "bfloat16"):
        return entry
    if not cpu_supports_bfloat16():
        entry = {"choice": "float32", "reason": "no native bfloat16 on this CPU", "machine": key}
    else:
        networks = _probe_networks()
        float32, bfloat16 = _probe_seconds(torch.float32, networks), _probe_seconds(torch.bfloat16, networks)
        entry = {"choice": "bfloat16" if bfloat16 < float32 else "float32",
                 "float32_s": float32, "bfloat16_s": bfloat16, "machine": key}
    with contextlib.suppress(OSError):  # an unwritable cache only means measuring again next time
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {**known, key: entry})
    return entry


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA GPUs that support it; on a CPU, whichever of float32 and
    bfloat16 :func:`measured_cpu_precision` found faster on this machine."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "float32":
        return torch.float32
    if precision == "bfloat16":
        if device.type not in ("cpu", "cuda"):
            raise InputError(f"bfloat16 is not supported on {device.type}; use --precision float32")
        return torch.bfloat16
    if device.type == "cpu":
        return torch.bfloat16 if measured_cpu_precision()["choice"] == "bfloat16" else torch.float32
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


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
