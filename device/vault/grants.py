"""Release grants: the owner's signed permission to give named clips to one recipient, for a purpose, until expiry.

The owner's tool builds a grant (:func:`issue_grant`): for each clip it unseals the clip key with the owner's
secret key and re-seals it to the recipient's X25519 key, then signs the whole grant with the owner's Ed25519 key.
The device checks a grant (:func:`check_grant`) against the *pinned* owner key before any footage leaves.
Format: docs/formats.md#grant.
"""

from __future__ import annotations

import fcntl
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.utils

from ..errors import FormatError, InvalidArgument, KeyRoleError, ReleaseError, WrongType
from ..fileio import fsync_dir, write_all
from .clips import SEALED_BYTES, check_clip_id
from .codec import Fields, b64e, canonical, parse_json, signed_message
from .keys import PublicKeys, SecretKeys

FORMAT = "doorkeep-grant"
VERSION = 1
SIG_DOMAIN = "doorkeep-grant-v1"
#: Clock-skew allowance on both ends of a grant's validity (docs/security.md#clock-skew-policy).
GRANT_SKEW_S = 300
#: Longest validity the device accepts.
MAX_LIFETIME_S = 30 * 86400
MAX_CLIPS = 1000
#: Longest texts the device accepts, in characters (the owner's tool checks the same limits before it signs).
MAX_NAME = 256  # recipient_name, requester
MAX_PURPOSE = 1024
MAX_REQUEST_ID = 64
_GRANT_ID = re.compile(r"[0-9a-f]{32}")
_KEYS = ("format", "v", "grant_id", "device_id", "clips", "recipient", "recipient_name", "purpose", "requester",
         "request_id", "issued_at", "expires_at", "sig")


@dataclass(frozen=True)
class GrantClip:
    clip_id: str
    sealed_key: bytes  # the clip key sealed to the recipient (80 bytes)

    def __post_init__(self) -> None:
        check_clip_id(self.clip_id)
        if not isinstance(self.sealed_key, bytes) or len(self.sealed_key) != SEALED_BYTES:
            raise WrongType(f"GrantClip.sealed_key must be {SEALED_BYTES} bytes")


@dataclass(frozen=True)
class Grant:
    """A parsed release grant. Verify with :meth:`verify` (or on the device with :func:`check_grant`)."""

    grant_id: str
    device_id: str
    clips: tuple[GrantClip, ...]
    recipient: PublicKeys
    recipient_name: str
    purpose: str
    requester: str
    request_id: str
    issued_at: int
    expires_at: int
    sig: bytes = field(default=b"", repr=False)

    def body(self) -> dict[str, Any]:
        return {"format": FORMAT, "v": VERSION, "grant_id": self.grant_id, "device_id": self.device_id,
                "clips": [{"clip_id": c.clip_id, "key": b64e(c.sealed_key)} for c in self.clips],
                "recipient": self.recipient.to_json(), "recipient_name": self.recipient_name,
                "purpose": self.purpose, "requester": self.requester, "request_id": self.request_id,
                "issued_at": self.issued_at, "expires_at": self.expires_at}

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "sig": b64e(self.sig)}

    def to_bytes(self) -> bytes:
        return canonical(self.to_json()) + b"\n"

    @property
    def clip_ids(self) -> tuple[str, ...]:
        return tuple(c.clip_id for c in self.clips)

    @classmethod
    def from_json(cls, obj: object) -> Grant:
        """Parse (not verify). Raises :class:`FormatError`."""
        f = Fields(obj, what="grant")
        f.header(FORMAT, VERSION)
        f.only(*_KEYS)
        clips = []
        for c in f.items("clips", max_len=MAX_CLIPS):
            cf = Fields(c, what="grant clip")
            cf.only("clip_id", "key")
            clips.append(GrantClip(check_clip_id(cf.obj.get("clip_id")), cf.b64("key", length=SEALED_BYTES)))
        if not clips:
            raise FormatError("grant: names no clips")
        if len({c.clip_id for c in clips}) != len(clips):
            raise FormatError("grant: a clip is listed twice")
        recipient = PublicKeys.from_json(f.obj.get("recipient"), what="grant recipient")
        if recipient.role != "recipient":
            raise FormatError("grant: recipient key must have role 'recipient'")
        return cls(f.hexstr("grant_id", length=16), f.text("device_id", max_len=64), tuple(clips), recipient,
                   f.text("recipient_name", max_len=MAX_NAME), f.text("purpose", max_len=MAX_PURPOSE),
                   f.text("requester", max_len=MAX_NAME), f.text("request_id", empty=True, max_len=MAX_REQUEST_ID),
                   f.integer("issued_at"), f.integer("expires_at"),
                   f.b64("sig", length=64))

    @classmethod
    def from_bytes(cls, data: bytes) -> Grant:
        return cls.from_json(parse_json(bytes(data).strip(), what="grant"))

    def signed(self, owner: SecretKeys) -> Grant:
        """A copy signed with the owner's Ed25519 key."""
        return Grant(**{**self.__dict__, "sig": owner.sign(signed_message(SIG_DOMAIN, canonical(self.body())))})

    def verify(self, owner: PublicKeys) -> Grant:
        """Check the owner's signature; raises :class:`ReleaseError` ``bad_signature``."""
        try:
            owner.verify_key.verify(signed_message(SIG_DOMAIN, canonical(self.body())), self.sig)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise ReleaseError("bad_signature", f"grant {self.grant_id} is not signed by the pinned owner") from None
        return self


def check_terms(*, recipient_name: str, purpose: str, requester: str, request_id: str = "",
                lifetime_s: float) -> None:
    """The device's limits on a grant's terms, for the owner's tool to apply before it signs (so it never signs a
    grant the device will refuse). Raises :class:`FormatError` naming the field, or :class:`ReleaseError`
    ``lifetime_too_long``."""
    for name, value, most in (("recipient name", recipient_name, MAX_NAME), ("purpose", purpose, MAX_PURPOSE),
                              ("requester", requester, MAX_NAME), ("request id", request_id, MAX_REQUEST_ID)):
        if not isinstance(value, str) or len(value) > most or (not value and name != "request id"):
            n = len(value) if isinstance(value, str) else type(value).__name__
            raise FormatError(f"the {name} is {n} characters; the device accepts 1..{most}"
                              if name != "request id" else f"the request id is {n} characters; at most {most}")
    check_lifetime(0, lifetime_s)


def check_lifetime(issued_at: float, expires_at: float) -> None:
    """A grant is valid for more than 0 s and at most :data:`MAX_LIFETIME_S` (``lifetime_too_long`` otherwise)."""
    life = expires_at - issued_at
    if not (math.isfinite(life) and 0 < life <= MAX_LIFETIME_S):
        raise ReleaseError("lifetime_too_long", f"a grant is valid for more than 0 s and at most {MAX_LIFETIME_S} s "
                                                f"({MAX_LIFETIME_S // 86400} days); this one for {life:g} s")


def issue_grant(owner: SecretKeys, *, device_id: str, sealed_keys: Mapping[str, bytes], recipient: PublicKeys,
                recipient_name: str, purpose: str, requester: str, request_id: str = "",
                issued_at: int | None = None, lifetime_s: int = 7 * 86400, grant_id: str | None = None) -> Grant:
    """Owner side: re-seal each clip key (``sealed_keys``: clip id → key sealed to the owner, from the clip header)
    to ``recipient`` and sign. Nothing the device would refuse is signed: the terms are checked
    (:func:`check_terms`) and the unsigned grant is read back with the device's own parser first.

    Raises:
        FormatError: a limit the device applies (names the field), or a clip key does not open with the owner's key.
        ReleaseError: ``lifetime_too_long``.
    """
    if owner.role != "owner":
        raise KeyRoleError("grants are signed with the owner's keys")
    if recipient.role != "recipient":
        raise KeyRoleError("the grant recipient must be a recipient key")
    check_terms(recipient_name=recipient_name, purpose=purpose, requester=requester, request_id=request_id,
                lifetime_s=lifetime_s)
    issued = int(time.time()) if issued_at is None else issued_at
    clips = []
    for clip_id, sealed in sorted(sealed_keys.items()):
        key = owner.unseal(sealed)
        clips.append(GrantClip(clip_id, nacl.public.SealedBox(recipient.box_key).encrypt(key)))
    grant = Grant(grant_id or nacl.utils.random(16).hex(), device_id, tuple(clips), recipient, recipient_name,
                  purpose, requester, request_id, issued, issued + lifetime_s)
    Grant.from_json({**grant.body(), "sig": b64e(bytes(64))})  # every other limit, exactly as the device reads it
    return grant.signed(owner)


class ReplaySet:
    """The grant ids already used on this device, one per line in ``<state_dir>/grants.used``.

    Every process that opens the state directory shares the file, not a copy of it: each check re-reads it, and
    :meth:`add` holds an exclusive ``flock`` on it while it re-reads, checks and appends, then fsyncs the file and
    its directory. So the service and an export — or two exports — can never both accept one grant, even when both
    opened the set before either used it. A torn last line (a crash mid-append) is no id (an id is 32 hex digits),
    and the next append starts on a new line, so the fragment can never swallow the next id.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    @staticmethod
    def _parse(data: bytes) -> set[str]:
        return {w for w in data.decode("ascii", "replace").split() if _GRANT_ID.fullmatch(w)}

    def ids(self) -> set[str]:
        """Every grant id recorded so far (read from the file now)."""
        try:
            return self._parse(self.path.read_bytes())
        except FileNotFoundError:
            return set()

    def __contains__(self, grant_id: object) -> bool:
        return grant_id in self.ids()

    def add(self, grant_id: str) -> None:
        """Record ``grant_id`` durably; raises :class:`ReleaseError` ``replayed`` if any process used it before."""
        if not _GRANT_ID.fullmatch(grant_id):
            raise InvalidArgument(f"not a grant id: {grant_id!r}")
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
                data = _read_all(fd)
                if grant_id in self._parse(data):
                    raise ReleaseError("replayed", f"grant {grant_id} was already used")
                record = grant_id.encode("ascii") + b"\n"
                write_all(fd, record if not data or data.endswith(b"\n") else b"\n" + record)
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self.path.parent)  # the file's creation (first grant) is durable too


def _read_all(fd: int) -> bytes:
    parts, pos = [], 0
    while chunk := os.pread(fd, 1 << 16, pos):
        parts.append(chunk)
        pos += len(chunk)
    return b"".join(parts)


def check_grant(data: bytes, *, owner: PublicKeys, device_id: str, existing: Iterable[str], replay: ReplaySet,
                now: float | None = None, requested: Iterable[str] | None = None) -> Grant:
    """Device side: every check a grant must pass before an export. Raises :class:`ReleaseError` with a reason
    code: ``malformed``, ``bad_signature``, ``wrong_device``, ``not_yet_valid``, ``expired``, ``lifetime_too_long``,
    ``replayed``, ``unknown_clip``, ``out_of_scope``. Does not consume the grant id (see :meth:`ReplaySet.add`)."""
    try:
        grant = Grant.from_bytes(data)
    except FormatError as exc:
        raise ReleaseError("malformed", str(exc)) from None
    grant.verify(owner)
    if grant.device_id != device_id:
        raise ReleaseError("wrong_device", f"grant is for {grant.device_id}, this is {device_id}")
    now = time.time() if now is None else now
    if now < grant.issued_at - GRANT_SKEW_S:
        raise ReleaseError("not_yet_valid", f"issued at {grant.issued_at}, device clock {now:.0f}")
    if now >= grant.expires_at + GRANT_SKEW_S:
        raise ReleaseError("expired", f"expired at {grant.expires_at}, device clock {now:.0f}")
    check_lifetime(grant.issued_at, grant.expires_at)
    if grant.grant_id in replay:
        raise ReleaseError("replayed", f"grant {grant.grant_id} was already used")
    have = set(existing)
    missing = [c for c in grant.clip_ids if c not in have]
    if missing:
        raise ReleaseError("unknown_clip", f"no such clip on this device: {', '.join(missing[:5])}")
    if requested is not None:
        extra = sorted(set(requested) - set(grant.clip_ids))
        if extra:
            raise ReleaseError("out_of_scope", f"not covered by the grant: {', '.join(extra[:5])}")
    return grant
