"""The signed event payload (v1): minimal event metadata a hub can verify, at most 256 bytes.

What it carries: version, device id, event id, kind, phase, time and duration (ms), score (percent), zone name,
clip flag.
What it never carries: imagery, boxes, coordinates, faces, embeddings.

Encoding (docs/mqtt.md#event-payload has the schema and test vectors):

- the *body* is the canonical JSON of the fields: keys sorted, no whitespace, UTF-8, integers only (time and
  duration in milliseconds, score in percent, clip 0/1), optional fields omitted rather than null;
- the signature is Ed25519 (PyNaCl) over ``b"doorkeep-event-v1\\x00" + body``, by the device key;
- the *payload* is the body with ``,"sig":"<86 chars unpadded base64url>"`` inserted before the closing brace.

A verifier strips the ``sig`` member to recover the body byte-exactly, so no JSON re-serialisation is trusted.

Example::

    payload = encode(event, identity)
    ev = verify(payload, identity.public_bytes)   # raises PayloadError when anything is wrong
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

from ..errors import PayloadError, WrongType
from ..events import Event
from ..identity import DeviceIdentity, device_id_for

VERSION = 1
MAX_BYTES = 256
DOMAIN = b"doorkeep-event-v1\x00"
MAX_EVENT_ID = 24
MAX_ZONE_BYTES = 20
MAX_DURATION_MS = 9_999_999_999
_ID_OK = re.compile(r"[A-Za-z0-9_-]{1,24}")
_SIG_TAIL = re.compile(rb',"sig":"([A-Za-z0-9_-]{86})"\}\Z')
_PHASES = {"person": ("start", "end"), "doorbell": ("press",)}
_REQUIRED = {"v", "d", "i", "k", "p", "t", "s", "c"}
_OPTIONAL = {"du", "z"}


class EventPayloadError(PayloadError):
    """A payload was refused. ``reason`` is one of: ``too-big``, ``unsigned``, ``bad-signature``,
    ``wrong-version``, ``wrong-device``, ``malformed``, ``not-canonical``, ``unencodable``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(f"event payload refused ({reason}): {detail}")


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """An event whose signature checked out. Times are wall-clock seconds (millisecond precision)."""

    device_id: str
    event_id: str
    kind: str
    phase: str
    t: float
    t_start: float
    t_end: float | None
    score: float
    zone: str | None
    clip: bool
    version: int = VERSION

    def to_event(self) -> Event:
        return Event(self.event_id, self.kind, self.phase, self.t, self.t_start, self.t_end,  # type: ignore[arg-type]
                     self.score, self.zone, self.clip)


def payload_event_id(event_id: str) -> str:
    """The id as carried in the payload: unchanged when it is 1..24 chars of ``[A-Za-z0-9_-]``; otherwise a stable
    23-char digest (``h`` + base64url(BLAKE2b-128(id))), so a start and its end still share one id."""
    if _ID_OK.fullmatch(event_id):
        return event_id
    digest = hashlib.blake2b(event_id.encode(), digest_size=16, person=b"doorkeep-evid").digest()
    return "h" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def fit_zone(zone: str | None) -> str | None:
    """A zone name as the payload can carry it: quotes, backslashes and non-printables dropped, cut to 20 UTF-8
    bytes at a character boundary (the publisher applies this, so a long owner-chosen name never blocks an event)."""
    if zone is None:
        return None
    clean = "".join(ch for ch in zone if ch.isprintable() and ch not in '"\\').strip()
    cut = clean.encode()[:MAX_ZONE_BYTES].decode(errors="ignore").rstrip()
    return cut or None


def _ms(t: float) -> int:
    return round(float(t) * 1000.0)


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def body_fields(event: Event, device_id: str) -> dict[str, Any]:
    """The payload fields for ``event`` (before signing). Raises EventPayloadError for an unencodable event."""
    if event.phase not in _PHASES.get(event.kind, ()):
        raise EventPayloadError("unencodable", f"kind {event.kind!r} with phase {event.phase!r}")
    if not 0.0 <= event.score <= 1.0:
        raise EventPayloadError("unencodable", f"score {event.score!r} is outside 0..1")
    # A start is stamped with its start time, an end with its end time plus the duration, a press with its time.
    if event.phase == "start":
        t = event.t_start
    elif event.phase == "end":
        t = event.t_end if event.t_end is not None else event.t
    else:
        t = event.t
    f: dict[str, Any] = {"v": VERSION, "d": device_id, "i": payload_event_id(event.event_id), "k": event.kind,
                         "p": event.phase, "t": _ms(t), "s": round(float(event.score) * 100), "c": int(event.clip)}
    if event.phase == "end":
        # Clamped to 10 digits (115 days) so the worst case stays within 256 bytes.
        f["du"] = min(max(0, _ms(t) - _ms(event.t_start)), MAX_DURATION_MS)
    if event.zone is not None:
        zb = event.zone.encode()
        if not 1 <= len(zb) <= MAX_ZONE_BYTES or any(ch in event.zone for ch in '"\\') or not event.zone.isprintable():
            raise EventPayloadError("unencodable", f"zone name {event.zone!r} must be 1..{MAX_ZONE_BYTES} bytes of "
                                    "printable text without quotes or backslashes")
        f["z"] = event.zone
    return f


def encode(event: Event, identity: DeviceIdentity) -> bytes:
    """The signed payload for ``event`` (≤ 256 bytes).

    Raises:
        EventPayloadError: the event cannot be represented (bad kind/phase, score, zone name) or would exceed
            256 bytes.
    """
    payload = sign_tail(_canonical(body_fields(event, identity.device_id)), DOMAIN, identity.sign)
    if len(payload) > MAX_BYTES:
        raise EventPayloadError("unencodable", f"{len(payload)} bytes exceeds {MAX_BYTES}")
    return payload


def sign_tail(body: bytes, domain: bytes, sign: Callable[[bytes], bytes]) -> bytes:
    """``body`` (a JSON object's bytes) with ``,"sig":"<Ed25519 over domain+body, base64url>"`` as its last member."""
    sig = base64.urlsafe_b64encode(sign(domain + body)).rstrip(b"=")
    return body[:-1] + b',"sig":"' + sig + b'"}'


def split_tail(payload: bytes) -> tuple[bytes, bytes]:
    """The signed body (byte-exact, never re-serialised) and the signature of a :func:`sign_tail` payload.

    Raises:
        EventPayloadError: ``unsigned`` (no ``sig``) or ``malformed`` (``sig`` not last / not 86 base64url chars).
    """
    m = _SIG_TAIL.search(payload)
    if m is None:
        if b'"sig"' in payload:
            raise EventPayloadError("malformed", "the sig member is not the last member or not 86 base64url chars")
        raise EventPayloadError("unsigned", "no sig member")
    return payload[: m.start()] + b"}", base64.urlsafe_b64decode(m.group(1) + b"==")


def _verify_key(key: bytes | nacl.signing.VerifyKey) -> nacl.signing.VerifyKey:
    if isinstance(key, nacl.signing.VerifyKey):
        return key
    if not isinstance(key, bytes | bytearray) or len(key) != 32:
        raise WrongType("verify_key must be a nacl VerifyKey or 32 raw bytes")
    return nacl.signing.VerifyKey(bytes(key))


def verify(payload: bytes, verify_key: bytes | nacl.signing.VerifyKey) -> VerifiedEvent:
    """Check and decode a payload from the device owning ``verify_key``.

    Raises:
        EventPayloadError (a PayloadError): too big, unsigned, bad signature (forged or tampered), wrong version,
            wrong device, malformed or non-canonical. Never returns a falsy "not verified" value.
    """
    vk = _verify_key(verify_key)
    if not isinstance(payload, bytes | bytearray):
        raise EventPayloadError("malformed", f"payload must be bytes, got {type(payload).__name__}")
    payload = bytes(payload)
    if len(payload) > MAX_BYTES:
        raise EventPayloadError("too-big", f"{len(payload)} bytes exceeds {MAX_BYTES}")
    body, sig = split_tail(payload)
    try:
        fields = json.loads(body, parse_constant=_refuse_number, parse_float=_finite_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EventPayloadError("malformed", f"not JSON: {exc}") from None
    if not isinstance(fields, dict):
        raise EventPayloadError("malformed", "not a JSON object")
    if fields.get("v") != VERSION:
        raise EventPayloadError("wrong-version", f"version {fields.get('v')!r}, this verifier reads {VERSION}")
    try:
        vk.verify(DOMAIN + body, sig)
    except nacl.exceptions.BadSignatureError:
        raise EventPayloadError("bad-signature", "signature does not match (forged or tampered)") from None
    return _decode(fields, body, device_id_for(bytes(vk)))


def _refuse_number(text: str) -> float:
    raise PayloadError(f"number {text[:32]} is not allowed")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):  # 1e999 parses as infinity otherwise
        raise PayloadError(f"number {text[:32]} is out of range")
    return v


def _decode(f: dict[str, Any], body: bytes, device_id: str) -> VerifiedEvent:
    keys = set(f)
    if not _REQUIRED <= keys or not keys <= _REQUIRED | _OPTIONAL:
        raise EventPayloadError("malformed", f"fields {sorted(keys)}; required {sorted(_REQUIRED)}")
    if _canonical(f) != body:
        raise EventPayloadError("not-canonical", "body is not in canonical form")
    if f["d"] != device_id:
        raise EventPayloadError("wrong-device", f"payload names {f['d']!r}, the key belongs to {device_id!r}")
    ints = [f["t"], f["s"], f.get("du", 0)]
    if not all(type(x) is int and x >= 0 for x in ints) or f["s"] > 100 or f["c"] not in (0, 1) \
            or type(f["c"]) is not int or ("du" in f) != (f["p"] == "end"):
        raise EventPayloadError("malformed", "time, duration, score or clip flag out of range or of the wrong type")
    if f["p"] not in _PHASES.get(f["k"], ()) or not (isinstance(f["i"], str) and _ID_OK.fullmatch(f["i"])):
        raise EventPayloadError("malformed", f"kind {f['k']!r}, phase {f['p']!r}, id {f['i']!r}")
    zone = f.get("z")
    if zone is not None and (not isinstance(zone, str) or not 1 <= len(zone.encode()) <= MAX_ZONE_BYTES):
        raise EventPayloadError("malformed", f"zone {zone!r}")
    t = f["t"] / 1000.0
    end = f["p"] == "end"
    return VerifiedEvent(device_id=device_id, event_id=f["i"], kind=f["k"], phase=f["p"], t=t,
                         t_start=(f["t"] - f["du"]) / 1000.0 if end else t, t_end=t if end else None,
                         score=f["s"] / 100.0, zone=zone, clip=bool(f["c"]))
