"""Footage requests: a requester's signed ask (who, incident, time window, purpose).

The device never answers a request itself. It verifies the requester's signature, audits the request, and
forwards it verbatim to the owner's hub as a notification. Its reply to the requester is the same constant
acknowledgement whatever clips exist — a request never reveals whether there is footage for its window.
Format: docs/formats.md#request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.utils

from ..errors import FormatError
from .audit import AuditLog
from .codec import Fields, b64e, canonical, parse_json, signed_message
from .keys import PublicKeys, SecretKeys

FORMAT = "doorkeep-request"
VERSION = 1
SIG_DOMAIN = "doorkeep-request-v1"
NOTICE_FORMAT = "doorkeep-request-notice"
#: The one reply a requester ever gets from the device.
ACK = canonical({"format": "doorkeep-request-ack", "v": 1, "status": "forwarded-to-owner"})
#: Largest request accepted (and so the largest notification published, plus a small envelope).
MAX_REQUEST_BYTES = 8192
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
        r = cls(f.hexstr("request_id", length=16), f.text("requester"), f.text("incident", max_len=1024),
                f.text("purpose", max_len=1024), window, f.integer("issued_at"),
                PublicKeys.from_json(f.obj.get("key"), what="request key"), f.b64("sig", length=64))
        try:
            r.key.verify_key.verify(signed_message(SIG_DOMAIN, canonical(r.body())), r.sig)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise FormatError("request: signature does not verify") from None
        return r


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


@dataclass(frozen=True)
class Notification:
    """What the device publishes to the owner's hub (through the MQTT client's ``publish_raw``)."""

    topic: str
    payload: bytes


def request_topic(device_id: str) -> str:
    from ..publish.topics import Topics

    return Topics(device_id).request


def handle_request(data: bytes, *, device_id: str, audit: AuditLog, now: float | None = None) -> Notification:
    """Device side: verify, audit and wrap a request for the owner's hub. Looks at no clip, so its result and
    its timing are the same whether footage exists or not. Invalid requests are audited and raise FormatError."""
    try:
        req = Request.from_bytes(data)
    except FormatError as exc:
        audit.append("request_refused", reason=str(exc)[:200])
        raise
    audit.append("request_received", request_id=req.request_id, requester=req.requester, incident=req.incident,
                 purpose=req.purpose, window=list(req.window), requester_key=req.key.sign.hex())
    notice = {"format": NOTICE_FORMAT, "v": 1, "device_id": device_id,
              "received_at": round(time.time() if now is None else now, 3), "request": req.to_json()}
    return Notification(request_topic(device_id), canonical(notice))
