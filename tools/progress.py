"""Progress on long work (model fetch, ``scan``, ``eval``, ``evalset build``): one line on a terminal, rewritten in
place, removed when done. Silent when stderr is not a terminal (logs, pipes, CI, systemd) or when the command was
asked for ``--json``, so nothing but results reaches a script.

Example::

    with Progress("scan door.mp4", total=n_frames, unit="frames", enabled=not args.json) as bar:
        for i, frame in enumerate(frames, 1):
            ...
            bar.update(i)

Library code stays free of it: it takes a plain ``progress(done, total)`` callback (``bar.update`` is one).
"""

from __future__ import annotations

import shutil
import sys
import time
from types import TracebackType
from typing import Self, TextIO


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover


class Progress:
    """A self-rewriting status line on ``stream`` (default stderr); a no-op unless that is a terminal."""

    def __init__(self, label: str, *, total: float | None = None, unit: str = "", enabled: bool = True,
                 stream: TextIO | None = None, min_interval: float = 0.1) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.total = total
        self.unit = unit
        self.min_interval = min_interval
        self.enabled = enabled and _is_tty(self.stream)
        self.done = 0.0
        self._t0 = time.monotonic()
        self._last = 0.0
        self._width = 0

    def update(self, done: float, total: float | None = None) -> None:
        """Set the amount done (and the total, when it becomes known); redraws at most every ``min_interval``."""
        self.done = done
        if total is not None:
            self.total = total
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval and not (self.total and done >= self.total):
            return
        self._last = now
        self._draw(self.line(shutil.get_terminal_size((80, 24)).columns - 1))

    def advance(self, n: float = 1) -> None:
        self.update(self.done + n)

    def line(self, width: int = 1000) -> str:
        """The text shown, cut to ``width`` by shortening the label: ``label  40%  12/30 frames  (3 s)``."""
        fmt = _size if self.unit == "bytes" else (lambda v: f"{v:.0f}")
        unit = "" if self.unit in ("", "bytes") else f" {self.unit}"
        if self.total:
            pct = min(100, int(100 * self.done / self.total))
            count = f"{pct:3d}%  {fmt(self.done)}/{fmt(self.total)}{unit}"
        else:
            count = f"{fmt(self.done)}{unit}"
        tail = f"  {count}  ({time.monotonic() - self._t0:.0f} s)"
        room = max(8, width - len(tail))
        label = self.label if len(self.label) <= room else self.label[: room - 1] + "…"
        return (label + tail)[:width]

    def _draw(self, text: str) -> None:
        self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
        self.stream.flush()
        self._width = len(text)

    def close(self) -> None:
        """Remove the line (the command prints its own result)."""
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
