"""Footage requests: a requester's signed ask (who, incident, time window, purpose), and what the device sends back.

The device never answers a request itself. It verifies the requester's signature, audits a compact record of the
request, forwards the request **as received** to the owner's hub inside a device-signed notice, and tells the
requester only that it did so: a device-signed acknowledgement whose bytes are the same whatever clips exist, so a
request never reveals whether there is footage for its window. Format: docs/formats.md#footage-request.

Example::

    req = Request.parse(data)                  # form only (cheap): freshness and replay checks come next
    req.verify()                               # the requester's signature
    notice = sign_notice(identity, data, req, received_at=time.time())
    ack = sign_ack(identity, req)              # to Topics(device_id).request_ack(requester_topic_id(req.key))
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.signing
import nacl.utils

from ..errors import FormatError
from ..identity import DeviceIdentity, device_id_for
from .codec import Fields, b64e, blake2b, canonical, parse_json, signed_message
from .keys import PublicKeys, SecretKeys

FORMAT = "doorkeep-request"
VERSION = 1
SIG_DOMAIN = "doorkeep-request-v1"
NOTICE_FORMAT, NOTICE_VERSION, NOTICE_DOMAIN = "doorkeep-request-notice", 2, "doorkeep-request-notice-v2"
ACK_FORMAT, ACK_DOMAIN = "doorkeep-request-ack", "doorkeep-request-ack-v1"
ACK_STATUS = "forwarded-to-owner"
HASH_PERSON = b"dk-request"
#: Largest request accepted; the notice adds a header of at most NOTICE_HEADER bytes (docs/mqtt.md: 9216).
MAX_REQUEST_BYTES = 8192
NOTICE_HEADER = 1024
#: What the audit record keeps of free-text fields (the hub has the whole request; the record stays small).
AUDIT_TEXT = 64
_KEYS = ("format", "v", "request_id", "requester", "incident", "purpose", "window", "issued_at", "key", "sig")


@dataclass(frozen=True)
class Request:
    request_id: str
    requester: str
    incident: str
    purpose: str
    window: tuple[float, float]
    issued_at: int
    key: PublicKeys
    sig: bytes = field(default=b"", repr=False)

    def body(self) -> dict[str, Any]:
        return {"format": FORMAT, "v": VERSION, "request_id": self.request_id, "requester": self.requester,
                "incident": self.incident, "purpose": self.purpose, "window": list(self.window),
                "issued_at": self.issued_at, "key": self.key.to_json()}

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "sig": b64e(self.sig)}

    def to_bytes(self) -> bytes:
        return canonical(self.to_json()) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes) -> Request:
        """Parse and verify the requester's signature. Raises :class:`FormatError`."""
        return cls.parse(data).verify()

    def verify(self) -> Request:
        """Check the requester's signature (by the key the request carries). Raises :class:`FormatError`."""
        try:
            self.key.verify_key.verify(signed_message(SIG_DOMAIN, canonical(self.body())), self.sig)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise FormatError("request: signature does not verify") from None
        return self

    @property
    def key_id(self) -> str:
        """Topic-safe id of the requester's key: ``q-`` + the first 8 bytes of its signing key, hex."""
        return requester_topic_id(self.key)

    @classmethod
    def parse(cls, data: bytes) -> Request:
        """Parse the form of a request, without checking its signature. Raises :class:`FormatError`."""
        if len(data) > MAX_REQUEST_BYTES:
            raise FormatError(f"request: larger than {MAX_REQUEST_BYTES} bytes")
        f = Fields(parse_json(bytes(data).strip(), what="request"), what="request")
        f.header(FORMAT, VERSION)
        f.only(*_KEYS)
        w = f.items("window", max_len=2)
        if len(w) != 2:
            raise FormatError("request: window must be [start, end]")
        wf = Fields({"a": w[0], "b": w[1]}, what="request window")
        window = (wf.number("a"), wf.number("b"))
        if window[1] < window[0]:
            raise FormatError("request: window ends before it starts")
        return cls(f.hexstr("request_id", length=16), f.text("requester"), f.text("incident", max_len=1024),
                   f.text("purpose", max_len=1024), window, f.integer("issued_at"),
                   PublicKeys.from_json(f.obj.get("key"), what="request key"), f.b64("sig", length=64))


def make_request(keys: SecretKeys, *, requester: str, incident: str, purpose: str, window: tuple[float, float],
                 issued_at: int | None = None, request_id: str | None = None) -> Request:
    """Requester side: a signed request. Raises :class:`FormatError` (naming the field) for anything the device
    would refuse — a window that ends before it starts, a field or the whole request too long — checked by reading
    the request back with the device's own parser before it is returned."""
    r = Request(request_id or nacl.utils.random(16).hex(), requester, incident, purpose, (window[0], window[1]),
                int(time.time()) if issued_at is None else issued_at, keys.public)
    try:
        signed = Request(**{**r.__dict__, "sig": keys.sign(signed_message(SIG_DOMAIN, canonical(r.body())))})
        Request.from_bytes(signed.to_bytes())
    except (FormatError, ValueError) as exc:  # ValueError: canonical() refuses a non-finite window
        raise FormatError(f"the device would refuse this request: {exc}") from None
    return signed


def requester_topic_id(key: PublicKeys) -> str:
    return "q-" + key.sign[:8].hex()


def request_hash(data: bytes) -> str:
    return blake2b(bytes(data), person=HASH_PERSON).hex()


def audit_fields(req: Request, data: bytes) -> dict[str, Any]:
    """The ``request_received`` audit record: bounded (free text cut to :data:`AUDIT_TEXT` characters), with the
    hash of the request as received so the hub's copy can be matched to it."""
    return {"request_id": req.request_id, "requester": req.requester[:AUDIT_TEXT],
            "incident": req.incident[:AUDIT_TEXT], "window": list(req.window), "issued_at": req.issued_at,
            "requester_key": req.key.sign.hex(), "hash": request_hash(data), "bytes": len(data)}


# ------------------------------------------------------------------------------------------ notice (to the hub)

def sign_notice(identity: DeviceIdentity, data: bytes, req: Request, *, received_at: float) -> bytes:
    """The notice for the owner's hub: a device-signed header line, then the request bytes exactly as received
    (never re-serialised, so the notice is at most the request plus :data:`NOTICE_HEADER`)."""
    header = {"format": NOTICE_FORMAT, "v": NOTICE_VERSION, "device_id": identity.device_id,
              "received_at": round(received_at * 1000), "request_id": req.request_id, "bn": len(data),
              "bh": request_hash(data)}
    sig = identity.sign(signed_message(NOTICE_DOMAIN, canonical(header)))
    return canonical({**header, "sig": b64e(sig)}) + b"\n" + bytes(data)


@dataclass(frozen=True)
class Notice:
    """A verified request notice (owner side)."""

    device_id: str
    received_at: float
    request: Request
    raw: bytes = field(repr=False)


def parse_notice(data: bytes, device_key: bytes) -> Notice:
    """Owner side: check the device's signature, then the request inside it (and its signature).
    Raises :class:`FormatError`."""
    nl = data.find(b"\n", 0, NOTICE_HEADER)
    if nl < 0:
        raise FormatError("request notice: no header line")
    f = Fields(parse_json(data[:nl], what="request notice"), what="request notice")
    f.header(NOTICE_FORMAT, NOTICE_VERSION)
    f.only("format", "v", "device_id", "received_at", "request_id", "bn", "bh", "sig")
    try:
        nacl.signing.VerifyKey(device_key).verify(
            signed_message(NOTICE_DOMAIN, canonical({k: v for k, v in f.obj.items() if k != "sig"})),
            f.b64("sig", length=64))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise FormatError("request notice: not signed by this device") from None
    raw = data[nl + 1:]
    if len(raw) != f.integer("bn", hi=MAX_REQUEST_BYTES) or request_hash(raw) != f.hexstr("bh", length=32):
        raise FormatError("request notice: request bytes differ from the signed header")
    req = Request.from_bytes(raw)
    if req.request_id != f.hexstr("request_id", length=16):
        raise FormatError("request notice: request id differs")
    return Notice(f.text("device_id", max_len=64), f.integer("received_at") / 1000, req, raw)


# ------------------------------------------------------------------------------------- ack (to the requester)

def sign_ack(identity: DeviceIdentity, req: Request) -> bytes:
    """The acknowledgement: fixed fields of fixed length, so its bytes never depend on any footage."""
    body = {"format": ACK_FORMAT, "v": 1, "device_id": identity.device_id,
            "device_key": b64e(identity.public_bytes), "request_id": req.request_id, "status": ACK_STATUS}
    sig = identity.sign(signed_message(ACK_DOMAIN, canonical(body)))
    return canonical({**body, "sig": b64e(sig)})


def parse_ack(data: bytes, *, device_id: str, request_id: str) -> dict[str, Any]:
    """Requester side: an acknowledgement of ``request_id`` signed by the key of ``device_id``.
    Raises :class:`FormatError`."""
    f = Fields(parse_json(data, what="request ack"), what="request ack")
    f.header(ACK_FORMAT, 1)
    f.only("format", "v", "device_id", "device_key", "request_id", "status", "sig")
    key = f.b64("device_key", length=32)
    if f.text("device_id", max_len=64) != device_id or device_id_for(key) != device_id:
        raise FormatError("request ack: not from the device asked")
    if f.hexstr("request_id", length=16) != request_id:
        raise FormatError("request ack: for another request")
    try:
        nacl.signing.VerifyKey(key).verify(
            signed_message(ACK_DOMAIN, canonical({k: v for k, v in f.obj.items() if k != "sig"})),
            f.b64("sig", length=64))
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise FormatError("request ack: bad signature") from None
    return dict(f.obj)
