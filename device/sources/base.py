"""The one small frame-source interface.

A source produces two things, with capture timestamps, and pushes them through narrow methods:

* lores I420 frames for analysis, written straight into a :class:`~doorkeep.device.rings.FrameRing` slot;
* encoded H.264 access units (:class:`~doorkeep.device.frames.Packet`, Annex B, SPS/PPS on every keyframe) to a
  list of packet sinks (the pre-roll ring; through it, the vault's clip writer).

``main_filters`` are callables applied in place to every MAIN I420 frame *before* it is encoded, so what they mask
(a privacy mask) never exists in any clip. ``on_metadata`` receives per-frame camera metadata (e.g. ``{"Lux": 3.2}``
from picamera2) on the capture thread.

``pts`` of every packet is in microseconds since the source started. Sources never block on their sinks.

Example::

    with SyntheticSource(width=1280, height=720, fps=30) as src:   # any FrameSource
        src.attach(ring=ring, packet_sinks=[preroll])
        src.start()
        src.wait(10)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

import numpy as np

from ..errors import CaptureError
from ..frames import Packet, PacketSink
from ..lograte import FailureLog, SinkFailures
from ..rings import FrameRing
from ..worker import Worker

log = logging.getLogger(__name__)

#: A main filter edits a full-size I420 frame in place before encoding.
MainFilter = Callable[[np.ndarray], None]
MetadataHook = Callable[[dict[str, Any]], None]


class FrameSource:
    """Base of every source: sinks, start/stop with locking, idempotent close, ``with`` support.

    Subclasses implement ``_start()`` and ``_stop()`` and call :meth:`_emit_packet`, :meth:`_filter_main`,
    :meth:`_metadata` and (through the ring) ``begin_write``/``commit``.

    Counters: ``frames`` produced, ``drops`` (frames the source could not capture on time: a camera would have
    lost them), ``packets`` emitted, ``max_lag`` (worst lateness behind the frame schedule, seconds).
    """

    #: (width, height) of the lores frames and of the encoded main stream; set by subclasses.
    lores_size: tuple[int, int] = (0, 0)
    main_size: tuple[int, int] = (0, 0)
    fps: float = 0.0

    def __init__(self, *, main_filters: Sequence[MainFilter] = (), on_metadata: MetadataHook | None = None) -> None:
        self.main_filters: list[MainFilter] = list(main_filters)
        self.on_metadata = on_metadata
        self.ring: FrameRing | None = None
        self.packet_sinks: list[PacketSink] = []
        self.frames = 0
        self.drops = 0
        self.packets = 0
        #: Worst lateness (s) of a paced source behind its frame schedule (frames within the buffers still count).
        self.max_lag = 0.0
        #: Set when the source ended by itself (end of file) or failed; ``error`` holds the failure.
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._running = False
        self._closed = False
        self._sink_failures = SinkFailures(log, "packet sink")
        self._metadata_failures = FailureLog(log, "metadata hook")

    # -------------------------------------------------------------------------------------------- public API

    def attach(self, *, ring: FrameRing | None = None, packet_sinks: Sequence[PacketSink] = ()) -> None:
        """Connect the frame ring and packet sinks (before :meth:`start`)."""
        if ring is not None and (ring.width, ring.height) != self.lores_size:
            raise CaptureError(f"ring is {ring.width}x{ring.height} but the source's lores stream is "
                               f"{self.lores_size[0]}x{self.lores_size[1]}")
        self.ring = ring
        self.packet_sinks = list(packet_sinks)

    @property
    def running(self) -> bool:
        return self._running

    @property
    def workers(self) -> list[Worker]:
        """The source's supervised threads (none for a source driven by a library's own thread)."""
        return []

    def start(self) -> None:
        """Start capturing. Raises :class:`CaptureError` if the source is closed or cannot start."""
        with self._lock:
            if self._closed:
                raise CaptureError(f"{type(self).__name__} is closed")
            if self._running:
                return
            self.finished.clear()
            self.error = None
            self._start()
            self._running = True

    def stop(self) -> None:
        """Stop capturing (idempotent); returns when no more frames or packets will be pushed."""
        with self._lock:
            if not self._running:
                return
            self._running = False
            self._stop()

    def close(self) -> None:
        """Stop and release the device or file (idempotent)."""
        self.stop()
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the source ends by itself (end of file, duration, failure); True if it did."""
        return self.finished.wait(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ for subclasses

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Release resources; called once, after stop."""

    def _filter_main(self, frame: np.ndarray) -> None:
        for f in self.main_filters:
            f(frame)

    def _emit_packet(self, packet: Packet) -> None:
        self.packets += 1
        for sink in self.packet_sinks:  # one broken sink must not stop capture; logged once, then counted
            self._sink_failures.call(sink, sink.on_packet, packet)

    def _metadata(self, md: dict[str, Any]) -> None:
        if self.on_metadata is not None:
            try:
                self.on_metadata(md)
            except Exception:  # noqa: BLE001 — night judging failing must not stop capture; logged by FailureLog
                self._metadata_failures.failed()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self.finished.set()


class ThreadedSource(FrameSource):
    """A source driven by its own capture thread (``doorkeep-capture-<Class>``, a :class:`Worker`) running
    :meth:`_run` until ``_stop_event`` is set.

    ``worker`` is the supervised thread. It cannot be restarted in-process (the decoder or device state is lost),
    so a crash sets ``error``/``finished`` and a supervisor asks for a process restart.
    """

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.worker = _CaptureWorker(self)

    @property
    def workers(self) -> list[Worker]:
        return [self.worker]

    @property
    def _stop_event(self) -> threading.Event:
        return self.worker._stop_event

    def _start(self) -> None:
        self._prepare()
        self.worker.start()

    def _stop(self) -> None:
        self.worker.stop()

    def _prepare(self) -> None:
        """Open files/devices before the thread starts (errors surface from :meth:`start`)."""

    def _run(self) -> None:
        raise NotImplementedError


class _CaptureWorker(Worker):
    def __init__(self, source: ThreadedSource) -> None:
        super().__init__(f"capture-{type(source).__name__}", restartable=False)
        self.source = source

    def _run(self) -> None:
        try:
            self.source._run()
        except BaseException as exc:
            self.source.error = exc  # before ``finished``: whoever wakes on it must see the error
            raise
        finally:
            self.source.finished.set()


class Pacer:
    """Holds a capture loop to ``fps`` frames per second, the way a camera with ``buffers`` frame buffers would.

    A late consumer gets queued frames late (with their scheduled capture time), as from a camera's buffer queue;
    only when it falls more than ``buffers`` frame periods behind are frames lost — counted in ``late`` — and the
    schedule re-anchored so lateness does not accumulate. ``max_lag`` is the worst lateness seen (seconds).
    """

    def __init__(self, fps: float, *, buffers: int = 4) -> None:
        self.period = 1.0 / fps
        self.buffers = buffers
        self._next: float | None = None
        self.late = 0
        self.max_lag = 0.0

    def wait(self, stop: threading.Event) -> float:
        """Sleep until the next frame is due (or ``stop``); returns the frame's capture time (monotonic)."""
        now = time.monotonic()
        if self._next is None:
            self._next = now
        elif now < self._next:
            stop.wait(self._next - now)
        else:
            lag = now - self._next
            self.max_lag = max(self.max_lag, lag)
            behind = int(lag / self.period)
            if behind > self.buffers:
                # Every buffer was full: a camera would have lost these frames. Skip ahead to the newest one.
                self.late += behind
                self._next += behind * self.period
        t = self._next
        self._next += self.period
        return t
