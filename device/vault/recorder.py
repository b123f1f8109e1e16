"""The clip recorder: a packet sink and event sink that writes encrypted clips for person events and doorbell presses.

A doorbell ``press`` records like a person event that starts and ends at the press (pre-roll + post-roll): a
visitor who rings but is not detected (hood up, IR glare, backlit) still leaves footage. On a person ``start`` or a
press it opens a clip and calls ``ring.flush_into(self)``: the pre-roll (from a config keyframe)
arrives first, then every live packet, with no gap and no duplicate. It records until ``postroll_s`` after the
last overlapping event's ``end``, then detaches from the ring and closes the clip (FINAL chunk, key wiped, manifest
signed, audited). Overlapping events extend the same recording. The post-roll runs on the monotonic clock (the
event's ``mono_end``, the packets' ``t_capture``): a wall clock stepped back cannot keep a clip open.

A recording longer than ``max_clip_s`` (footage time) or larger than ``max_clip_bytes`` continues in a new clip,
cut at the next keyframe that carries the codec configuration (every part decodes on its own; no packet is lost or
repeated), whose manifest links the previous one (``prev_clip``, ``part``). A person who never leaves — or a poster
of one — therefore makes a series of bounded clips that retention can drop one by one, never one clip that grows
until the disk is full.

``on_packet`` runs on the capture thread and never blocks: packets go to a bounded queue that one writer thread
drains; overflow is counted (and the writer skips to the next keyframe so the clip stays decodable).

A storage error never reaches capture or events. The clip is closed torn (audited ``clip_torn``; the keeper later
recovers it to its last complete chunk) and the error is classified once (device/vault/faults.py): a full disk asks
the keeper for space, any other error stops recording until the keeper's probe succeeds. Either way, while the
person is still there the recording resumes in a new clip whose manifest links the interrupted one.
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

from ..activity import log as activity
from ..events import Event
from ..frames import Packet, PacketSink
from ..identity import DeviceIdentity
from ..lograte import FailureLog
from ..worker import Worker
from .clips import ClipWriter, Codec
from .faults import AuditFn, VaultHealth
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
class _Session:
    """One recording: person events that overlap, written as one clip or — after an interruption — several."""

    events: list[str]  # every event of the recording, in order
    active: set[str]
    t_start: float  # wall clock: labels only
    deadline: float | None = None  # end of the post-roll once no event is active (monotonic)
    part: int = 0
    prev_clip: str | None = None


@dataclass
class _Open:
    writer: ClipWriter
    t_start: float
    part: int
    prev_clip: str | None
    event_ids: list[str]
    dropped_seen: int = 0
    need_key: bool = True
    first_capture: float | None = None  # capture time of its first packet (monotonic)
    roll: bool = False  # over a bound: the next config keyframe starts the next clip


def new_clip_id(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t)) + "-" + nacl.utils.random(4).hex()


class ClipRecorder(PacketSink):
    """Writes clips for person events. Start with :meth:`start`, stop with :meth:`stop` (closes an open clip).

    Args:
        audit: ``audit(kind, **fields)`` that never raises.
        health: the vault's fault state; a fault stops recording until it clears.
        may_record: ``() -> bool``, False while the keeper waits for space (no clip is opened meanwhile).
        need_space: called when a write met a full disk.
        on_closed: ``(clip_id, torn)`` after every clip.
        clock: monotonic clock (the packets' ``t_capture`` clock; tests pass their own).

    Counters: ``dropped`` (queue overflow), ``clips`` closed, ``torn`` (closed by a write error).
    """

    def __init__(self, store: ClipStore, *, owner: PublicKeys, identity: DeviceIdentity, audit: AuditFn,
                 health: VaultHealth, ring: PacketSource, codec: Codec | None = None, postroll_s: float = 5.0,
                 chunk_bytes: int = 256 * 1024, queue_size: int = 1024, fsync_chunks: bool = True,
                 max_clip_s: float = 600.0, max_clip_bytes: int = 512 << 20, grace_s: float = 2.0,
                 may_record: Callable[[], bool] = lambda: True,
                 need_space: Callable[[], object] = lambda: None,
                 on_closed: Callable[[str | None, bool], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self._owner = owner
        self._identity = identity
        self._audit = audit
        self.health = health
        self._ring = ring
        self._codec = codec or Codec()
        self._postroll = postroll_s
        self._chunk_bytes = chunk_bytes
        self._fsync = fsync_chunks
        self._max_clip_s = max_clip_s
        self._max_clip_bytes = max_clip_bytes
        self._grace = grace_s
        self._may_record = may_record
        self._need_space = need_space
        self._on_closed = on_closed
        self._clock = clock
        self._q: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._gen = 0  # bumped per clip; packets carry it so stale ones are never written into the next clip
        self._session: _Session | None = None
        self._clip: _Open | None = None
        #: The supervised writer thread (``doorkeep-vault-writer``).
        self.worker = _Writer(self)
        self._failures = FailureLog(log, "vault writer")  # a packet that keeps failing: one traceback, then counts
        self.dropped = 0
        self.clips = 0
        self.torn = 0
        #: Clips closed torn by a write error and not yet recovered (the keeper recovers them), with their link
        #: (``prev_clip``, ``part``) for the recovered manifest.
        self.torn_ids: dict[str, tuple[str | None, int]] = {}

    # --------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.worker.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Close any open clip normally and stop the writer thread (bounded by ``timeout``). Idempotent."""
        self.worker.stop(timeout)
        with self._lock:
            if self._clip is not None:
                self._drain_locked()
                self._close_locked()
            self._session = None

    def take_torn(self) -> dict[str, tuple[str | None, int]]:
        """The torn clips to recover, with their links (each handed out once; put back what could not be
        recovered)."""
        with self._lock:
            torn, self.torn_ids = self.torn_ids, {}
        return torn

    def put_back_torn(self, torn: dict[str, tuple[str | None, int]]) -> None:
        with self._lock:
            self.torn_ids.update(torn)

    @property
    def recording(self) -> str | None:
        """The id of the clip being written, if any."""
        c = self._clip
        return c.writer.clip_id if c else None

    # ------------------------------------------------------------------------------------------ event side
    def on_event(self, event: Event) -> None:
        if event.kind not in ("person", "doorbell"):
            return
        with self._lock:
            s = self._session
            if event.phase in ("start", "press"):
                prev_deadline = s.deadline if s is not None else None
                if s is None:
                    self._session = _Session([event.event_id], {event.event_id}, event.t_start)
                    self._resume_locked()
                else:
                    if event.event_id not in s.events:
                        s.events.append(event.event_id)
                    c = self._clip
                    if c is not None and event.event_id not in c.event_ids:
                        c.event_ids.append(event.event_id)
                    s.active.add(event.event_id)
                    s.deadline = None
                if event.phase == "press":  # starts and ends at once: post-roll after it, unless a person stays
                    s = self._session
                    assert s is not None
                    s.active.discard(event.event_id)
                    if not s.active:
                        s.deadline = max(prev_deadline or 0.0, self._post_roll_end(event))
            elif event.phase == "end" and s is not None and event.event_id in s.active:
                s.active.discard(event.event_id)
                if not s.active:
                    s.deadline = self._post_roll_end(event)

    def _post_roll_end(self, event: Event) -> float:
        """When the post-roll after ``event`` ends, on the monotonic clock (from the event's ``mono_end`` — person
        ends and presses carry it, so a slow sink before the vault does not stretch the post-roll —, else from
        now)."""
        return (event.mono_end if event.mono_end is not None else self._clock()) + self._postroll

    def _resume_locked(self) -> bool:
        """Open a clip for the session if storage allows (first part, or the next after an interruption)."""
        s = self._session
        if s is None or self._clip is not None or not self.health.ok or not self._may_record():
            return False
        c = self._open_locked(s, s.t_start if s.part == 0 else time.time())
        if c is None:
            return False
        self._gen += 1
        self._clip = c
        self._ring.flush_into(self)
        return True

    def _open_locked(self, s: _Session, t_open: float) -> _Open | None:
        """A new clip for the session's next part (``None`` when storage refused it: handled)."""
        clip_id = new_clip_id(t_open)
        # a later part holds the events still open (or, in its post-roll, the last one)
        event_ids = [e for e in s.events if e in s.active] or s.events[-1:]
        try:
            writer = ClipWriter(self.store.clip_path(clip_id), owner=self._owner, clip_id=clip_id,
                                device_id=self._identity.device_id, t_start=t_open, event_id=event_ids[0],
                                codec=self._codec, chunk_bytes=self._chunk_bytes, fsync_chunks=self._fsync,
                                disk=self.store.disk)
        except OSError as exc:
            self._failed_locked(exc, "open", clip_id)
            return None
        activity.info("clip %s opened for event %s%s", clip_id, event_ids[0], f" (part {s.part + 1})" if s.part else "")
        return _Open(writer, t_open, s.part, s.prev_clip, event_ids, dropped_seen=self.dropped)

    # ----------------------------------------------------------------------------------------- packet side
    def on_packet(self, packet: Packet) -> None:
        """Capture thread: enqueue, never block; count overflow."""
        try:
            self._q.put_nowait((self._gen, packet))
        except queue.Full:
            self.dropped += 1

    # ---------------------------------------------------------------------------------------- writer side
    def _writer_step(self) -> None:
        """One pass of the writer thread: write one queued packet, end a session whose post-roll is over, resume
        a session interrupted by a storage error once storage allows."""
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
                s = self._session
                if s is not None and s.deadline is not None and self._clock() > s.deadline + self._grace:
                    self._end_locked()  # packets stopped coming: end by the clock
                elif s is not None and self._clip is None:
                    self._resume_locked()
            except Exception:  # noqa: BLE001 — one bad packet or close must not end recording; logged rate-limited
                self._failures.failed()
            else:
                if item is not None:  # an idle pass proves nothing about writing
                    self._failures.ok()

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
        c, s = self._clip, self._session
        if c is None or s is None or gen != self._gen:
            return
        if s.deadline is not None and packet.t_capture > s.deadline:
            self._end_locked()
            return
        if self.dropped != c.dropped_seen:  # overflow: the next packets reference lost ones; wait for a keyframe
            c.dropped_seen = self.dropped
            c.need_key = True
        if c.need_key:
            if not packet.keyframe:
                return
            c.need_key = False
        if c.first_capture is None:
            c.first_capture = packet.t_capture
        elif not c.roll and (packet.t_capture - c.first_capture >= self._max_clip_s
                             or c.writer.size >= self._max_clip_bytes):
            c.roll = True
        if c.roll and packet.keyframe and packet.has_config:
            c = self._roll_locked(packet)
            if c is None:
                return
        try:
            c.writer.add(packet)
        except OSError as exc:
            self._failed_locked(exc, "write", c.writer.clip_id)

    def _roll_locked(self, packet: Packet) -> _Open | None:
        """Close the open clip at a bound and continue the recording in the next one, from ``packet`` (a config
        keyframe) on: still attached to the ring, so no packet is lost or repeated."""
        s = self._session
        assert s is not None
        if not self._close_locked(detach=False) or self._clip is None:
            return None  # the close failed: handled as a storage error (detached, resumes later)
        self._clip = None
        c = self._open_locked(s, packet.t_wall)
        if c is None:  # storage refused the next part: stop taking packets until it allows (then flush_into again)
            self._gen += 1
            self._ring.detach(self)
            return None
        c.first_capture, c.need_key = packet.t_capture, False
        self._clip = c
        return c

    def _end_locked(self) -> None:
        self._close_locked()
        self._session = None

    def _detach_locked(self) -> _Open | None:
        c, self._clip = self._clip, None
        if c is not None:
            self._gen += 1
            self._ring.detach(self)
        return c

    def _close_locked(self, *, detach: bool = True) -> bool:
        """Close the open clip normally: FINAL chunk, signed manifest, audited. With ``detach=False`` the recorder
        stays on the ring (a roll to the next part). False when storage refused it (handled as a torn clip)."""
        c = self._detach_locked() if detach else self._clip
        if c is None:
            return False
        s = self._session
        clip_id = c.writer.clip_id
        try:
            summary = c.writer.close()
            m = Manifest(clip_id, self._identity.device_id, c.t_start, summary.t_last, tuple(c.event_ids),
                         summary.header_hash.hex(), summary.chunks, summary.packets, summary.plain_bytes,
                         summary.size, self.dropped - c.dropped_seen if self.dropped >= c.dropped_seen else 0,
                         self._codec, True, prev_clip=c.prev_clip, part=c.part).signed(self._identity)
            self.store.write_manifest(m)
        except OSError as exc:
            self._clip = c  # so that the failure is handled like any other
            self._failed_locked(exc, "close", clip_id)
            return False
        self.clips += 1
        if s is not None:
            s.part, s.prev_clip = c.part + 1, clip_id
        fields: dict[str, object] = {"part": c.part, "prev_clip": c.prev_clip} if c.part else {}
        self._audit("clip_written", clip_id=clip_id, event_ids=c.event_ids, bytes=summary.size,
                    chunks=len(summary.chunks), packets=summary.packets, dropped=self.dropped, **fields)
        activity.info("clip %s closed: %.1f s, %.1f MB (encrypted to the owner)", clip_id,
                      max(0.0, (summary.t_last or c.t_start) - c.t_start), summary.size / 1e6)
        self._closed(clip_id, torn=False)
        return True

    def _failed_locked(self, exc: OSError, op: str, clip_id: str) -> None:
        """A storage error on the open clip (or while opening one): close it torn and classify the error once.
        The session stays, so recording resumes in a new clip when storage allows. Nothing is deleted here."""
        c = self._detach_locked()
        if c is not None:
            self._gen += 1
            c.writer.abort()
            self.torn += 1
            self.torn_ids[clip_id] = (c.prev_clip, c.part)
            activity.error("clip %s: %s failed (%s); closed torn", clip_id, op, exc.strerror or exc)
            self._audit("clip_torn", clip_id=clip_id, event_ids=c.event_ids, error=exc.strerror or str(exc))
            s = self._session
            if s is not None:
                s.part, s.prev_clip = c.part + 1, clip_id
        if self.health.classify(exc, op=op, clip_id=clip_id) == "full":
            self._need_space()
        if c is not None:
            self._closed(clip_id, torn=True)

    def _closed(self, clip_id: str, *, torn: bool) -> None:
        if self._on_closed:
            try:
                self._on_closed(clip_id, torn)
            except Exception:
                log.exception("on_closed callback failed")


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
