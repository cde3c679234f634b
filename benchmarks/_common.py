"""Shared helpers of the benchmark scripts: machine facts, a per-run result cache, tables, and
writing a named section of ``docs/benchmarks.md``.

Each script caches one JSON file per measured run (row and seed) under
``<cache>/<bench>/<config key>/``; the key is a short hash of everything that changes the
results, so runs of another size never mix. A script resumes by skipping the runs it finds, and
``--write`` re-reads the cache, so writing the tables is instant.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CACHE_DIR = REPO_ROOT / ".bench-cache"
DEFAULT_DOC = REPO_ROOT / "docs" / "benchmarks.md"
DOC_TITLE = (
    "# Benchmarks\n\nEach section below is written by the script it names (`--write`); "
    "edit the scripts, not this file.\n"
)
#: Length of the hexadecimal config key that names a cache folder.
KEY_LENGTH = 12


# ------------------------------------------------------------------------------- machine facts
def cpu_model() -> str:
    """The CPU's model name (the engine's, which also keys the measured CPU precision)."""
    from napari_uamc.engine.device import cpu_model as engine_cpu_model

    return engine_cpu_model()


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def set_threads(threads: int | None) -> None:
    """Use ``threads`` CPU threads in torch (None: torch's default, one per core).

    On a CPU shared with other jobs, one thread can be many times faster than one per core:
    every parallel region then waits for a thread the OS has descheduled (measured here: a
    BatchNorm of 4x8x48x48x32 took 3.5 ms with one thread and 45 ms with two, load average 4
    on 2 cores).
    """
    import torch

    if threads is not None:
        if threads < 1:
            raise SystemExit(f"--threads must be at least 1, not {threads}")
        torch.set_num_threads(threads)


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """CPU model and cores, OS, Python/torch/numpy versions, threads, and the GPU when used."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def describe_machine(info: Mapping[str, Any]) -> str:
    """One line for a report: ``CPU (N cores), GPU, OS; Python, torch, numpy``."""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return (
        f"{info.get('cpu')} ({info.get('cores')} cores, torch uses {info.get('torch_threads')} "
        f"thread{'' if info.get('torch_threads') == 1 else 's'})"
        f"{gpu}; {info.get('os')}; Python {info.get('python')}, torch {info.get('torch')}, "
        f"numpy {info.get('numpy')}"
    )


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this script, relative to the repository root where possible."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv else Path("?")
    try:
        shown = str(script.relative_to(REPO_ROOT))
    except ValueError:
        shown = str(argv[0]) if argv else "?"
    return shlex.join(["python", shown, *argv[1:]])


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------- the cache
def config_key(config: Mapping[str, Any]) -> str:
    """Short stable hash of a JSON-able config (sorted keys)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def write_json_atomically(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultCache:
    """One JSON file per run under ``root/bench/key/``; ``config.json`` says what the key means."""

    def __init__(self, root: str | os.PathLike[str], bench: str, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.key = config_key(self.config)
        self.folder = Path(root) / bench / self.key
        self.folder.mkdir(parents=True, exist_ok=True)
        config_path = self.folder / "config.json"
        if not config_path.exists():
            write_json_atomically(config_path, self.config)

    @staticmethod
    def _file_name(run: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", run):
            raise ValueError(f"run name {run!r} must use letters, digits, '_', '.', '+' and '-' only")
        return f"{run}.json"

    def path(self, run: str) -> Path:
        return self.folder / self._file_name(run)

    def get(self, run: str) -> dict[str, Any] | None:
        """The cached result of ``run``, or None (a damaged file counts as missing)."""
        try:
            return json.loads(self.path(run).read_text())
        except (OSError, ValueError):
            return None

    def put(self, run: str, result: Mapping[str, Any]) -> None:
        write_json_atomically(self.path(run), dict(result))

    def runs(self) -> dict[str, dict[str, Any]]:
        """Every cached run by name."""
        found = {}
        for path in sorted(self.folder.glob("*.json")):
            if path.name == "config.json":
                continue
            try:
                found[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
        return found


# ------------------------------------------------------------------------------------ numbers
def mean_sd(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation of the defined values, and how many there were."""
    defined = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not defined:
        return None, None, 0
    mean = math.fsum(defined) / len(defined)
    if len(defined) < 2:
        return mean, None, len(defined)
    var = math.fsum((v - mean) ** 2 for v in defined) / (len(defined) - 1)
    return mean, math.sqrt(var), len(defined)


def fmt_mean_sd(values: Iterable[float | None], scale: float = 1.0, digits: int = 1) -> str:
    """``mean ± sd`` (``mean`` alone for one value, ``n/a`` for none), values times ``scale``."""
    mean, sd, n = mean_sd(values)
    if mean is None:
        return "n/a"
    text = f"{mean * scale:.{digits}f}"
    if sd is not None:
        text += f" ± {sd * scale:.{digits}f}"
    return text


def fmt_range(values: Iterable[float | None], scale: float = 1.0, digits: int = 2) -> str:
    """``min-max`` of the defined values (``n/a`` for none)."""
    defined = [float(v) * scale for v in values if v is not None]
    if not defined:
        return "n/a"
    low, high = min(defined), max(defined)
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}-{high:.{digits}f}"


def fmt_seconds(seconds: float) -> str:
    """``1 h 02 min``, ``3 min 05 s`` or ``12.3 s``."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.1f} s"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table (cells are turned into text; ``|`` is escaped)."""
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------- docs/benchmarks.md
def section_markers(name: str) -> tuple[str, str]:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ValueError(f"section name {name!r} must use letters, digits, '_' and '-' only")
    return f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"


def write_section(doc: str | os.PathLike[str], name: str, body: str) -> Path:
    """Put ``body`` between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in ``doc``.

    An existing section of that name is replaced; otherwise the section is appended. Everything
    else in the file is kept. A missing file is created with a short title.
    """
    path = Path(doc)
    begin, end = section_markers(name)
    text = path.read_text() if path.exists() else DOC_TITLE
    block = f"{begin}\n{body.strip()}\n{end}"
    start = text.find(begin)
    if start >= 0:
        stop = text.find(end, start)
        if stop < 0:
            raise ValueError(f"{path}: section {name!r} has {begin} but no {end}; fix the file by hand")
        text = text[:start] + block + text[stop + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, text)
    return path


def save_report(report: Any, json_path: Path | None, doc: Path | None, section: str, render) -> None:
    """Write ``report`` as JSON to ``json_path`` and ``render(report)`` as section ``section`` of
    ``doc`` (each when given), saying where the section went."""
    if json_path:
        write_json_atomically(json_path, report)
    if doc:
        write_section(doc, section, render(report))
        print(f"wrote {doc}")


def write_text_atomically(path: Path, text: str) -> None:
    """Write a text file atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Stopwatch:
    """Seconds since creation."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started


# ------------------------------------------------------------------------------ phantom data
def phantom_study(
    folder: str | os.PathLike[str],
    *,
    cases: int,
    seed: int,
    shape: Sequence[int],
    labeled: int | None = None,
    domain: str = "A",
) -> Path:
    """A phantom study in ``folder``, written once: a ``<folder>.complete.json`` marker holding the
    parameters says it is whole; a folder without it (an interrupted write) is written again."""
    from napari_uamc.data.phantoms import write_phantom_study

    params = {"cases": cases, "seed": seed, "shape": list(shape), "labeled": labeled, "domain": domain}
    return built_once(Path(folder), params, lambda target: write_phantom_study(
        target, cases=cases, seed=seed, shape=tuple(shape), labeled=labeled, domain=domain, overwrite=True))


def built_once(folder: Path, params: Any, build: Callable[[Path], Any]) -> Path:
    """``folder``, written by ``build(folder)`` once: a ``<folder>.complete.json`` marker holding
    ``params`` says it is whole; a folder without it (an interrupted write) or made with other
    parameters is removed and built again. Benchmarks run side by side take turns on a lock file
    beside it (``fcntl.flock``), so the second waits for the first's build instead of racing it."""
    import fcntl

    marker = folder.parent / f"{folder.name}.complete.json"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        try:
            if json.loads(marker.read_text()) == params and folder.is_dir():
                return folder
        except (OSError, ValueError):
            pass
        marker.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        build(folder)
        write_json_atomically(marker, params)
    return folder
