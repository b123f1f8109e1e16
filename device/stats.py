"""One stats object for the whole pipeline: counters, capture fps and per-stage latency windows.

Thread-safe and cheap: recording a value is a lock plus a store into a preallocated window. ``snapshot()`` returns
plain JSON-able numbers (the MQTT publisher sends it as the heartbeat).

Example::

    stats = Stats()
    stats.frame(info.t_capture)              # detect thread, once per analysed frame
    with stats.timed("detect"):
        dets = detector.detect(frame)
    stats.count("events")
    stats.snapshot()   # {"fps": 29.9, "frames": 120, "counters": {...}, "latency_ms": {"detect": {...}}}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: The stages the loop times; others may add their own names.
STAGES = ("gate", "detect", "events", "publish")


class _Window:
    """The last ``size`` samples of one measure, in a preallocated array."""

    __slots__ = ("i", "n", "values")

    def __init__(self, size: int) -> None:
        self.values = np.zeros(size, dtype=np.float64)
        self.n = 0
        self.i = 0

    def add(self, v: float) -> None:
        self.values[self.i] = v
        self.i = (self.i + 1) % len(self.values)
        self.n = min(self.n + 1, len(self.values))

    def summary(self) -> dict[str, float]:
        if not self.n:
            return {"n": 0, "p50": 0.0, "p95": 0.0, "max": 0.0}
        v = self.values[: self.n]
        p50, p95 = np.percentile(v, (50, 95))
        return {"n": int(self.n), "p50": round(float(p50) * 1e3, 3), "p95": round(float(p95) * 1e3, 3),
                "max": round(float(v.max()) * 1e3, 3)}


class Stats:
    """Counters, capture fps and rolling per-stage latency (p50/p95 over the last ``window`` samples).

    ``gauges`` are callables sampled at snapshot time (ring overruns, pre-roll bytes, ...), so hot paths never
    have to copy their counters here.
    """

    def __init__(self, *, window: int = 256) -> None:
        self._lock = threading.Lock()
        self._window = window
        self._latency: dict[str, _Window] = {s: _Window(window) for s in STAGES}
        self._frame_times = _Window(window)
        self._counters: dict[str, int] = {"frames": 0}
        self._gauges: dict[str, Callable[[], float]] = {}
        self._crashes: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()

    def frame(self, t_capture: float) -> None:
        """Record one frame taken for analysis; ``fps`` in the snapshot is the rate of these."""
        with self._lock:
            self._counters["frames"] += 1
            self._frame_times.add(t_capture)

    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def record_crash(self, worker: str, exc: BaseException) -> None:
        """Count a crashed worker thread (``worker_crashes``) and keep its last exception for the snapshot."""
        text = f"{type(exc).__name__}: {exc}"[:200]
        with self._lock:
            self._counters["worker_crashes"] = self._counters.get("worker_crashes", 0) + 1
            prev = self._crashes.get(worker)
            self._crashes[worker] = {"count": (prev["count"] if prev else 0) + 1, "error": text}

    def crashes(self) -> dict[str, dict[str, Any]]:
        """``{worker name: {"count": n, "error": "Type: message"}}`` for every worker that crashed."""
        with self._lock:
            return {k: dict(v) for k, v in self._crashes.items()}

    def observe(self, stage: str, seconds: float) -> None:
        """Record one latency sample for ``stage``."""
        with self._lock:
            w = self._latency.get(stage)
            if w is None:
                w = self._latency[stage] = _Window(self._window)
            w.add(seconds)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time the body as one sample of ``stage``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.observe(stage, time.perf_counter() - t0)

    def gauge(self, name: str, fn: Callable[[], float]) -> None:
        """Sample ``fn()`` as ``name`` in every snapshot."""
        with self._lock:
            self._gauges[name] = fn

    def fps(self) -> float:
        """Analysed frames per second over the window."""
        with self._lock:
            return self._fps_locked()

    def _fps_locked(self) -> float:
        w = self._frame_times
        if w.n < 2:
            return 0.0
        v = w.values[: w.n]
        span = float(v.max() - v.min())
        return (w.n - 1) / span if span > 0 else 0.0

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able numbers: uptime, fps, counters, gauges, latency p50/p95/max in milliseconds, and
        ``crashes`` (per crashed worker: count and last error) when any worker crashed."""
        with self._lock:
            counters = dict(self._counters)
            gauges = dict(self._gauges)
            out: dict[str, Any] = {
                "uptime_s": round(time.monotonic() - self.started, 3),
                "fps": round(self._fps_locked(), 2),
                "counters": counters,
                "latency_ms": {k: w.summary() for k, w in self._latency.items()},
            }
            if self._crashes:
                out["crashes"] = {k: dict(v) for k, v in self._crashes.items()}
        out["gauges"] = {k: float(fn()) for k, fn in gauges.items()}
        return out
