"""Device-signed clip manifests: what was recorded, and hashes that pin every encrypted byte of the clip.

A manifest lives next to its clip (``<clip_id>.manifest``) and travels with it in an export bundle, so a recipient
can prove the clip came unaltered from this device. ``complete`` is false for a clip the device recovered after a
crash (no FINAL chunk); the recipient then accepts the stream without FINAL, up to exactly the listed chunks.

Version 2 links the parts of one long recording: a clip cut at ``[vault] max_clip_s``/``max_clip_mb`` or interrupted
by a storage error continues in a new clip whose manifest names the previous one (``prev_clip``) and its place in
the recording (``part``, from 0). Version 1 manifests (written before) are still read and verified.
Format: docs/formats.md#manifest.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import nacl.exceptions
import nacl.signing

from ..errors import FormatError
from ..identity import DeviceIdentity
from .clips import Codec, check_clip_id, chunk_hash, read_frames, read_header
from .codec import Fields, b64e, canonical, parse_json, signed_message

FORMAT = "doorkeep-manifest"
VERSION = 2
#: Versions this reads: 1 (no links) and 2 (``prev_clip``, ``part``).
READS = (1, 2)
SIG_DOMAIN = "doorkeep-manifest-v1"  # the signature scheme, unchanged by v2 (the body carries its "v")
MAX_CHUNKS = 100_000
MAX_PARTS = 1_000_000
_KEYS_V1 = ("format", "v", "clip_id", "device_id", "t_start", "t_end", "event_ids", "header_hash", "chunks",
            "packets", "plain_bytes", "size", "dropped", "codec", "complete", "sig")
_KEYS = {1: _KEYS_V1, 2: (*_KEYS_V1, "prev_clip", "part")}


@dataclass(frozen=True)
class Manifest:
    """A clip's signed description. Build with :meth:`signed`; read with :meth:`from_bytes` then :meth:`verify`."""

    clip_id: str
    device_id: str
    t_start: float
    t_end: float | None
    event_ids: tuple[str, ...]
    header_hash: str
    chunks: tuple[tuple[int, str], ...]
    packets: int
    plain_bytes: int
    size: int
    dropped: int
    codec: Codec
    complete: bool
    sig: bytes = field(default=b"", repr=False)
    #: The clip this one continues (same recording), or ``None`` for the first part.
    prev_clip: str | None = None
    #: Place in the recording: 0 for the first clip, 1 for the one after it, ...
    part: int = 0
    #: Format version of this manifest (2 when written now; 1 when read from an older clip).
    v: int = VERSION

    def body(self) -> dict[str, Any]:
        body = {"format": FORMAT, "v": self.v, "clip_id": self.clip_id, "device_id": self.device_id,
                "t_start": self.t_start, "t_end": self.t_end, "event_ids": list(self.event_ids),
                "header_hash": self.header_hash, "chunks": [[n, h] for n, h in self.chunks],
                "packets": self.packets, "plain_bytes": self.plain_bytes, "size": self.size,
                "dropped": self.dropped, "codec": self.codec.to_json(), "complete": self.complete}
        if self.v >= 2:
            body["prev_clip"], body["part"] = self.prev_clip, self.part
        return body

    def signed(self, identity: DeviceIdentity) -> Manifest:
        """A copy signed by the device."""
        sig = identity.sign(signed_message(SIG_DOMAIN, canonical(self.body())))
        return Manifest(**{**self.__dict__, "sig": sig})

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "sig": b64e(self.sig)}

    def to_bytes(self) -> bytes:
        return canonical(self.to_json()) + b"\n"

    @classmethod
    def from_json(cls, obj: object) -> Manifest:
        """Parse (not verify). Raises :class:`FormatError`."""
        f = Fields(obj, what="manifest")
        v = f.obj.get("v")
        f.header(FORMAT, v if v in READS and not isinstance(v, bool) else VERSION)
        assert isinstance(v, int)
        f.only(*_KEYS[v])
        chunks = []
        for c in f.items("chunks", max_len=MAX_CHUNKS):
            if (not isinstance(c, list) or len(c) != 2 or isinstance(c[0], bool) or not isinstance(c[0], int)
                    or not 0 < c[0] <= 1 << 30):
                raise FormatError("manifest: each chunk must be [bytes, hash]")
            chunks.append((c[0], Fields({"h": c[1]}, what="manifest chunk").hexstr("h", length=32)))
        return cls(check_clip_id(f.obj.get("clip_id")), f.text("device_id", max_len=64), f.number("t_start"),
                   f.opt_num("t_end"), f.texts("event_ids"), f.hexstr("header_hash", length=32), tuple(chunks),
                   f.integer("packets"), f.integer("plain_bytes"), f.integer("size"), f.integer("dropped"),
                   Codec.from_json(f.obj.get("codec"), what="manifest.codec"), f.flag("complete"),
                   f.b64("sig", length=64),
                   None if v < 2 or f.obj.get("prev_clip") is None else check_clip_id(f.obj.get("prev_clip")),
                   f.integer("part", hi=MAX_PARTS) if v >= 2 else 0, v)

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        return cls.from_json(parse_json(bytes(data).strip(), what="manifest"))

    def verify(self, verify_key: nacl.signing.VerifyKey) -> Manifest:
        """Check the device signature; raises :class:`FormatError` if it does not verify."""
        try:
            verify_key.verify(signed_message(SIG_DOMAIN, canonical(self.body())), self.sig)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise FormatError(f"manifest {self.clip_id}: device signature does not verify") from None
        return self

    def check_clip(self, data: bytes) -> None:
        """Check that ``data`` is exactly the clip this manifest describes (header, every chunk, size)."""
        for _ in self.checked_pieces(io.BytesIO(data), len(data)):
            pass

    def checked_pieces(self, f: BinaryIO, size: int) -> Iterator[bytes]:
        """The ``size``-byte clip at ``f``'s position, piece by piece — the header, then each chunk frame — each
        checked against this manifest before it is yielded (one chunk in memory at a time). Raises
        :class:`FormatError` at the first difference (a clip truncated, extended or altered)."""
        header, head = read_header(f)
        if header.clip_id != self.clip_id or header.device_id != self.device_id:
            raise FormatError(f"clip {header.clip_id}: header names another clip or device than its manifest")
        if header.hash.hex() != self.header_hash:
            raise FormatError(f"clip {self.clip_id}: header hash differs from the manifest")
        yield head
        pos, i = len(head), 0
        for frame in read_frames(f):
            if i >= len(self.chunks) or pos + len(frame) > size:
                break
            n, h = self.chunks[i]
            if len(frame) != n or chunk_hash(frame) != h:
                raise FormatError(f"clip {self.clip_id}: chunk {i} differs from the manifest")
            yield frame
            pos, i = pos + len(frame), i + 1
        if i != len(self.chunks) or pos != size or size != self.size:
            raise FormatError(f"clip {self.clip_id}: has {i} chunks / {pos} of {size} bytes, manifest says "
                              f"{len(self.chunks)} / {self.size} (truncated or extended)")
