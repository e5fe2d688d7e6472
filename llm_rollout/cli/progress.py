"""A terminal progress line for byte-heavy work: bytes, rate and ETA."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

REFRESH_SECONDS = 0.1  # redraw at most ten times a second on a terminal
LOG_EVERY_SECONDS = 5.0  # when not a terminal (CI logs), a line every few seconds


def human_bytes(count: float) -> str:
    """1536 → '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{count:.0f} B"
        count /= 1024
    raise AssertionError("unreachable")


class TerminalProgress:
    """Implements `weights.progress.Progress` on a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._label, self._total, self._done = "", 0, 0
        self._started = self._drawn = 0.0
        self._interactive = self.stream.isatty()

    def start(self, label: str, total_bytes: int) -> None:
        with self._lock:
            self._label, self._total, self._done = label, total_bytes, 0
            self._started = self._drawn = time.monotonic()
            self._draw(force=True)

    def advance(self, done_bytes: int) -> None:
        with self._lock:
            self._done += done_bytes
            self._draw()

    def finish(self) -> None:
        with self._lock:
            if self._total or self._done:
                self._draw(force=True)
                if self._interactive:
                    self.stream.write("\n")
            self._total = self._done = 0

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        interval = REFRESH_SECONDS if self._interactive else LOG_EVERY_SECONDS
        if not force and now - self._drawn < interval:
            return
        self._drawn = now
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / elapsed
        remaining = (self._total - self._done) / rate if rate > 0 else float("inf")
        eta = time.strftime("%H:%M:%S", time.gmtime(remaining)) if remaining < 864000 else "--"
        percent = 100 * self._done / self._total if self._total else 100.0
        line = (
            f"{self._label}: {human_bytes(self._done)} / {human_bytes(self._total)} "
            f"({percent:.0f}%)  {human_bytes(rate)}/s  ETA {eta}"
        )
        self.stream.write(f"\r{line}\033[K" if self._interactive else f"{line}\n")
        self.stream.flush()
