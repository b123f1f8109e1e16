"""Pairing messages and derivations: commitment, transcript, the 6-digit code, signed message encoding.

The protocol and its state machines are in :mod:`.pairing`; the format is specified in docs/formats.md
("Provisioning: pairing messages").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing
from doorkeep.device.errors import FormatError
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import PublicKeys

from .errors import MalformedDocument, PairingMismatch

FORMAT = "doorkeep/pair"
VERSION = 1
SIG_DOMAIN = "doorkeep-pair-v1"
NONCE_BYTES = 32
SESSION_BYTES = 16
CODE_DIGITS = 6
#: The fields each message type carries besides format, v, type, session and sig (nothing else is accepted).
MESSAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "offer": ("owner", "commit", "auth"),
    "accept": ("device", "device_id", "nonce"),
    "reveal": ("nonce",),
    "confirm": ("transcript",),
    "done": ("transcript", "counter"),
    "abort": ("reason", "device"),  # "device": the device key, in the device's aborts only
}
MESSAGE_TYPES = tuple(MESSAGE_FIELDS)


# ------------------------------------------------------------------------------------------------- derivations
def commitment(session: bytes, owner: PublicKeys, nonce: bytes) -> bytes:
    """The owner's commitment to its nonce (sent before the device's nonce is known)."""
    return codec.blake2b(session + owner.sign + owner.box + nonce, person=b"dk-pair-commit")


def transcript_hash(session: bytes, owner: PublicKeys, device_key: bytes, commit: bytes, n_owner: bytes,
                    n_device: bytes) -> bytes:
    """Everything both sides agreed on, in one hash; the code and the final signatures cover it."""
    return codec.blake2b(session + owner.sign + owner.box + device_key + commit + n_owner + n_device,
                         person=b"dk-pair-transcr")


def pairing_code(transcript: bytes) -> str:
    """The 6-digit code the human compares (``"042917"``)."""
    n = int.from_bytes(codec.blake2b(transcript, person=b"dk-pair-code", size=8), "big")
    return f"{n % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


# ------------------------------------------------------------------------------------------------- messages
def seal(msg: dict[str, Any], sign: Callable[[bytes], bytes]) -> bytes:
    """Add format/version, sign with ``sign`` and encode canonically."""
    body = {"format": FORMAT, "v": VERSION, **msg}
    sig = sign(codec.signed_message(SIG_DOMAIN, codec.canonical(body)))
    return codec.canonical({**body, "sig": codec.b64e(sig)}) + b"\n"


@dataclass(frozen=True)
class Message:
    """A parsed pairing message whose signature has not been checked yet (the key depends on the type)."""

    type: str
    session: bytes
    fields: codec.Fields
    signed: bytes
    sig: bytes

    @classmethod
    def parse(cls, data: bytes) -> Message:
        try:
            f = codec.Fields(codec.parse_json(data, what="pairing message"), what="pairing message")
            f.header(FORMAT, VERSION)
            mtype = f.text("type", max_len=16)
            if mtype not in MESSAGE_TYPES:
                raise MalformedDocument(f"unknown pairing message type {mtype!r}")
            f.only("format", "v", "type", "session", "sig", *MESSAGE_FIELDS[mtype])
            sig = f.b64("sig", length=64)
            body = {k: v for k, v in f.obj.items() if k != "sig"}
            return cls(mtype, f.b64("session", length=SESSION_BYTES), f, codec.signed_message(
                SIG_DOMAIN, codec.canonical(body)), sig)
        except FormatError as exc:
            raise MalformedDocument(str(exc)) from None

    def verify(self, key: bytes) -> None:
        try:
            nacl.signing.VerifyKey(key).verify(self.signed, self.sig)
        except nacl.exceptions.BadSignatureError:
            raise PairingMismatch(f"{self.type} message: signature does not verify (tampered or forged)") from None

    def get(self, read: Callable[[], Any]) -> Any:
        try:
            return read()
        except FormatError as exc:
            raise MalformedDocument(str(exc)) from None
