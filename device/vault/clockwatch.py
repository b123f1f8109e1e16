"""Wall-clock jumps, for retention by age: a clip's age counts only time the device could vouch for.

A Pi has no real-time clock. It boots into whatever time it last saved (or 1970) and then takes the time server's
word — and a spoofed time server can say it is next year, which would make every clip "older than 30 days" at once.
So retention does not age clips across a step of the wall clock larger than ``[vault] max_clock_jump_s``:

* **while running**, the offset between the wall clock and the monotonic clock only changes when the wall clock is
  stepped (NTP slews both alike). When it is ahead of the furthest accepted offset by more than the bound, the
  clock has *jumped* (small forward steps add up until they reach the bound; a step back and its correction
  cancel out);
* **at start**, the wall clock is compared with the last wall time this device saved (``clock.json`` in the state
  dir: hourly, on every jump and at a clean stop). More than the bound ahead is a jump too — a long power cut
  looks the same, and then clips are simply kept that much longer, never shredded early. A clock behind the saved
  time (a Pi booting at 1970) is audited, and trusted time stays at the saved time until the clock catches up.

Each jump is audited once (``clock_jump``: its size, the trusted time before it, the wall time after it) and
remembered: the age of a clip recorded before it is ``now - t_start - jump``. Smaller steps count as elapsed time,
and so do backward steps (a clip then only looks younger: it is kept longer); those larger than the bound are
audited too. Jumps that no clip predates any more are forgotten.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..fileio import write_atomic

log = logging.getLogger(__name__)
CLOCK_FILE = "clock.json"
_MAX_JUMPS = 64  # kept jumps; the oldest two merge beyond this (a clip before both is discounted by both)


class ClockWatch:
    """Detects wall-clock jumps and gives clips their trusted age (thread-safe enough: one keeper calls it).

    Args:
        path: where the trusted wall time and the jumps persist (``None``: in memory only).
        max_jump_s: the largest step of the wall clock that still counts as elapsed time.
        audit: ``audit(kind, **fields)`` that never raises.
        wall, mono: the clocks (tests pass their own).
        save_every_s: how often (monotonic seconds) the trusted wall time is saved while nothing happens.
    """

    def __init__(self, path: Path | None, *, max_jump_s: float, audit: Callable[..., object],
                 wall: Callable[[], float] = time.time, mono: Callable[[], float] = time.monotonic,
                 save_every_s: float = 3600.0) -> None:
        self.path = path
        self.max_jump_s = max_jump_s
        self._audit = audit
        self.wall = wall
        self.mono = mono
        self.save_every_s = save_every_s
        self.jumps: list[tuple[float, float]] = []  # (trusted wall time just before the jump, seconds jumped)
        self._saved_wall: float | None = None
        self._offset: float | None = None  # the furthest accepted wall - mono: where trusted time stands
        self._last = 0.0  # wall - mono at the last reading (a step back is judged against it)
        self._saved_at = float("-inf")
        self._load()

    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            doc = json.loads(self.path.read_text())
            self._saved_wall = float(doc["wall"])
            self.jumps = [(float(b), float(s)) for b, s in doc.get("jumps", [])]
        except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable: start afresh, say so once
            log.warning("%s unreadable (%s); clock jumps are judged from now on", self.path, exc)

    def save(self) -> None:
        """Persist the trusted wall time and the jumps (a failure is logged: the vault goes on)."""
        self._saved_at = self.mono()
        if self.path is None or self._offset is None:
            return
        doc = {"v": 1, "wall": round(self.mono() + self._offset, 3), "jumps": [list(j) for j in self.jumps]}
        try:
            write_atomic(self.path, json.dumps(doc).encode())
        except OSError as exc:
            log.warning("cannot save %s (%s)", self.path, exc)

    def check(self) -> float:
        """Read both clocks; record and audit a jump. Returns the wall time now (the retention pass's ``now``)."""
        w, m = self.wall(), self.mono()
        if self._offset is None:  # first reading of this run: against the last wall time saved
            self._offset = self._last = w - m
            saved = self._saved_wall
            if saved is not None and not self._forward(saved, w, "start") and w < saved:
                self._offset = saved - m  # trusted time never goes behind what this device already saw
                if w < saved - self.max_jump_s:
                    self._report(saved, w, "start")
        elif not self._forward(m + self._offset, w, "running") and w - m < self._last - self.max_jump_s:
            self._report(m + self._last, w, "running")
        self._last = w - m
        if m - self._saved_at >= self.save_every_s:
            self.save()
        return w

    def _forward(self, trusted: float, w: float, when: str) -> bool:
        """Record a jump if ``w`` is more than the bound ahead of ``trusted``."""
        if w - trusted > self.max_jump_s:
            self._offset = w - self.mono()  # the new reading is where trusted time stands from now on
            self._report(trusted, w, when)
            return True
        return False

    def _report(self, trusted: float, w: float, when: str) -> None:
        step = w - trusted
        if step > 0:
            self.jumps.append((trusted, step))
            if len(self.jumps) > _MAX_JUMPS:
                (b0, s0), (_, s1) = self.jumps[0], self.jumps[1]
                self.jumps[:2] = [(b0, s0 + s1)]  # conservative: clips before the first also skip the second
            log.warning("wall clock jumped forward %.0f s (%s); clips recorded before it are not aged by it",
                        step, when)
        else:
            log.warning("wall clock stepped back %.0f s (%s)", -step, when)
        self._audit("clock_jump", jump_s=round(step, 3), trusted=round(trusted, 3), wall=round(w, 3), at=when,
                    age_counted=step < 0)
        self.save()

    def age(self, t_start: float, now: float) -> float:
        """The age of a clip that started at wall time ``t_start``: ``now - t_start`` minus every forward jump
        recorded after it."""
        return now - t_start - sum(size for before, size in self.jumps if t_start <= before)

    def forget_before(self, starts: Iterable[float]) -> None:
        """Drop jumps that no clip (started at ``starts``) predates any more."""
        oldest = min(starts, default=None)
        kept = [j for j in self.jumps if oldest is not None and oldest <= j[0]]
        if kept != self.jumps:
            self.jumps = kept
            self.save()
