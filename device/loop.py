"""The loop: capture never waits on detection, publishing or storage.

Threads:

* **capture** (owned by the source): fills the :class:`FrameRing` and pushes packets to the packet sinks (the
  pre-roll ring). It never blocks on anything downstream.
* **detect** (``doorkeep-detect``): takes the latest frame from the ring (latest-wins: frames it was too slow for
  are counted as ``skipped``) and runs it through the :class:`~doorkeep.device.detect.pipeline.DetectionPipeline`
  (gate → detector → tracker — the same object ``doorkeep scan`` runs); events go on a queue.
* **events** (``doorkeep-events``): hands each event to the event sinks (MQTT publisher, vault), which may be slow.

Both are :class:`~doorkeep.device.worker.Worker` threads (``loop.workers``) for the supervisor.

Example::

    pipeline = DetectionPipeline(gate=gate, detector=det, tracker=tracker)
    loop = CaptureLoop(source, ring, pipeline, event_sinks=[publisher])
    with loop:
        wait_for_signal()
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Self

import numpy as np

from .activity import log as activity
from .detect.pipeline import DetectionPipeline
from .detections import Detection
from .events import Event, EventSink
from .lograte import FailureLog, SinkFailures
from .rings import FrameInfo, FrameRing
from .sources.base import FrameSource
from .stats import Stats
from .worker import Worker

log = logging.getLogger(__name__)

#: Called on the detect thread for every frame taken from the ring: (frame, info, gate_open, detections or None).
#: Its return value is ignored.
FrameHook = Callable[[np.ndarray, FrameInfo, bool, "list[Detection] | None"], object]

_STOP = object()


class CaptureLoop:
    """Runs a started source's frames through the detection pipeline, and its events to the event sinks.

    Args:
        source: the frame source (already attached to ``ring`` and its packet sinks).
        ring: the lores frame ring the source fills.
        pipeline: gate → detector → tracker (``None``: frames are only counted). Its ``stats`` become the loop's.
        event_sinks: receive every event on the events thread.
        stats: where fps, drops and stage latencies go (a new :class:`Stats` if None).
        on_frame: optional hook on the detect thread (demo overlays, tests).
        max_events: bound of the event queue; overflowing events are counted as ``events_dropped``.
    """

    def __init__(self, source: FrameSource, ring: FrameRing, pipeline: DetectionPipeline | None = None, *,
                 event_sinks: Sequence[EventSink] = (), stats: Stats | None = None,
                 on_frame: FrameHook | None = None, max_events: int = 1024) -> None:
        self.source = source
        self.ring = ring
        self.pipeline = pipeline or DetectionPipeline()
        self.event_sinks = list(event_sinks)
        self.stats = stats or Stats()
        self.pipeline.stats = self.stats
        self.on_frame = on_frame
        self._events: queue.Queue[object] = queue.Queue(max_events)
        self._queue_full = FailureLog(activity, "event queue", traceback=False)  # said once a minute, counted
        self._lock = threading.Lock()
        self._running = False
        #: The loop's two supervised threads (register them with a Supervisor).
        self.detect_worker = _DetectWorker(self)
        self.events_worker = _EventsWorker(self)
        self.stats.gauge("capture_drops", lambda: source.drops)
        self.stats.gauge("ring_overruns", lambda: ring.overruns)
        self.stats.gauge("frames_skipped", lambda: ring.skipped)
        self.stats.gauge("captured", lambda: ring.frames)
        self.stats.gauge("capture_fps", ring.fps)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def workers(self) -> list[Worker]:
        """The loop's workers: detect and events."""
        return [self.detect_worker, self.events_worker]

    def start(self) -> None:
        """Start the worker threads, then the source."""
        with self._lock:
            if self._running:
                return
            try:
                self.detect_worker.start()
                self.events_worker.start()
                self.source.start()
            except BaseException:  # no worker outlives a failed start
                self._stop_workers()
                raise
            self._running = True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the source, then the workers (events already queued are delivered). Idempotent."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self.source.stop()
            self._stop_workers(timeout)

    def _stop_workers(self, timeout: float = 5.0) -> None:
        self.detect_worker.stop(timeout)
        self.events_worker.stop(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _queue_event(self, ev: Event) -> None:
        try:
            self._events.put_nowait(ev)
            self.stats.count("events")
            self._queue_full.ok()
        except queue.Full:
            self.stats.count("events_dropped")
            self._queue_full.failed(f"(full: dropped {ev.kind} {ev.phase})")


class _DetectWorker(Worker):
    """``doorkeep-detect``: latest frame from the ring → gate → detector → tracker; events onto the queue."""

    stall_s = 30.0  # one inference takes < 1 s even on a Pi Zero 2; 30 s without a pass means it is hung

    def __init__(self, loop: CaptureLoop) -> None:
        super().__init__("detect", stats=loop.stats)
        self.loop = loop
        self.failures = FailureLog(log, "detect stage")

    def _wake(self) -> None:
        self.loop.ring.wake_readers()

    def _run(self) -> None:
        loop = self.loop
        ring, pipe, stats = loop.ring, loop.pipeline, loop.stats
        frame = ring.empty_frame()
        seq = -1
        while not self.stopping:
            self.mark()
            info = ring.read_latest(frame, after_seq=seq, timeout=0.2)
            if info is None:
                continue
            seq = info.seq
            stats.frame(info.t_capture)
            try:
                events = pipe.step(frame, info.t_capture, t_wall=info.t_wall)
                if loop.on_frame is not None:
                    loop.on_frame(frame, info, pipe.motion, pipe.last)
                for ev in events:
                    loop._queue_event(ev)
            except Exception:  # noqa: BLE001 — one bad frame must not end detection; counted, logged by FailureLog
                stats.count("detect_errors")
                self.failures.failed(f"on frame {seq}")
            else:
                self.failures.ok()


class _EventsWorker(Worker):
    """``doorkeep-events``: hands each queued event to the event sinks; on stop, delivers what is queued first."""

    def __init__(self, loop: CaptureLoop) -> None:
        super().__init__("events", stats=loop.stats)
        self.loop = loop
        self.failures = SinkFailures(log, "event sink")

    def _wake(self) -> None:
        try:
            self.loop._events.put_nowait(_STOP)
        except queue.Full:
            pass  # the worker drains the queue, then sees the stop flag on its next timeout

    def _run(self) -> None:
        q = self.loop._events
        while True:
            self.mark()
            try:
                ev = q.get(timeout=0.5)
            except queue.Empty:
                if self.stopping:
                    return
                continue
            if ev is _STOP:
                if self.stopping:
                    return
                continue  # a stale sentinel from an earlier stop
            t0 = time.perf_counter()
            for sink in self.loop.event_sinks:
                if not self.failures.call(sink, sink.on_event, ev):
                    self.loop.stats.count("publish_errors")
            self.loop.stats.observe("publish", time.perf_counter() - t0)


@contextmanager
def stop_on_signals(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[threading.Event]:
    """Within the block, SIGINT/SIGTERM set the yielded event instead of raising; handlers are restored after.

    Must be used on the main thread. Example::

        with stop_on_signals() as stop, doorbell:
            stop.wait()
    """
    stop = threading.Event()

    def _handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    old = {s: signal.signal(s, _handler) for s in signals}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
