"""A dependency-free progress bar with ETA for long CLI work (written to stderr)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_seconds(seconds: float) -> str:
    """``75`` -> ``'1:15'``, ``3725`` -> ``'1:02:05'``."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressBar:
    """``[#####.....] 12/40  30% 0:05 left  <message>`` on one updating line.

    On a terminal the line is redrawn in place; otherwise (logs, CI) a line is printed at most
    every ``log_interval`` seconds so logs stay short.
    """

    def __init__(
        self,
        total: int,
        label: str = "",
        stream: TextIO | None = None,
        width: int = 24,
        log_interval: float = 10.0,
    ) -> None:
        self.total = max(1, int(total))
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.log_interval = log_interval
        self.start = time.perf_counter()
        self._last_log = -float("inf")
        self._interactive = bool(getattr(self.stream, "isatty", lambda: False)())

    def update(self, done: int, message: str = "", eta: float | None = None) -> None:
        """Show ``done`` of the total; ``eta`` (seconds left) when the caller knows better than
        the bar's own estimate from the time since it was made."""
        done = min(max(0, int(done)), self.total)
        elapsed = time.perf_counter() - self.start
        fraction = done / self.total
        if eta is None:
            eta = elapsed / done * (self.total - done) if done else float("nan")
        filled = int(round(self.width * fraction))
        bar = "#" * filled + "." * (self.width - filled)
        eta_text = format_seconds(eta) + " left" if done else "--:-- left"
        line = f"{self.label} [{bar}] {done}/{self.total} {fraction:4.0%} {eta_text}"
        if message:
            line += f"  {message}"
        if self._interactive:
            self.stream.write("\r" + line[:200].ljust(80))
            if done >= self.total:
                self.stream.write("\n")
        elif done >= self.total or elapsed - self._last_log >= self.log_interval:
            self._last_log = elapsed
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self, message: str = "") -> None:
        elapsed = time.perf_counter() - self.start
        if self._interactive:
            self.stream.write("\n")
        self.stream.write(f"{self.label} done in {format_seconds(elapsed)}")
        self.stream.write(f"  {message}\n" if message else "\n")
        self.stream.flush()
