"""Export bundles (recipient side): verify and decrypt a bundle as a stream, in constant memory.

:func:`read_bundle` checks the bundle's head at once — framing, the device signature, that the device key is the
grant's device, the owner's grant signature (against the owner key you know out of band, if given), that you are
the grant's recipient, that the clips are exactly the granted ones and the total length — then hands out the clips
in order; each clip's manifest (hash from the index, device signature), header and every chunk are checked against
the signed manifest and decrypted one chunk at a time as you iterate its packets. Only when every clip has been
read to its end is the bundle verified (:meth:`BundleReader.report`), so write what you decrypt to temporary files
and keep them only then::

    with read_bundle(path, recipient_keys, owner=owner_pub) as bundle:
        for clip in bundle.clips():
            write_mp4(clip.packets(), tmp_dir / f"{clip.clip_id}.mp4", codec=clip.header.codec)
        report = bundle.report()        # raises unless everything verified

Reads bundle format v2 (docs/formats.md#export-bundle) and v1. Every refusal is a :class:`ReleaseError` with a
reason: ``malformed``, ``truncated``, ``bad_device_signature``, ``wrong_device``, ``bad_signature``,
``wrong_owner``, ``wrong_recipient``, ``out_of_scope``, ``tampered``.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, Self

import nacl.exceptions
import nacl.hashlib
import nacl.signing

from ..errors import FormatError, ReleaseError
from ..frames import Packet
from ..identity import device_id_for
from .bundles import MAGIC, MAX_INDEX, MAX_MANIFEST, SIG_DOMAIN, manifest_hash
from .clips import ClipDecryptor, ClipHeader, parse_header, read_exact
from .codec import Fields, parse_json, signed_message
from .grants import Grant
from .keys import PublicKeys, SecretKeys
from .manifest import Manifest

FORMAT = "doorkeep-bundle"
MAGIC_V1 = b"DKBNDL\x00\x01"
SIG_DOMAIN_V1 = "doorkeep-bundle-v1"
BLOB_PERSON_V1 = b"dk-bundle-clip"
_LEN = struct.Struct(">I")
CHECKS = ("device_signature", "device_id", "owner_signature", "recipient", "scope", "manifest_signatures",
          "chunk_hashes", "decryption")


@dataclass(frozen=True)
class _Entry:
    clip_id: str
    size: int
    manifest: Manifest | None = None  # v1: in the index
    manifest_size: int = 0  # v2: the manifest precedes the clip
    manifest_hash: str = ""
    blob_hash: str = ""  # v1: BLAKE2b of the whole clip


class _Limited:
    """Reads at most ``left`` bytes of ``f`` (one clip's region of the bundle)."""

    def __init__(self, f: BinaryIO, left: int) -> None:
        self.f, self.left = f, left

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        b = self.f.read(n) if n else b""
        self.left -= len(b)
        return b


class BundleClipReader:
    """One clip of a bundle being read: ``manifest`` (verified) and ``header`` now; :meth:`packets` streams it."""

    def __init__(self, reader: BundleReader, entry: _Entry, manifest: Manifest, key: bytes) -> None:
        self.clip_id = entry.clip_id
        self.manifest = manifest
        self.packets_read = 0
        self._entry = entry
        self._region = _Limited(reader._f, entry.size)
        self._pieces = manifest.checked_pieces(self._region, entry.size)  # type: ignore[arg-type]
        self._hash = nacl.hashlib.blake2b(digest_size=32, person=BLOB_PERSON_V1) if entry.blob_hash else None
        head = self._next_piece()
        if head is None:
            raise FormatError(f"clip {self.clip_id}: no header")
        self.header: ClipHeader = parse_header(head)
        self._dec = ClipDecryptor(self.header, key)
        self.done = False

    def _next_piece(self) -> bytes | None:
        piece = next(self._pieces, None)
        if piece is not None and self._hash is not None:
            self._hash.update(piece)
        return piece

    def packets(self) -> Iterator[Packet]:
        """The clip's packets, decrypted one chunk at a time after that chunk was checked against the manifest.
        Raises :class:`ReleaseError` ``tampered`` at the first bad byte."""
        try:
            while (frame := self._next_piece()) is not None:
                for p in self._dec.pull(frame):
                    self.packets_read += 1
                    yield p
            if self._hash is not None and self._hash.hexdigest() != self._entry.blob_hash:
                raise FormatError(f"clip {self.clip_id}: hash differs from the bundle index")
            self._dec.finish(require_final=self.manifest.complete)
        except FormatError as exc:
            raise ReleaseError("tampered", str(exc)) from None
        self.done = True

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {"clip_id": self.clip_id, "t_start": m.t_start, "t_end": m.t_end, "event_ids": list(m.event_ids),
                "packets": self.packets_read, "complete": m.complete, "bytes": m.size}


class BundleReader:
    """A bundle whose head verified (see the module docstring); iterate :meth:`clips` in order, then
    :meth:`report`. Use as a context manager (closes the file).

    What the checks prove depends on what you knew beforehand. The bundle carries the owner key its grant is signed
    with and the device key that signs it, so on their own they prove only that the bundle is consistent: anyone can
    make one from a fresh device key and a fresh owner key. :attr:`owner_verified` is True only when the owner key
    came from outside the bundle (``owner=``, or :meth:`confirm_owner` with a key the recipient pinned);
    :attr:`device_verified` when the owner is verified (the owner's grant names the device, whose id is the hash of
    its key) or the device id was expected (``expect_device=``)."""

    def __init__(self, f: BinaryIO, length: int, recipient: SecretKeys, *, owner: PublicKeys | None = None,
                 expect_device: str | None = None) -> None:
        self._f = f
        self._summaries: list[dict[str, Any]] = []
        self._complete = False
        index, head, sig, self.version = _read_head(f, length)
        try:
            fields = _parse_index(index, self.version)
        except FormatError as exc:
            raise ReleaseError("malformed", str(exc)) from None
        self.bundle_id, self.device_id, self.created_at, self.owner, self.grant, device_key, self._entries = fields
        self._vk = nacl.signing.VerifyKey(device_key)
        try:
            self._vk.verify(signed_message(SIG_DOMAIN if self.version == 2 else SIG_DOMAIN_V1, head), sig)
        except nacl.exceptions.BadSignatureError:
            raise ReleaseError("bad_device_signature", "bundle index not signed by the device key it names") from None
        if device_id_for(device_key) != self.device_id or self.grant.device_id != self.device_id:
            raise ReleaseError("wrong_device", "device key, bundle and grant name different devices")
        if expect_device is not None and self.device_id != expect_device:
            raise ReleaseError("wrong_device", f"the bundle comes from {self.device_id}, not {expect_device}")
        if owner is not None and owner != self.owner:
            raise ReleaseError("wrong_owner", "the grant's owner is not the owner key you expected")
        self.grant.verify(self.owner)
        self.owner_verified = owner is not None
        self.device_verified = self.owner_verified or expect_device is not None
        if self.grant.recipient.box != recipient.public.box:
            raise ReleaseError("wrong_recipient", f"bundle is for {self.grant.recipient_name!r}, not this key")
        if [e.clip_id for e in self._entries] != list(self.grant.clip_ids):
            raise ReleaseError("out_of_scope", "bundle clips differ from the granted clips")
        if len(head) + 64 + sum(e.manifest_size + e.size for e in self._entries) != length:
            raise ReleaseError("truncated", "bundle length differs from its index")
        self._recipient = recipient

    def confirm_owner(self, owner: PublicKeys) -> None:
        """Verify the owner after opening: ``owner`` is a key the recipient knows out of band (e.g. pinned earlier).
        Raises :class:`ReleaseError` ``wrong_owner`` if it is not the grant's owner."""
        if owner != self.owner:
            raise ReleaseError("wrong_owner", "the grant's owner is not the owner key you expected")
        self.owner_verified = self.device_verified = True

    def clips(self) -> Iterator[BundleClipReader]:
        """The clips in bundle order. Moving to the next clip first reads the previous one to its end (verifying it,
        discarding its packets), so every byte is checked whatever the caller consumes."""
        keys = {c.clip_id: c.sealed_key for c in self.grant.clips}
        for entry in self._entries:
            try:
                manifest = self._manifest(entry)
                clip = BundleClipReader(self, entry, manifest, self._recipient.unseal(keys[entry.clip_id]))
            except FormatError as exc:
                raise ReleaseError("tampered", str(exc)) from None
            yield clip
            if not clip.done:
                for _ in clip.packets():
                    pass
            self._summaries.append(clip.summary())
        self._complete = True

    def _manifest(self, entry: _Entry) -> Manifest:
        if entry.manifest is not None:
            m = entry.manifest
        else:
            raw = read_exact(self._f, entry.manifest_size)
            if manifest_hash(raw) != entry.manifest_hash:
                raise FormatError(f"clip {entry.clip_id}: manifest hash differs from the bundle index")
            m = Manifest.from_bytes(raw)
        if m.clip_id != entry.clip_id or m.device_id != self.device_id:
            raise FormatError(f"clip {entry.clip_id}: manifest names another clip or device")
        if m.size != entry.size:
            raise FormatError(f"clip {entry.clip_id}: manifest size differs from the bundle index")
        return m.verify(self._vk)

    def report(self) -> dict[str, Any]:
        """The verification report; raises :class:`ReleaseError` unless every clip was read and verified."""
        if not self._complete:
            raise ReleaseError("truncated", "the bundle was not read to its end")
        return {**report(self.bundle_id, self.device_id, self.created_at, self.owner, self.grant, self._summaries),
                "owner_verified": self.owner_verified, "device_verified": self.device_verified}

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def report(bundle_id: str, device_id: str, created_at: float, owner: PublicKeys, grant: Grant,
           clips: list[dict[str, Any]]) -> dict[str, Any]:
    g = grant
    return {"ok": True, "bundle_id": bundle_id, "device_id": device_id, "created_at": created_at,
            "owner_key": owner.sign.hex(), "grant_id": g.grant_id, "purpose": g.purpose, "requester": g.requester,
            "recipient_name": g.recipient_name, "issued_at": g.issued_at, "expires_at": g.expires_at,
            "checks": list(CHECKS), "clips": clips}


def read_bundle(source: bytes | str | os.PathLike[str], recipient: SecretKeys, *,
                owner: PublicKeys | None = None, expect_device: str | None = None) -> BundleReader:
    """Open a bundle (a file path, or bytes) and verify its head; see the module docstring. ``owner``: the owner
    key you know out of band — without it the owner (and so the device) is NOT verified, only self-consistent
    (:class:`BundleReader`); ``expect_device``: the device id you expect.
    Raises :class:`ReleaseError`; ``OSError`` if the file cannot be read."""
    if isinstance(source, bytes):
        f: BinaryIO = io.BytesIO(source)
        length = len(source)
    elif isinstance(source, str | os.PathLike):
        f = open(source, "rb")
        length = os.fstat(f.fileno()).st_size
    else:
        raise ReleaseError("malformed", "bundle must be bytes or a file path")
    try:
        return BundleReader(f, length, recipient, owner=owner, expect_device=expect_device)
    except BaseException:
        f.close()
        raise


@dataclass(frozen=True)
class OpenedClip:
    clip_id: str
    manifest: Manifest
    header: ClipHeader
    packets: list[Packet]


@dataclass(frozen=True)
class OpenedBundle:
    """A fully verified bundle held in memory: who released what to whom, and the decrypted clips."""

    bundle_id: str
    device_id: str
    created_at: float
    owner: PublicKeys
    grant: Grant
    clips: tuple[OpenedClip, ...]
    summaries: tuple[dict[str, Any], ...] = ()

    def report(self) -> dict[str, Any]:
        return report(self.bundle_id, self.device_id, self.created_at, self.owner, self.grant, list(self.summaries))


def open_bundle(source: bytes | str | os.PathLike[str], recipient: SecretKeys, *,
                owner: PublicKeys | None = None) -> OpenedBundle:
    """Verify and decrypt a whole bundle into memory (small bundles, tests); large ones stream through
    :func:`read_bundle`. Raises :class:`ReleaseError`."""
    with read_bundle(source, recipient, owner=owner) as b:
        clips = [OpenedClip(c.clip_id, c.manifest, c.header, list(c.packets())) for c in b.clips()]
        return OpenedBundle(b.bundle_id, b.device_id, b.created_at, b.owner, b.grant, tuple(clips),
                            tuple(b.report()["clips"]))


# ----------------------------------------------------------------------------------------------- parsing

def _read_head(f: BinaryIO, length: int) -> tuple[dict[str, Any], bytes, bytes, int]:
    prefix = read_exact(f, len(MAGIC) + 4)
    if len(prefix) < len(MAGIC) + 4 or prefix[: len(MAGIC)] not in (MAGIC, MAGIC_V1):
        raise ReleaseError("malformed", "not a doorkeep bundle (bad magic)")
    version = 2 if prefix[: len(MAGIC)] == MAGIC else 1
    (n,) = _LEN.unpack_from(prefix, len(MAGIC))
    if n > MAX_INDEX or length < len(prefix) + n + 64:
        raise ReleaseError("truncated", "bundle shorter than its index and signature")
    raw = read_exact(f, n)
    sig = read_exact(f, 64)
    try:
        index = parse_json(raw, what="bundle index")
    except FormatError as exc:
        raise ReleaseError("malformed", str(exc)) from None
    return index, prefix + raw, sig, version


def _parse_index(index: dict[str, Any], version: int) -> tuple[Any, ...]:
    f = Fields(index, what="bundle index")
    f.header(FORMAT, version)
    f.only("format", "v", "bundle_id", "device_id", "device_key", "owner", "created_at", "grant", "clips")
    entries = []
    for e in f.items("clips", max_len=1000):
        ef = Fields(e, what="bundle clip")
        if version == 1:
            ef.only("clip_id", "manifest", "size", "hash")
            entries.append(_Entry(ef.text("clip_id", max_len=64), ef.integer("size", hi=1 << 40),
                                  manifest=Manifest.from_json(ef.obj.get("manifest")),
                                  blob_hash=ef.hexstr("hash", length=32)))
        else:
            ef.only("clip_id", "manifest_hash", "manifest_size", "size")
            entries.append(_Entry(ef.text("clip_id", max_len=64), ef.integer("size", hi=1 << 40),
                                  manifest_size=ef.integer("manifest_size", lo=1, hi=MAX_MANIFEST),
                                  manifest_hash=ef.hexstr("manifest_hash", length=32)))
    return (f.hexstr("bundle_id", length=16), f.text("device_id", max_len=64), f.number("created_at"),
            PublicKeys.from_json(f.obj.get("owner"), what="bundle owner"), Grant.from_json(f.obj.get("grant")),
            f.b64("device_key", length=32), entries)
