"""Export bundles (device side): grant + manifests + clip ciphertexts, signed by the device, built as a stream.

Bundle v2 layout (docs/formats.md#export-bundle)::

    8 bytes magic b"DKBNDL\\x00\\x02" | u32 index length N | N bytes canonical JSON index | 64-byte device
    signature over (magic | N | index) | per clip, in index order: its manifest file, then its clip file

The index names every clip with its size and the size and hash of its manifest; each device-signed manifest pins
the clip's header and every chunk. So the signed head is known before a single clip byte is read, and the bundle
streams in constant memory: :class:`BundleStream` yields it piece by piece (the head, then each manifest, the clip
header and one chunk frame at a time, each checked against its manifest on the way out, so a clip damaged or
changed on disk stops the export instead of shipping a bundle the recipient would refuse).

Where bundles go:

- a file: ``Vault.export_to_file`` (temporary file + fsync, then the grant is spent, then the rename);
- MQTT: ``Vault.export_mqtt`` — :func:`~.bundle_chunks.bundle_chunks` cuts the stream into self-describing chunks
  and :func:`~.bundle_chunks.publish_windowed` publishes them with a bounded window of unacknowledged QoS 1
  messages;
- anywhere else: ``Vault.export_stream(grant, write)``.

The recipient side is :mod:`.bundle_open` (streaming verification and decryption; reads v1 and v2).
"""

from __future__ import annotations

import io
import os
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import nacl.utils

from ..errors import FormatError
from ..identity import DeviceIdentity
from .codec import b64e, blake2b, canonical, signed_message
from .grants import Grant
from .keys import PublicKeys
from .manifest import Manifest

FORMAT = "doorkeep-bundle"
VERSION = 2
MAGIC = b"DKBNDL\x00\x02"
SIG_DOMAIN = "doorkeep-bundle-v2"
MANIFEST_PERSON = b"dk-bundle-mfst"
MAX_INDEX = 8 << 20
MAX_MANIFEST = 8 << 20
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class BundleClip:
    """One clip to bundle: its manifest and its bytes, each either a file (the device: nothing is held in memory
    between uses) or in memory (test vectors)."""

    manifest: Manifest | Path
    source: Path | bytes

    def load_manifest(self) -> Manifest:
        if isinstance(self.manifest, Manifest):
            return self.manifest
        return Manifest.from_bytes(self.manifest.read_bytes())

    def open(self) -> BinaryIO:
        return io.BytesIO(self.source) if isinstance(self.source, bytes) else open(self.source, "rb")

    def size(self) -> int:
        return len(self.source) if isinstance(self.source, bytes) else os.stat(self.source).st_size


def manifest_hash(data: bytes) -> str:
    return blake2b(data, person=MANIFEST_PERSON).hex()


class BundleStream:
    """A signed v2 bundle, produced piece by piece. Building it reads only the manifests (one at a time: hash and
    size go into the index); iterating reads the clips. ``size`` is the exact total length, known up front.

    Iterate once: ``for piece in stream: out.write(piece)``. Raises :class:`FormatError` mid-stream if a clip no
    longer matches its manifest (damaged, or shredded since the index was signed) and ``OSError`` on read errors.
    """

    def __init__(self, identity: DeviceIdentity, grant: Grant, owner: PublicKeys, clips: Sequence[BundleClip], *,
                 created_at: float | None = None, bundle_id: str | None = None) -> None:
        self.clips = tuple(clips)
        self.bundle_id = bundle_id or nacl.utils.random(16).hex()
        entries: list[dict[str, Any]] = []
        for c in self.clips:
            m = c.load_manifest()
            raw, size = m.to_bytes(), c.size()
            if size != m.size:
                raise FormatError(f"clip {m.clip_id}: {size} bytes on disk, its manifest says {m.size}")
            entries.append({"clip_id": m.clip_id, "manifest_hash": manifest_hash(raw), "manifest_size": len(raw),
                            "size": size})
        index = {"format": FORMAT, "v": VERSION, "bundle_id": self.bundle_id, "device_id": identity.device_id,
                 "device_key": b64e(identity.public_bytes), "owner": owner.to_json(),
                 "created_at": round(time.time() if created_at is None else created_at, 3),
                 "grant": grant.to_json(), "clips": entries}
        raw_index = canonical(index)
        if len(raw_index) > MAX_INDEX:
            raise FormatError(f"bundle index larger than {MAX_INDEX} bytes")
        head = MAGIC + _LEN.pack(len(raw_index)) + raw_index
        self.head = head + identity.sign(signed_message(SIG_DOMAIN, head))
        self._entries = entries
        self.size: int = len(self.head) + sum(e["manifest_size"] + e["size"] for e in entries)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        for clip, entry in zip(self.clips, self._entries, strict=True):
            m = clip.load_manifest()
            raw = m.to_bytes()
            if manifest_hash(raw) != entry["manifest_hash"]:
                raise FormatError(f"clip {m.clip_id}: manifest changed during the export")
            yield raw
            with clip.open() as f:
                yield from m.checked_pieces(f, entry["size"])


def build_bundle(identity: DeviceIdentity, grant: Grant, owner: PublicKeys, clips: Sequence[BundleClip], *,
                 created_at: float | None = None, bundle_id: str | None = None) -> bytes:
    """The whole bundle in memory — for test vectors and small tools only; the device streams a
    :class:`BundleStream` (call only after :func:`~.grants.check_grant` passed)."""
    return b"".join(BundleStream(identity, grant, owner, clips, created_at=created_at, bundle_id=bundle_id))
