"""Large owner-channel answers: streamed from the file, a window of QoS 1 messages in flight, one job at a time.

- :func:`file_range` reads a byte range of a file in :data:`~.protocol.CHUNK` pieces (never the whole file);
- :class:`Streamer` publishes messages with at most ``window`` awaiting PUBACK, so device memory holds at most
  ``window`` chunks whatever the size of the clip; a transfer with no PUBACK progress for ``stall_s`` stops (the
  owner resumes from the offset it has);
- :class:`TransferWorker` runs those jobs on its own thread (``doorkeep-transfer``) so a long export never holds up
  the inbox (footage requests, other commands).

End-to-end flow control is the owner's: each ``fetch`` asks for at most :data:`~.protocol.MAX_RANGE` bytes and the
owner asks for the next range only as the previous one arrives.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..errors import ChannelError, PublishError
from ..publish.mqtt import MqttClient, PublishHandle
from ..worker import Worker
from .protocol import CHUNK

log = logging.getLogger(__name__)

Job = Callable[[threading.Event], None]


def file_range(path: Path, offset: int, length: int, *, chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` pieces of ``path[offset:offset+length]``, read one chunk at a time."""
    with open(path, "rb") as f:
        f.seek(offset)
        end = offset + length
        pos = offset
        while pos < end:
            data = f.read(min(chunk, end - pos))
            if not data:
                return
            yield pos, data
            pos += len(data)


def bytes_pieces(data: bytes, offset: int = 0, *, chunk: int = CHUNK) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)`` pieces of an in-memory object (small ones: snapshots, listings)."""
    for pos in range(offset, max(len(data), offset + 1), chunk):
        yield pos, data[pos:pos + chunk]


class Streamer:
    """Publishes on one MQTT client with at most ``window`` messages awaiting PUBACK.

    Raises :class:`ChannelError` ``stalled`` when no message is acknowledged for ``stall_s`` (broker gone), and
    ``stopped`` when ``stop`` is set.
    """

    def __init__(self, client: MqttClient, *, window: int = 8, stall_s: float = 60.0) -> None:
        self.client, self.window, self.stall_s = client, window, stall_s
        self._cond = threading.Condition()

    def _wake(self, _h: PublishHandle) -> None:
        with self._cond:
            self._cond.notify_all()

    def send(self, topic: str, messages: Iterable[bytes], *, stop: threading.Event | None = None) -> int:
        """Publish every message (QoS 1, not retained) in order; returns how many, once all are acknowledged."""
        pending: list[PublishHandle] = []
        sent = 0

        def drain(limit: int) -> None:
            deadline = time.monotonic() + self.stall_s
            with self._cond:
                while True:
                    pending[:] = [h for h in pending if not h.done()]
                    if len(pending) <= limit:
                        return
                    if stop is not None and stop.is_set():
                        raise ChannelError("stopped", "the device is shutting down")
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ChannelError("stalled", f"no PUBACK for {self.stall_s:.0f} s")
                    self._cond.wait(min(left, 0.5))

        for msg in messages:
            drain(self.window - 1)
            try:
                h = self.client.publish_raw(topic, msg, qos=1)
            except PublishError as exc:
                raise ChannelError("publish_failed", str(exc)) from None
            h.add_done_callback(self._wake)
            pending.append(h)
            sent += 1
        drain(0)
        return sent


class TransferWorker(Worker):
    """One thread (``doorkeep-transfer``) running queued transfer jobs in order; at most ``max_jobs`` waiting
    (``submit`` says no). A job gets an event that is set when the worker stops."""

    def __init__(self, *, max_jobs: int = 8) -> None:
        super().__init__("transfer")
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_jobs)
        self._halt = threading.Event()

    def submit(self, job: Job) -> bool:
        """Queue ``job(stop_event)``; False when the queue is full (the caller answers ``busy``)."""
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            return False
        return True

    def _wake(self) -> None:
        self._halt.set()  # a running transfer stops at its next message; the owner resumes later
        while True:
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        try:
            self._jobs.put_nowait(None)
        except queue.Full:
            pass

    def _run(self) -> None:
        self._halt.clear()
        while not self.stopping:
            job = self._jobs.get()
            if job is None:
                continue
            try:
                job(self._halt)
            except Exception:
                log.exception("owner-channel transfer failed")
            self.mark()
