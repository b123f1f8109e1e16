"""Release grants: the owner's signed permission to give named clips to one recipient, for a purpose, until expiry.

The owner's tool builds a grant (:func:`issue_grant`): for each clip it unseals the clip key with the owner's
secret key and re-seals it to the recipient's X25519 key, then signs the whole grant with the owner's Ed25519 key.
The device checks a grant (:func:`check_grant`) against the *pinned* owner key before any footage leaves.
Format: docs/formats.md#grant.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.utils

from ..errors import FormatError, KeyRoleError, ReleaseError, WrongType
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
                   f.text("recipient_name"), f.text("purpose", max_len=1024), f.text("requester"),
                   f.text("request_id", empty=True, max_len=64), f.integer("issued_at"), f.integer("expires_at"),
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


def issue_grant(owner: SecretKeys, *, device_id: str, sealed_keys: Mapping[str, bytes], recipient: PublicKeys,
                recipient_name: str, purpose: str, requester: str, request_id: str = "",
                issued_at: int | None = None, lifetime_s: int = 7 * 86400, grant_id: str | None = None) -> Grant:
    """Owner side: re-seal each clip key (``sealed_keys``: clip id → key sealed to the owner, from the clip header)
    to ``recipient`` and sign. Raises :class:`FormatError` if a clip key does not open with the owner's key."""
    if owner.role != "owner":
        raise KeyRoleError("grants are signed with the owner's keys")
    if recipient.role != "recipient":
        raise KeyRoleError("the grant recipient must be a recipient key")
    issued = int(time.time()) if issued_at is None else issued_at
    clips = []
    for clip_id, sealed in sorted(sealed_keys.items()):
        key = owner.unseal(sealed)
        clips.append(GrantClip(clip_id, nacl.public.SealedBox(recipient.box_key).encrypt(key)))
    return Grant(grant_id or nacl.utils.random(16).hex(), device_id, tuple(clips), recipient, recipient_name,
                 purpose, requester, request_id, issued, issued + lifetime_s).signed(owner)


class ReplaySet:
    """Grant ids already used on this device, persisted one per line (append + fsync before any export)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._ids = set(self.path.read_text("ascii").split())
        except FileNotFoundError:
            self._ids = set()

    def __contains__(self, grant_id: object) -> bool:
        return grant_id in self._ids

    def add(self, grant_id: str) -> None:
        """Record ``grant_id``; raises :class:`ReleaseError` ``replayed`` if it was used before."""
        with self._lock:
            if grant_id in self._ids:
                raise ReleaseError("replayed", f"grant {grant_id} was already used")
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, grant_id.encode("ascii") + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
            self._ids.add(grant_id)


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
    if grant.expires_at - grant.issued_at > MAX_LIFETIME_S or grant.expires_at <= grant.issued_at:
        raise ReleaseError("lifetime_too_long", f"validity must be within 0..{MAX_LIFETIME_S} s")
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
