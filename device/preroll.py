"""PacketRing: the last few seconds of encoded video (pre-roll), bounded by seconds and bytes.

The ring always begins at a keyframe that carries its codec configuration (SPS/PPS), and it drops whole GOPs from
the front, so whatever it hands over decodes from its first packet (the picamera2 #226 bug class — a pre-roll that
wrapped past the stream header — cannot happen). :meth:`PacketRing.flush_into` hands the buffered pre-roll to a sink
and subscribes that sink to every later packet in one step under the ring's lock: no gap, no duplicate.

Sinks' ``on_packet`` runs on the capture thread and must not block (the vault's clip writer queues).

Example::

    pre = PacketRing(seconds=5.0, max_bytes=32 << 20)
    source.packet_sinks.append(pre)
    n = pre.flush_into(clip_writer)   # n pre-roll packets now, live ones follow
    ...
    pre.detach(clip_writer)
"""

from __future__ import annotations

import logging
import threading
from collections import deque

from .errors import InvalidArgument
from .frames import Packet, PacketSink
from .lograte import SinkFailures

log = logging.getLogger(__name__)


class PacketRing(PacketSink):
    """Bounded pre-roll of encoded packets.

    Args:
        seconds: keep at least this much video before now (whole GOPs, so up to one GOP more).
        max_bytes: hard memory bound; whole GOPs are dropped from the front to stay under it.

    Counters: ``packets`` received, ``discarded`` (packets that arrived before any usable keyframe), ``bytes``
    currently held.
    """

    def __init__(self, *, seconds: float, max_bytes: int = 32 << 20) -> None:
        if seconds < 0:
            raise InvalidArgument(f"PacketRing seconds must be >= 0, got {seconds}")
        if max_bytes <= 0:
            raise InvalidArgument(f"PacketRing max_bytes must be > 0, got {max_bytes}")
        self.seconds = seconds
        self.max_bytes = max_bytes
        self._packets: deque[Packet] = deque()
        self._head = 0  # absolute index of _packets[0]
        self._keys: deque[int] = deque()  # absolute indices of config keyframes in the ring
        self._sinks: list[PacketSink] = []
        self._waiting: set[int] = set()  # id(sink) of sinks still waiting for their first config keyframe
        # Reentrant: a sink may detach itself (or another) from inside its on_packet.
        self._lock = threading.RLock()
        self.bytes = 0
        self.packets = 0
        self.discarded = 0
        self._failures = SinkFailures(log, "pre-roll packet sink")

    # ------------------------------------------------------------------------------------------------ capture side

    def on_packet(self, packet: Packet) -> None:
        """Add one packet (capture thread) and pass it to every attached sink."""
        with self._lock:
            self.packets += 1
            self._append(packet)
            for sink in self._sinks:
                if id(sink) in self._waiting:
                    if not (packet.keyframe and packet.has_config):
                        continue
                    self._waiting.discard(id(sink))
                self._deliver(sink, packet)

    def _append(self, packet: Packet) -> None:
        start = packet.keyframe and packet.has_config
        if not self._packets and not start:
            self.discarded += 1
            return
        if start:
            self._keys.append(self._head + len(self._packets))
        self._packets.append(packet)
        self.bytes += len(packet.data)
        # Drop the oldest GOP while the rest still covers `seconds`, or while over the byte bound.
        while len(self._keys) > 1:
            second = self._packets[self._keys[1] - self._head]
            if packet.t_capture - second.t_capture >= self.seconds or self.bytes > self.max_bytes:
                self._drop_gop(self._keys[1] - self._head)
            else:
                break
        if self.bytes > self.max_bytes:  # a single GOP larger than the bound: nothing usable fits
            self._drop_gop(len(self._packets))

    def _drop_gop(self, n: int) -> None:
        for _ in range(n):
            self.bytes -= len(self._packets.popleft().data)
        self._head += n
        while self._keys and self._keys[0] < self._head:
            self._keys.popleft()

    # --------------------------------------------------------------------------------------------------- readers

    def flush_into(self, sink: PacketSink) -> int:
        """Deliver the buffered pre-roll (from its oldest config keyframe) to ``sink``, then keep it subscribed.

        Atomic with respect to :meth:`on_packet`: every later packet follows with no gap and no duplicate. If the
        ring holds nothing usable yet, ``sink`` starts at the next config keyframe. Returns the packets delivered.
        """
        with self._lock:
            if any(s is sink for s in self._sinks):
                raise InvalidArgument("sink is already attached to this PacketRing")
            for p in self._packets:
                self._deliver(sink, p)
            n = len(self._packets)
            self._sinks.append(sink)
            if n == 0:
                self._waiting.add(id(sink))
            return n

    def detach(self, sink: PacketSink) -> None:
        """Stop sending live packets to ``sink`` (no error if it was not attached)."""
        with self._lock:
            self._sinks = [s for s in self._sinks if s is not sink]
            self._waiting.discard(id(sink))

    def snapshot(self) -> list[Packet]:
        """A copy of the buffered pre-roll (starts at a config keyframe, or is empty)."""
        with self._lock:
            return list(self._packets)

    @property
    def duration(self) -> float:
        """Seconds between the oldest and newest buffered packet."""
        with self._lock:
            if not self._packets:
                return 0.0
            return self._packets[-1].t_capture - self._packets[0].t_capture

    def _deliver(self, sink: PacketSink, packet: Packet) -> None:
        # a broken sink must not stop capture or starve the others; logged once, then counted (not per packet)
        self._failures.call(sink, sink.on_packet, packet)
