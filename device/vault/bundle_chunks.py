"""Bundles over MQTT: self-describing chunks, a windowed QoS 1 publisher, and reassembly into a file.

A bundle never has to fit in memory on either side. The device cuts the bundle stream into chunks and keeps at
most ``window`` unacknowledged QoS 1 messages in flight; the recipient writes each chunk at its offset in a file
and opens the finished file with :func:`~.bundle_open.read_bundle` (which verifies everything: a chunk's hash only
catches transmission damage, the bundle's signatures catch forgery). Format: docs/formats.md#bundle-chunk-mqtt.

Device (``Vault.export_mqtt`` does exactly this, plus the grant check, spending and audit)::

    stream = BundleStream(identity, grant, owner, clips)
    sent = publish_windowed(bundle_chunks(stream, chunk_size=60_000),
                            lambda chunk: client.publish_raw(topic, chunk, qos=1), window=8, timeout_s=60)

Recipient::

    asm = BundleAssembler(download_dir / "incoming.bundle")
    for payload in messages:            # any order, duplicates ignored
        if (path := asm.add(payload)) is not None:
            break
    with read_bundle(path, recipient_keys, owner=owner_pub) as bundle: ...

:func:`publish_windowed` is generic: anything with ``wait(timeout)`` handles (``MqttClient.publish_raw``) works,
e.g. for other long streams over the owner channel.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..errors import FormatError, InvalidArgument, ReleaseError
from .bundles import BundleStream
from .codec import blake2b

CHUNK_MAGIC = b"DKBC"
CHUNK_VERSION = 2
#: magic, version, stream id (the bundle id), index, count, nominal payload size, bundle length, BLAKE2b(payload)
_CHUNK = struct.Struct(">4sB16sIIIQ32s")
_CHUNK_V1 = struct.Struct(">4sB16sII32s")  # magic, version 1, BLAKE2b-128(bundle), index, count, hash
CHUNK_PERSON = b"dk-bundle-chunk"
ID_PERSON = b"dk-bundle-id"
MAX_CHUNKS = 1 << 24
MAX_CHUNKS_V1 = 65536
DEFAULT_CHUNK = 60_000  # + 73 header bytes: within the recipient topic's 65,536-byte bound


def bundle_chunks(source: BundleStream | bytes, *, chunk_size: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    """Cut a bundle into v2 chunks of ``chunk_size`` payload bytes (the last one shorter), one in memory at a
    time. The stream id is the bundle's ``bundle_id`` (for raw bytes: a hash of them)."""
    if chunk_size < 1:
        raise InvalidArgument("chunk_size must be positive")
    if isinstance(source, bytes):
        sid, total, pieces = blake2b(source, person=ID_PERSON, size=16), len(source), iter([source])
    else:
        sid, total, pieces = bytes.fromhex(source.bundle_id), source.size, iter(source)
    count = max(1, -(-total // chunk_size))
    if count > MAX_CHUNKS:
        raise FormatError(f"bundle needs more than {MAX_CHUNKS} chunks; raise chunk_size")

    def chunk(i: int, payload: bytes) -> bytes:
        return _CHUNK.pack(CHUNK_MAGIC, CHUNK_VERSION, sid, i, count, chunk_size, total,
                           blake2b(payload, person=CHUNK_PERSON)) + payload

    buf, i, sent = bytearray(), 0, 0
    for piece in pieces:
        buf += piece
        while len(buf) >= chunk_size:
            yield chunk(i, bytes(buf[:chunk_size]))
            del buf[:chunk_size]
            i, sent = i + 1, sent + chunk_size
    if sent + len(buf) != total:
        raise FormatError(f"bundle stream gave {sent + len(buf)} bytes, announced {total}")
    if buf or i == 0:
        yield chunk(i, bytes(buf))


class Acked(Protocol):
    def wait(self, timeout: float | None = None) -> None: ...


def publish_windowed(messages: Iterable[bytes], publish: Callable[[bytes], Acked], *, window: int = 8,
                     timeout_s: float = 60.0, stop: threading.Event | None = None) -> int:
    """Publish ``messages`` in order, keeping at most ``window`` unacknowledged; returns how many were published,
    all acknowledged. Memory stays at ``window`` messages whatever the stream's length.

    Raises:
        PublishError (``PublishTimeout``/``PublishRefused``): a message was not acknowledged within ``timeout_s``.
        ReleaseError ``cancelled``: ``stop`` was set.
        Whatever iterating ``messages`` raises (e.g. ``FormatError`` for a clip changed on disk).
    """
    if window < 1:
        raise InvalidArgument("window must be at least 1")
    pending: deque[Acked] = deque()
    n = 0
    for m in messages:
        if stop is not None and stop.is_set():
            raise ReleaseError("cancelled", f"stopped after {n} messages")
        while len(pending) >= window:
            pending.popleft().wait(timeout_s)
        pending.append(publish(m))
        n += 1
    while pending:
        pending.popleft().wait(timeout_s)
    return n


@dataclass(frozen=True)
class BundleChunk:
    stream_id: bytes
    index: int
    count: int
    size: int  # nominal payload size (v2; 0 for v1)
    total: int  # bundle length (v2; 0 for v1)
    payload: bytes
    version: int = CHUNK_VERSION


def parse_chunk(data: bytes) -> BundleChunk:
    """Parse and hash-check one chunk (v2, or v1); raises :class:`FormatError`."""
    if not isinstance(data, bytes) or len(data) < 5 or data[:4] != CHUNK_MAGIC or data[4] not in (1, 2):
        raise FormatError("bundle chunk: bad magic or version")
    if data[4] == 1:
        if len(data) < _CHUNK_V1.size:
            raise FormatError("bundle chunk: too short")
        _, _, sid, i, n, h = _CHUNK_V1.unpack_from(data)
        c = BundleChunk(sid, i, n, 0, 0, data[_CHUNK_V1.size:], 1)
        if not 0 < n <= MAX_CHUNKS_V1 or i >= n:
            raise FormatError("bundle chunk: index/count out of range")
    else:
        if len(data) < _CHUNK.size:
            raise FormatError("bundle chunk: too short")
        _, _, sid, i, n, size, total, h = _CHUNK.unpack_from(data)
        c = BundleChunk(sid, i, n, size, total, data[_CHUNK.size:])
        if not 0 < n <= MAX_CHUNKS or i >= n or size < 1 or n != max(1, -(-total // size)):
            raise FormatError("bundle chunk: index/count/size out of range")
        if len(c.payload) != (size if i < n - 1 else total - (n - 1) * size):
            raise FormatError("bundle chunk: payload length differs from its header")
    if blake2b(c.payload, person=CHUNK_PERSON) != h:
        raise FormatError("bundle chunk: payload hash mismatch")
    return c


class BundleAssembler:
    """Writes the chunks of one bundle (any order, duplicates ignored) into ``path`` (mode 0600) and returns the
    path once every chunk arrived; memory stays at one chunk (v2). ``max_bytes`` bounds the bundle accepted.
    Legacy v1 chunks are collected in memory (v1 bundles were built in memory anyway) and hash-checked."""

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int = 1 << 36) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._first: BundleChunk | None = None
        self._seen = bytearray()
        self._have = 0
        self._fd = -1
        self._v1: dict[int, bytes] = {}

    def add(self, data: bytes) -> Path | None:
        c = parse_chunk(data)
        first = self._first
        if first is None:
            if c.total > self.max_bytes:
                raise FormatError(f"bundle larger than {self.max_bytes} bytes")
            self._first, first = c, c
            self._seen = bytearray(-(-c.count // 8))
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        elif (c.stream_id, c.count, c.size, c.total, c.version) != (first.stream_id, first.count, first.size,
                                                                      first.total, first.version):
            raise FormatError("bundle chunk: belongs to another bundle")
        if self._seen[c.index >> 3] & (1 << (c.index & 7)):
            return None
        if c.version == 1:
            self._add_v1(c)
        else:
            _pwrite_all(self._fd, c.payload, c.index * c.size)
        self._seen[c.index >> 3] |= 1 << (c.index & 7)
        self._have += 1
        return self._finish() if self._have == first.count else None

    def _add_v1(self, c: BundleChunk) -> None:
        if sum(map(len, self._v1.values())) + len(c.payload) > self.max_bytes:
            raise FormatError(f"bundle larger than {self.max_bytes} bytes")
        self._v1[c.index] = c.payload

    def _finish(self) -> Path:
        assert self._first is not None
        if self._first.version == 1:
            bundle = b"".join(self._v1[i] for i in range(self._first.count))
            if blake2b(bundle, person=ID_PERSON, size=16) != self._first.stream_id:
                raise FormatError("bundle chunks reassemble to a bundle with another hash")
            _pwrite_all(self._fd, bundle, 0)
            self._v1.clear()
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        return self.path

    def close(self) -> None:
        """Give up (an incomplete bundle stays in ``path`` for the caller to remove)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _pwrite_all(fd: int, data: bytes, pos: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, pos)
        view, pos = view[n:], pos + n
