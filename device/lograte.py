"""``FailureLog``: one failure logged with its traceback, repeats counted — never a log line per frame or packet.

A detector that keeps failing, or a broken packet sink, would otherwise log a full traceback 30 times a second and
fill the SD card. Use one ``FailureLog`` per failure site (they are cheap) from any thread that repeats work:

* the first failure of a streak is logged with its traceback (``logger.exception``), at most once per interval;
* further failures are counted, and at most once per ``interval_s`` one line says how many there were and the
  latest exception (no traceback);
* :meth:`~FailureLog.ok` after a logged streak says once that the site recovered (and flushes the pending count);
  a failure that flaps (fail, ok, fail, ok, ...) is therefore logged once per interval, not twice per frame.

Example::

    failures = FailureLog(log, "detect stage")
    while running:
        try:
            step()
        except Exception:
            failures.failed()              # inside the except block: the traceback is the current exception
            continue
        failures.ok()                      # cheap when nothing failed: one attribute test

Attributes: ``total`` (failures ever), ``suppressed`` (failures not yet reported in a summary line).

A fan-out (packet sinks, event sinks) keeps one ``FailureLog`` per sink with :class:`SinkFailures`::

    failures = SinkFailures(log, "packet sink")
    for sink in sinks:
        failures.call(sink, sink.on_packet, packet)    # False when it raised (logged, rate-limited)
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: Default: at most one traceback and one summary line per minute and failure site.
INTERVAL_S = 60.0


class FailureLog:
    """Rate-limited logging of one repeated failure (see the module docstring).

    Args:
        logger: where lines go. what: names the failing thing in every line ("detect stage", "packet sink X").
        interval_s: at most one traceback and one count line per this many seconds.
        clock: monotonic clock (tests pass their own).
        traceback: False for an expected failure (a refused message, a full queue): its lines are warnings, and
            the first names the exception (or ``detail``) without its traceback.
    """

    def __init__(self, logger: logging.Logger, what: str, *, interval_s: float = INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, traceback: bool = True) -> None:
        self.logger = logger
        self.traceback = traceback
        self._level = logging.ERROR if traceback else logging.WARNING
        self.what = what
        self.interval_s = interval_s
        self.clock = clock
        self.total = 0
        self.suppressed = 0
        self._streak = 0
        self._last_traceback: float | None = None
        self._last_line = float("-inf")
        self._announced = False
        self._lock = threading.Lock()

    def failed(self, detail: str = "") -> None:
        """Record one failure; call inside the ``except`` block. ``detail`` is added to the traceback line."""
        now = self.clock()
        exc = sys.exc_info()[1]
        with self._lock:
            self.total += 1
            self._streak += 1
            first = self._streak == 1 and (self._last_traceback is None
                                           or now - self._last_traceback >= self.interval_s)
            if first:
                self._last_traceback = self._last_line = now
                self._announced = True
            else:
                self.suppressed += 1
                if now - self._last_line < self.interval_s:
                    return
                n, self.suppressed, self._last_line = self.suppressed, 0, now
        if first and self.traceback and exc is not None:
            self.logger.exception("%s failed%s", self.what, f" {detail}" if detail else "")
        elif first:
            self.logger.log(self._level, "%s failed%s", self.what, f" {detail}" if detail else f" ({_summary(exc)})")
        else:
            self.logger.log(self._level, "%s failed %d more times in the last %.0f s (latest: %s)", self.what, n,
                              self.interval_s, _summary(exc) if exc is not None or not detail else detail)

    def ok(self) -> None:
        """The site worked. After a streak whose first failure was logged, say once that it recovered; a streak
        that was only counted (a flapping failure) is reported in the next count line, not here."""
        if not self._streak:
            return
        now = self.clock()
        with self._lock:
            streak, announced = self._streak, self._announced
            self._streak, self._announced = 0, False
            n = 0
            if self.suppressed and (announced or now - self._last_line >= self.interval_s):
                n, self.suppressed, self._last_line = self.suppressed, 0, now
        if n:
            self.logger.error("%s failed %d more times (not yet reported)", self.what, n)
        if announced:
            self.logger.warning("%s recovered after %d failures", self.what, streak)


class SinkFailures:
    """One :class:`FailureLog` per sink of a fan-out: a broken sink logs once, then counts — never once per item,
    and never hides another sink's first failure. ``what`` prefixes the sink's type name in every line."""

    def __init__(self, logger: logging.Logger, what: str, **kw: Any) -> None:
        self.logger = logger
        self.what = what
        self._kw = kw
        self._logs: dict[int, FailureLog] = {}

    def call(self, sink: object, fn: Callable[..., object], *args: object) -> bool:
        """``fn(*args)`` for ``sink``; an exception is logged (rate-limited) and swallowed. Returns success."""
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 — one broken sink must not stop the others or the thread; logged here
            self.log_for(sink).failed()
            return False
        if self._logs:
            f = self._logs.get(id(sink))
            if f is not None:
                f.ok()
        return True

    def log_for(self, sink: object) -> FailureLog:
        f = self._logs.get(id(sink))
        if f is None:
            f = self._logs[id(sink)] = FailureLog(self.logger, f"{self.what} {type(sink).__name__}", **self._kw)
        return f

    @property
    def total(self) -> int:
        """Failures of every sink so far."""
        return sum(f.total for f in list(self._logs.values()))


def _summary(exc: BaseException | None) -> str:
    return "no exception" if exc is None else f"{type(exc).__name__}: {exc}"[:200]
