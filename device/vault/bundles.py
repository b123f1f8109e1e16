"""Export bundles: grant + clip ciphertexts + manifests, signed by the device; and their MQTT chunking.

Bundle layout (docs/formats.md#bundle)::

    8 bytes magic b"DKBNDL\\x00\\x01" | u32 index length N | N bytes canonical JSON index | 64-byte device
    signature over (magic | N | index) | the clip files, in index order, sizes and hashes given by the index

The recipient (:func:`open_bundle`) verifies the device signature, that the device key is the grant's device, the
owner's grant signature, that it is the grant's recipient, that the clips are exactly the granted ones, every
manifest signature and hash, and finally the authenticated decryption of every chunk.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing
import nacl.utils

from ..errors import FormatError, InvalidArgument, ReleaseError
from ..frames import Packet
from ..identity import DeviceIdentity, device_id_for
from .clips import ClipHeader, decrypt_clip
from .codec import Fields, b64e, blake2b, canonical, parse_json, signed_message
from .grants import Grant
from .keys import PublicKeys, SecretKeys
from .manifest import Manifest

MAGIC = b"DKBNDL\x00\x01"
FORMAT = "doorkeep-bundle"
VERSION = 1
SIG_DOMAIN = "doorkeep-bundle-v1"
BLOB_PERSON = b"dk-bundle-clip"
_LEN = struct.Struct(">I")
MAX_INDEX = 8 << 20


@dataclass(frozen=True)
class BundleClip:
    manifest: Manifest
    data: bytes


def build_bundle(identity: DeviceIdentity, grant: Grant, owner: PublicKeys, clips: Sequence[BundleClip], *,
                 created_at: float | None = None, bundle_id: str | None = None) -> bytes:
    """Device side: the signed bundle bytes (call only after :func:`~.grants.check_grant` passed)."""
    index = {"format": FORMAT, "v": VERSION, "bundle_id": bundle_id or nacl.utils.random(16).hex(),
             "device_id": identity.device_id, "device_key": b64e(identity.public_bytes), "owner": owner.to_json(),
             "created_at": round(time.time() if created_at is None else created_at, 3), "grant": grant.to_json(),
             "clips": [{"clip_id": c.manifest.clip_id, "manifest": c.manifest.to_json(), "size": len(c.data),
                        "hash": blake2b(c.data, person=BLOB_PERSON).hex()} for c in clips]}
    raw = canonical(index)
    head = MAGIC + _LEN.pack(len(raw)) + raw
    return b"".join([head, identity.sign(signed_message(SIG_DOMAIN, head)), *(c.data for c in clips)])


@dataclass(frozen=True)
class OpenedClip:
    clip_id: str
    manifest: Manifest
    header: ClipHeader
    packets: list[Packet]


@dataclass(frozen=True)
class OpenedBundle:
    """A fully verified bundle: who released what to whom, and the decrypted clips."""

    bundle_id: str
    device_id: str
    created_at: float
    owner: PublicKeys
    grant: Grant
    clips: tuple[OpenedClip, ...]

    def report(self) -> dict[str, Any]:
        g = self.grant
        return {"ok": True, "bundle_id": self.bundle_id, "device_id": self.device_id, "created_at": self.created_at,
                "owner_key": self.owner.sign.hex(), "grant_id": g.grant_id, "purpose": g.purpose,
                "requester": g.requester, "recipient_name": g.recipient_name, "issued_at": g.issued_at,
                "expires_at": g.expires_at,
                "checks": ["device_signature", "device_id", "owner_signature", "recipient", "scope",
                           "manifest_signatures", "chunk_hashes", "decryption"],
                "clips": [{"clip_id": c.clip_id, "t_start": c.manifest.t_start, "t_end": c.manifest.t_end,
                           "event_ids": list(c.manifest.event_ids), "packets": len(c.packets),
                           "complete": c.manifest.complete, "bytes": c.manifest.size} for c in self.clips]}


def _parse(data: bytes) -> tuple[dict[str, Any], bytes, bytes, int]:
    if not isinstance(data, bytes):
        raise ReleaseError("malformed", "bundle must be bytes")
    if len(data) < len(MAGIC) + 4 or data[: len(MAGIC)] != MAGIC:
        raise ReleaseError("malformed", "not a doorkeep bundle (bad magic)")
    (n,) = _LEN.unpack_from(data, len(MAGIC))
    start = len(MAGIC) + 4
    if n > MAX_INDEX or len(data) < start + n + 64:
        raise ReleaseError("truncated", "bundle shorter than its index and signature")
    try:
        index = parse_json(data[start:start + n], what="bundle index")
    except FormatError as exc:
        raise ReleaseError("malformed", str(exc)) from None
    return index, data[:start + n], data[start + n:start + n + 64], start + n + 64


def open_bundle(data: bytes, recipient: SecretKeys, *, owner: PublicKeys | None = None) -> OpenedBundle:
    """Recipient side: verify everything and decrypt. ``owner``: the owner key you know out of band (optional; the
    device already checked the grant against its pinned owner key). Raises :class:`ReleaseError` with a reason:
    ``malformed``, ``truncated``, ``bad_device_signature``, ``wrong_device``, ``bad_signature``, ``wrong_owner``,
    ``wrong_recipient``, ``out_of_scope``, ``tampered``."""
    index, head, sig, pos = _parse(data)
    try:
        f = Fields(index, what="bundle index")
        f.header(FORMAT, VERSION)
        f.only("format", "v", "bundle_id", "device_id", "device_key", "owner", "created_at", "grant", "clips")
        device_key = f.b64("device_key", length=32)
        device_id = f.text("device_id", max_len=64)
        bundle_owner = PublicKeys.from_json(f.obj.get("owner"), what="bundle owner")
        grant = Grant.from_json(f.obj.get("grant"))
        entries = []
        for e in f.items("clips", max_len=1000):
            ef = Fields(e, what="bundle clip")
            ef.only("clip_id", "manifest", "size", "hash")
            entries.append((ef.text("clip_id", max_len=64), Manifest.from_json(ef.obj.get("manifest")),
                            ef.integer("size", hi=1 << 40), ef.hexstr("hash", length=32)))
        bundle_id, created_at = f.hexstr("bundle_id", length=16), f.number("created_at")
    except FormatError as exc:
        raise ReleaseError("malformed", str(exc)) from None
    vk = nacl.signing.VerifyKey(device_key)
    try:
        vk.verify(signed_message(SIG_DOMAIN, head), sig)
    except nacl.exceptions.BadSignatureError:
        raise ReleaseError("bad_device_signature", "bundle index not signed by the device key it names") from None
    if device_id_for(device_key) != device_id or grant.device_id != device_id:
        raise ReleaseError("wrong_device", "device key, bundle and grant name different devices")
    if owner is not None and owner != bundle_owner:
        raise ReleaseError("wrong_owner", "the grant's owner is not the owner key you expected")
    grant.verify(bundle_owner)
    if grant.recipient.box != recipient.public.box:
        raise ReleaseError("wrong_recipient", f"bundle is for {grant.recipient_name!r}, not this key")
    if [e[0] for e in entries] != list(grant.clip_ids):
        raise ReleaseError("out_of_scope", "bundle clips differ from the granted clips")
    if pos + sum(e[2] for e in entries) != len(data):
        raise ReleaseError("truncated", "bundle length differs from its index")
    keys = {c.clip_id: c.sealed_key for c in grant.clips}
    opened = []
    for clip_id, manifest, size, h in entries:
        blob = data[pos:pos + size]
        pos += size
        try:
            if blake2b(blob, person=BLOB_PERSON).hex() != h:
                raise FormatError(f"clip {clip_id}: hash differs from the bundle index")
            if manifest.clip_id != clip_id or manifest.device_id != device_id:
                raise FormatError(f"clip {clip_id}: manifest names another clip or device")
            manifest.verify(vk).check_clip(blob)
            header, packets = decrypt_clip(blob, recipient.unseal(keys[clip_id]), require_final=manifest.complete)
        except FormatError as exc:
            raise ReleaseError("tampered", str(exc)) from None
        opened.append(OpenedClip(clip_id, manifest, header, packets))
    return OpenedBundle(bundle_id, device_id, created_at, bundle_owner, grant, tuple(opened))


# ------------------------------------------------------------------------------------------- MQTT chunks

CHUNK_MAGIC = b"DKBC"
CHUNK_VERSION = 1
_CHUNK = struct.Struct(">4sB16sII32s")  # magic, version, bundle id, index, count, BLAKE2b(payload)
CHUNK_PERSON = b"dk-bundle-chunk"
ID_PERSON = b"dk-bundle-id"
MAX_CHUNKS = 65536


def bundle_chunk_id(bundle: bytes) -> bytes:
    """16-byte id of a bundle's chunk stream: BLAKE2b of the whole bundle (checked on reassembly)."""
    return blake2b(bundle, person=ID_PERSON, size=16)


def bundle_chunks(bundle: bytes, *, chunk_size: int = 64 * 1024) -> list[bytes]:
    """Split a bundle into self-describing chunks for MQTT (each one message)."""
    if chunk_size < 1:
        raise InvalidArgument("chunk_size must be positive")
    bid = bundle_chunk_id(bundle)
    pieces = [bundle[i:i + chunk_size] for i in range(0, len(bundle), chunk_size)] or [b""]
    if len(pieces) > MAX_CHUNKS:
        raise FormatError(f"bundle needs more than {MAX_CHUNKS} chunks; raise chunk_size")
    return [_CHUNK.pack(CHUNK_MAGIC, CHUNK_VERSION, bid, i, len(pieces), blake2b(p, person=CHUNK_PERSON)) + p
            for i, p in enumerate(pieces)]


@dataclass(frozen=True)
class BundleChunk:
    bundle_id: bytes
    index: int
    count: int
    payload: bytes


def parse_chunk(data: bytes) -> BundleChunk:
    """Parse and hash-check one chunk; raises :class:`FormatError`."""
    if not isinstance(data, bytes) or len(data) < _CHUNK.size:
        raise FormatError("bundle chunk: too short")
    magic, version, bid, i, n, h = _CHUNK.unpack_from(data)
    if magic != CHUNK_MAGIC or version != CHUNK_VERSION:
        raise FormatError("bundle chunk: bad magic or version")
    if not 0 < n <= MAX_CHUNKS or i >= n:
        raise FormatError("bundle chunk: index/count out of range")
    payload = data[_CHUNK.size:]
    if blake2b(payload, person=CHUNK_PERSON) != h:
        raise FormatError("bundle chunk: payload hash mismatch")
    return BundleChunk(bid, i, n, payload)


class BundleAssembler:
    """Collects chunks (any order, duplicates ignored) and returns the bundle when all arrived and its hash
    matches the id. One assembler per bundle id; ``max_bytes`` bounds memory."""

    def __init__(self, *, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._id: bytes | None = None
        self._count = 0
        self._parts: dict[int, bytes] = {}
        self._bytes = 0

    def add(self, data: bytes) -> bytes | None:
        c = parse_chunk(data)
        if self._id is None:
            self._id, self._count = c.bundle_id, c.count
        elif c.bundle_id != self._id or c.count != self._count:
            raise FormatError("bundle chunk: belongs to another bundle")
        if c.index not in self._parts:
            self._bytes += len(c.payload)
            if self._bytes > self.max_bytes:
                raise FormatError(f"bundle larger than {self.max_bytes} bytes")
            self._parts[c.index] = c.payload
        if len(self._parts) < self._count:
            return None
        bundle = b"".join(self._parts[i] for i in range(self._count))
        if bundle_chunk_id(bundle) != self._id:
            raise FormatError("bundle chunks reassemble to a bundle with another hash")
        return bundle
