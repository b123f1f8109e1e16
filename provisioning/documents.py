"""Owner-signed documents sent to one device: the envelope shared by configuration, owner-key rotation and re-pair
authorisation.

Every document names its ``kind``, the ``device`` it is for, a per-device monotonic ``counter`` (one sequence for
all kinds, so no document can be replayed or rolled back), the ``signer`` (the owner's Ed25519 public key) and a
``body``. The signature is Ed25519 over ``DOMAIN || NUL || canonical(document without "sig")``. Field order and encoding
are specified in docs/formats.md ("Provisioning: owner-signed documents").

The device verifies in a fixed order, so each refusal names the first thing wrong: format → kind → signature present
→ signer is the pinned owner → signature valid → device id → counter above the last applied one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing
from doorkeep.device.errors import FormatError, InvalidArgument
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import SecretKeys

from .errors import (
    BadSignature,
    MalformedDocument,
    StaleCounter,
    UnsignedDocument,
    WrongDevice,
)

FORMAT = "doorkeep/owner-doc"
VERSION = 1
#: Signature domain (see codec.signed_message): a document signature never verifies as another kind of message.
DOMAIN = "doorkeep-owner-doc-v1"
KIND_CONFIG = "config"
KIND_ROTATE = "rotate-owner"
KIND_REPAIR = "authorize-repair"
KINDS = (KIND_CONFIG, KIND_ROTATE, KIND_REPAIR)
#: The largest counter (JSON-safe integer); it can never be exhausted in practice.
MAX_COUNTER = 2**53 - 1
#: Documents larger than this are refused before parsing (a config is a few KiB).
MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class OwnerDocument:
    """A parsed (not yet verified) owner-signed document."""

    kind: str
    device_id: str
    counter: int
    issued_at: int
    signer: bytes
    body: dict[str, Any] = field(default_factory=dict)
    signature: bytes | None = None

    def unsigned_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "v": VERSION,
            "kind": self.kind,
            "device": self.device_id,
            "counter": self.counter,
            "issued_at": self.issued_at,
            "signer": codec.b64e(self.signer),
            "body": self.body,
        }

    def signed_bytes(self) -> bytes:
        """The exact bytes the signature covers."""
        return codec.signed_message(DOMAIN, codec.canonical(self.unsigned_dict()))

    def to_bytes(self) -> bytes:
        """The canonical wire/file form (with ``sig`` when signed)."""
        d = self.unsigned_dict()
        if self.signature is not None:
            d["sig"] = codec.b64e(self.signature)
        return codec.canonical(d) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> OwnerDocument:
        """Parse the envelope; refuses with :class:`MalformedDocument` naming the bad field."""
        if len(data) > MAX_BYTES:
            raise MalformedDocument(f"document is {len(data)} bytes; the limit is {MAX_BYTES}")
        try:
            f = codec.Fields(codec.parse_json(data, what="owner document"), what="owner document")
            f.header(FORMAT, VERSION)
            f.only("format", "v", "kind", "device", "counter", "issued_at", "signer", "body", "sig")
            kind = f.text("kind", max_len=32)
            if kind not in KINDS:
                raise MalformedDocument(f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
            body = f.obj.get("body")
            if not isinstance(body, dict):
                raise MalformedDocument("owner document: 'body' must be a JSON object")
            return cls(
                kind=kind,
                device_id=f.text("device", max_len=64),
                counter=f.integer("counter", lo=1, hi=MAX_COUNTER),
                issued_at=f.integer("issued_at"),
                signer=f.b64("signer", length=32),
                body=body,
                signature=f.b64("sig", length=64) if "sig" in f.obj else None,
            )
        except FormatError as exc:
            raise MalformedDocument(str(exc)) from None

    def verify(self, *, kind: str, pinned_owner: bytes, device_id: str, last_counter: int) -> None:
        """Check this document for the device; raises the first refusal (see module docstring)."""
        if self.kind != kind:
            raise MalformedDocument(f"expected a {kind!r} document, got {self.kind!r}")
        if self.signature is None:
            raise UnsignedDocument(f"{self.kind} document #{self.counter} has no signature")
        if self.signer != pinned_owner:
            raise BadSignature(f"signed by owner key {key_id(self.signer)}, the device pins {key_id(pinned_owner)}")
        try:
            nacl.signing.VerifyKey(pinned_owner).verify(self.signed_bytes(), self.signature)
        except nacl.exceptions.BadSignatureError:
            raise BadSignature(f"{self.kind} document #{self.counter}: signature does not verify") from None
        if self.device_id != device_id:
            raise WrongDevice(f"document is for {self.device_id}, this device is {device_id}")
        if self.counter <= last_counter:
            raise StaleCounter(f"counter {self.counter} is not above the last applied {last_counter} "
                               "(replay or rollback)")


def key_id(public: bytes) -> str:
    """A short printable id for a public key (first 8 bytes, hex) used in messages and audit records."""
    return public[:8].hex()


def sign_document(
    kind: str,
    *,
    device_id: str,
    counter: int,
    body: dict[str, Any],
    owner: SecretKeys,
    issued_at: int | None = None,
) -> OwnerDocument:
    """Make and sign a document with the owner's Ed25519 key (owner side)."""
    if kind not in KINDS:
        raise InvalidArgument(f"unknown document kind {kind!r}")
    if not 0 < counter <= MAX_COUNTER:
        raise InvalidArgument(f"counter must be within 1..{MAX_COUNTER}")
    doc = OwnerDocument(
        kind=kind,
        device_id=device_id,
        counter=counter,
        issued_at=int(time.time()) if issued_at is None else issued_at,
        signer=owner.public.sign,
        body=body,
    )
    sig = owner.sign(doc.signed_bytes())
    return OwnerDocument(**{**doc.__dict__, "signature": sig})
