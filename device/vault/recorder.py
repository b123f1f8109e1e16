"""The clip recorder: a packet sink and event sink that writes one encrypted clip per person event.

On a person ``start`` it opens a clip and calls ``ring.flush_into(self)``: the pre-roll (from a config keyframe)
arrives first, then every live packet, with no gap and no duplicate. It records until ``postroll_s`` after the
last overlapping event's ``end``, then detaches from the ring and closes the clip (FINAL chunk, key wiped, manifest
signed, audited). Overlapping events extend the same clip.

``on_packet`` runs on the capture thread and never blocks: packets go to a bounded queue that one writer thread
drains; overflow is counted (and the writer skips to the next keyframe so the clip stays decodable). A write
error such as ENOSPC never reaches capture: the clip is closed torn, retention runs, and both are audited.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import nacl.utils

from ..events import Event
from ..frames import Packet, PacketSink
from ..identity import DeviceIdentity
from ..worker import Worker
from .audit import AuditLog
from .clips import ClipWriter, Codec
from .keys import PublicKeys
from .manifest import Manifest
from .store import ClipStore

log = logging.getLogger(__name__)
_STOP = object()


class PacketSource(Protocol):
    """The part of device/preroll.py's PacketRing the recorder uses."""

    def flush_into(self, sink: PacketSink) -> int: ...

    def detach(self, sink: PacketSink) -> None: ...


@dataclass
class _Open:
    writer: ClipWriter
    event_ids: list[str]
    active: set[str]
    t_start: float
    deadline: float | None = None
    need_key: bool = True
    dropped_seen: int = 0


def new_clip_id(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + "-" + nacl.utils.random(4).hex()


class ClipRecorder(PacketSink):
    """Writes clips for person events. Start with :meth:`start`, stop with :meth:`stop` (closes an open clip).

    Counters: ``dropped`` (queue overflow), ``clips`` closed, ``torn`` (closed by a write error).
    """

    def __init__(self, store: ClipStore, *, owner: PublicKeys, identity: DeviceIdentity, audit: AuditLog,
                 ring: PacketSource, codec: Codec | None = None, postroll_s: float = 5.0, chunk_bytes: int = 256 * 1024,
                 queue_size: int = 1024, fsync_chunks: bool = True, grace_s: float = 2.0,
                 on_closed: Callable[[str | None, bool], None] | None = None) -> None:
        self.store = store
        self._owner = owner
        self._identity = identity
        self._audit = audit
        self._ring = ring
        self._codec = codec or Codec()
        self._postroll = postroll_s
        self._chunk_bytes = chunk_bytes
        self._fsync = fsync_chunks
        self._grace = grace_s
        self._on_closed = on_closed
        self._q: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._gen = 0  # bumped per clip; packets carry it so stale ones are never written into the next clip
        self._clip: _Open | None = None
        #: The supervised writer thread (``doorkeep-vault-writer``).
        self.worker = _Writer(self)
        self.dropped = 0
        self.clips = 0
        self.torn = 0

    # --------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Close any open clip normally and stop the writer thread (bounded by ``timeout``). Idempotent."""
        self.worker.stop(timeout)
        with self._lock:
            if self._clip is not None:
                self._drain_locked()
                self._close_locked(torn=False)

    @property
    def recording(self) -> str | None:
        """The id of the clip being written, if any."""
        c = self._clip
        return c.writer.clip_id if c else None

    # ------------------------------------------------------------------------------------------ event side
    def on_event(self, event: Event) -> None:
        if event.kind != "person":
            return
        with self._lock:
            clip = self._clip
            if event.phase == "start":
                if clip is None:
                    self._open_locked(event)
                else:
                    if event.event_id not in clip.event_ids:
                        clip.event_ids.append(event.event_id)
                    clip.active.add(event.event_id)
                    clip.deadline = None
            elif event.phase == "end" and clip is not None and event.event_id in clip.active:
                clip.active.discard(event.event_id)
                if not clip.active:
                    clip.deadline = (event.t_end or event.t) + self._postroll

    def _open_locked(self, event: Event) -> None:
        clip_id = new_clip_id(event.t_start)
        try:
            writer = ClipWriter(self.store.clip_path(clip_id), owner=self._owner, clip_id=clip_id,
                                device_id=self._identity.device_id, t_start=event.t_start, event_id=event.event_id,
                                codec=self._codec, chunk_bytes=self._chunk_bytes, fsync_chunks=self._fsync)
        except OSError as exc:
            log.exception("cannot open clip %s", clip_id)
            self._safe_audit("clip_failed", clip_id=clip_id, event_id=event.event_id, error=exc.strerror or str(exc))
            if self._on_closed:
                self._on_closed(None, True)
            return
        self._gen += 1
        self._clip = _Open(writer, [event.event_id], {event.event_id}, event.t_start, dropped_seen=self.dropped)
        self._ring.flush_into(self)

    # ----------------------------------------------------------------------------------------- packet side
    def on_packet(self, packet: Packet) -> None:
        """Capture thread: enqueue, never block; count overflow."""
        try:
            self._q.put_nowait((self._gen, packet))
        except queue.Full:
            self.dropped += 1

    # ---------------------------------------------------------------------------------------- writer side
    def _writer_step(self) -> None:
        """One pass of the writer thread: write one queued packet, close a clip whose post-roll is over."""
        try:
            item = self._q.get(timeout=0.2)
        except queue.Empty:
            item = None
        if item is _STOP:  # only wakes the writer; its stop flag ends the loop
            item = None
        with self._lock:
            try:
                if item is not None:
                    self._write_locked(item)  # type: ignore[arg-type]
                c = self._clip
                if c is not None and c.deadline is not None and time.time() > c.deadline + self._grace:
                    self._close_locked(torn=False)  # packets stopped coming: close by the clock
            except Exception:  # one bad packet or close must not end recording
                log.exception("vault writer failed")

    def _drain_locked(self) -> None:
        while True:
            try:
                item = self._q.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self._write_locked(item)  # type: ignore[arg-type]

    def _write_locked(self, item: tuple[int, Packet]) -> None:
        gen, packet = item
        c = self._clip
        if c is None or gen != self._gen:
            return
        if c.deadline is not None and packet.t_wall > c.deadline:
            self._close_locked(torn=False)
            return
        if self.dropped != c.dropped_seen:  # overflow: the next packets reference lost ones; wait for a keyframe
            c.dropped_seen = self.dropped
            c.need_key = True
        if c.need_key:
            if not packet.keyframe:
                return
            c.need_key = False
        try:
            c.writer.add(packet)
        except OSError as exc:
            log.error("clip %s: write failed (%s); closing it torn", c.writer.clip_id, exc.strerror)
            self._close_locked(torn=True, error=exc.strerror or str(exc))

    def _close_locked(self, *, torn: bool, error: str = "") -> None:
        c, self._clip = self._clip, None
        if c is None:
            return
        self._gen += 1
        self._ring.detach(self)
        clip_id = c.writer.clip_id
        if not torn:
            try:
                s = c.writer.close()
                m = Manifest(clip_id, self._identity.device_id, c.t_start, s.t_last, tuple(c.event_ids),
                             s.header_hash.hex(), s.chunks, s.packets, s.plain_bytes, s.size,
                             self.dropped - c.dropped_seen if self.dropped >= c.dropped_seen else 0, self._codec,
                             True).signed(self._identity)
                self.store.write_manifest(m)
                self.clips += 1
                self._safe_audit("clip_written", clip_id=clip_id, event_ids=c.event_ids, bytes=s.size,
                                 chunks=len(s.chunks), packets=s.packets, dropped=self.dropped)
            except OSError as exc:
                torn, error = True, exc.strerror or str(exc)
        if torn:
            c.writer.abort()
            self.torn += 1
            self._safe_audit("clip_torn", clip_id=clip_id, event_ids=c.event_ids, error=error)
            try:
                r = self.store.recover_one(clip_id, self._identity)
                self._safe_audit("clip_" + r.action, clip_id=clip_id, chunks=r.chunks, bytes_cut=r.bytes_cut,
                                 reason=error)
            except OSError:
                log.exception("clip %s: recovery after a write error failed; retried at next start", clip_id)
        if self._on_closed:
            try:
                self._on_closed(clip_id, torn)
            except Exception:
                log.exception("on_closed callback failed")

    def _safe_audit(self, kind: str, **fields: object) -> None:
        try:
            self._audit.append(kind, **fields)
        except Exception:  # e.g. ENOSPC on the audit log: never stop recording over it
            log.exception("audit append %s failed", kind)


class _Writer(Worker):
    """``doorkeep-vault-writer``: drains the recorder's packet queue into the open clip."""

    def __init__(self, recorder: ClipRecorder) -> None:
        super().__init__("vault-writer")
        self.recorder = recorder

    def _wake(self) -> None:
        try:
            self.recorder._q.put_nowait(_STOP)
        except queue.Full:
            pass  # the queue is drained within 0.2 s per item; the stop flag ends the loop

    def _run(self) -> None:
        while not self.stopping:
            self.recorder._writer_step()
            self.mark()

