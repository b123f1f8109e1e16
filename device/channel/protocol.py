"""Owner channel wire format (v1): owner-signed commands, device-signed replies (docs/formats.md#owner-channel).

Every message is a canonical-JSON **header**, a newline, then an optional binary **body**; a reply is then padded
with zero bytes to a multiple of :data:`PAD` so its size says little about its content::

    message = header  b"\\n"  body  [zero padding, replies only]

The header names the body by length and hash (``bn``, ``bh`` = BLAKE2b-256(body, person ``dk-owner-body``)) and
is signed (Ed25519 over ``DOMAIN || 0x00 || canonical(header without "sig")``): commands by the owner key pinned
on the device, replies by the device key. A command's body is a document that signs itself (an owner config
document, a grant). A reply's body is **sealed to the owner** (SealedBox): its verdict, result and data (clip bytes
as stored, a sealed snapshot, a listing, audit lines) — the broker sees only the header (device, nonce, sequence,
time) and sizes.

Replay: each command carries a random ``nonce`` and ``issued_at``; the device refuses one outside ``±skew`` of its
clock or whose nonce it has seen (limits.FreshnessWindow). A nonce, not a counter, because several owner tools (the
console on the hub, the CLI on a laptop) talk to one device and would have to share a counter.

Example (owner side)::

    msg = sign_command(owner_keys, device_id=did, cmd="list_clips", args={"after": "", "limit": 100},
                       reply_to="o-1a2b3c4d")
    reply = parse_reply(payload, device_key, owner_keys)   # raises ReplyInvalid
"""

from __future__ import annotations

import dataclasses
import re
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing
import nacl.utils

from ..errors import ChannelError, FormatError, ReplyInvalid
from ..identity import device_id_for
from ..vault.clips import check_clip_id
from ..vault.codec import Fields, b64e, blake2b, canonical, parse_json, signed_message
from ..vault.keys import PublicKeys, SecretKeys

VERSION = 1
CMD_FORMAT, CMD_DOMAIN = "doorkeep-owner-cmd", "doorkeep-owner-cmd-v1"
REPLY_FORMAT, REPLY_DOMAIN = "doorkeep-owner-reply", "doorkeep-owner-reply-v1"
BODY_PERSON = b"dk-owner-body"
#: A header (with its newline) never exceeds this.
MAX_HEADER = 4096
#: Largest command body: an owner document (provisioning's 256 KiB limit) or a grant of 1000 clips (~200 KB).
MAX_COMMAND_BODY = 256 * 1024
MAX_COMMAND_BYTES = MAX_HEADER + MAX_COMMAND_BODY  # 266,240
#: Every reply message, padding included, is at most this (docs/mqtt.md ``owner_reply``).
MAX_REPLY_BYTES = 65536
#: Data bytes per streamed reply message (clip, manifest, snapshot, audit bytes).
CHUNK = 60_000
#: Reply messages are padded to a multiple of this.
PAD = 1024
#: Most bytes one ``fetch`` command asks for: the owner's credit window (flow control end to end).
MAX_RANGE = 4 << 20
PARTS = ("clip", "manifest", "snapshot")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HEX16 = re.compile(r"[0-9a-f]{32}")
_CMD_KEYS = ("format", "v", "device_id", "cmd", "nonce", "issued_at", "reply_to", "args", "signer", "bn", "bh",
             "sig")
_REPLY_KEYS = ("format", "v", "device_id", "nonce", "seq", "final", "t", "bn", "bh", "sig")
_LEN = struct.Struct(">I")


def _text_arg(max_len: int, *, empty: bool = True) -> Any:
    def check(v: Any) -> bool:
        return isinstance(v, str) and len(v) <= max_len and (empty or bool(v))
    return check


def _int_arg(lo: int, hi: int) -> Any:
    def check(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
    return check


def _clip_arg(v: Any) -> bool:
    try:
        check_clip_id(v)
    except FormatError:
        return False
    return True


#: Each command's arguments (name → check) and whether it carries a body.
COMMANDS: dict[str, tuple[dict[str, Any], bool]] = {
    "list_clips": ({"after": lambda v: v == "" or _clip_arg(v), "limit": _int_arg(1, 1000)}, False),
    "fetch": ({"clip_id": _clip_arg, "part": lambda v: v in PARTS, "offset": _int_arg(0, 1 << 40),
               "length": _int_arg(1, MAX_RANGE)}, False),
    "live_snapshot": ({}, False),
    "fetch_audit": ({"from": _int_arg(0, 1 << 53), "limit": _int_arg(1, 100_000)}, False),
    "apply_config": ({}, True),
    "get_config": ({}, False),
    "send_grant": ({}, True),
    "decline_request": ({"request_id": lambda v: isinstance(v, str) and bool(_HEX16.fullmatch(v)),
                         "reason": _text_arg(200)}, False),
}


def body_hash(body: bytes) -> str:
    return blake2b(body, person=BODY_PERSON).hex()


def _split(data: bytes, what: str) -> tuple[bytes, bytes]:
    nl = data.find(b"\n", 0, MAX_HEADER)
    if nl < 0:
        raise ChannelError("malformed", f"{what}: no header line within {MAX_HEADER} bytes")
    return data[:nl], data[nl + 1:]


def _strict_b64(f: Fields, key: str, length: int) -> bytes:
    """A base64 field that must be in canonical form (no stray padding bits: one value, one spelling)."""
    raw = f.b64(key, length=length)
    if b64e(raw) != f.obj[key]:
        raise FormatError(f"{f.what}: {key!r} is not canonical base64")
    return raw


def _body_of(f: Fields, rest: bytes, *, padded: bool) -> bytes:
    n = f.integer("bn", hi=MAX_COMMAND_BODY)
    if len(rest) < n or (len(rest) != n and not padded) or rest[n:].strip(b"\0"):
        raise ChannelError("malformed", f"body is {len(rest)} bytes, header says {n}")
    body = rest[:n]
    if body_hash(body) != f.hexstr("bh", length=32):
        raise ChannelError("bad_signature", "body does not match the signed header")
    return body


# -------------------------------------------------------------------------------------------------- commands

@dataclass(frozen=True)
class Command:
    """A parsed owner command. :func:`parse_command` checked its form; the device still checks who signed it
    (:meth:`verify`), its freshness and nonce (limits.FreshnessWindow) and its device id."""

    cmd: str
    device_id: str
    nonce: str
    issued_at: int
    reply_to: str
    args: dict[str, Any]
    signer: bytes
    body: bytes = field(default=b"", repr=False)
    sig: bytes = field(default=b"", repr=False)
    signed_bytes: bytes = field(default=b"", repr=False)
    #: Set by :meth:`verify`: the owner whose signature checked out (replies are sealed to this owner).
    owner: PublicKeys | None = None

    def verify(self, owner: PublicKeys) -> Command:
        """Check the signature against the pinned owner's keys; returns a copy naming that owner. Raises
        :class:`ChannelError` ``not_owner`` / ``bad_signature``."""
        if self.signer != owner.sign:
            raise ChannelError("not_owner", "signed by a key that is not this device's pinned owner")
        try:
            owner.verify_key.verify(self.signed_bytes, self.sig)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise ChannelError("bad_signature", "command signature does not verify") from None
        return dataclasses.replace(self, owner=owner)


def sign_command(owner: SecretKeys, *, device_id: str, cmd: str, args: dict[str, Any] | None = None,
                 body: bytes = b"", reply_to: str, nonce: str | None = None, issued_at: int | None = None) -> bytes:
    """Owner side: one signed command message. Raises :class:`ChannelError` ``bad_args`` for a command the device
    would refuse on form alone (so nothing is sent)."""
    header = {"format": CMD_FORMAT, "v": VERSION, "device_id": device_id, "cmd": cmd,
              "nonce": nonce or nacl.utils.random(16).hex(),
              "issued_at": int(time.time()) if issued_at is None else issued_at, "reply_to": reply_to,
              "args": dict(args or {}), "signer": b64e(owner.public.sign), "bn": len(body), "bh": body_hash(body)}
    _check_form(header, body)
    sig = owner.sign(signed_message(CMD_DOMAIN, canonical(header)))
    data = canonical({**header, "sig": b64e(sig)}) + b"\n" + body
    if len(data) > MAX_COMMAND_BYTES:
        raise ChannelError("too_big", f"command is {len(data)} bytes (limit {MAX_COMMAND_BYTES})")
    return data


def _check_form(h: dict[str, Any], body: bytes) -> None:
    spec = COMMANDS.get(h["cmd"])
    if spec is None:
        raise ChannelError("unknown_command", f"{str(h['cmd'])[:40]!r} is not a command")
    checks, has_body = spec
    args = h["args"]
    if not isinstance(args, dict) or set(args) != set(checks):
        raise ChannelError("bad_args", f"{h['cmd']} takes {sorted(checks)}")
    bad = [k for k, ok in checks.items() if not ok(args[k])]
    if bad:
        raise ChannelError("bad_args", f"{h['cmd']}: bad {', '.join(sorted(bad))}")
    if has_body != bool(body):
        raise ChannelError("bad_args", f"{h['cmd']} {'needs' if has_body else 'takes no'} body")
    if not _SEGMENT.fullmatch(str(h["reply_to"])):
        raise ChannelError("bad_args", "reply_to must be one topic level of [A-Za-z0-9_-]")


def parse_command(data: bytes) -> Command:
    """Parse a command message (form only). Raises :class:`ChannelError` with a reason code."""
    if len(data) > MAX_COMMAND_BYTES:
        raise ChannelError("too_big", f"{len(data)} bytes (limit {MAX_COMMAND_BYTES})")
    head, rest = _split(data, "command")
    try:
        f = Fields(parse_json(head, what="command"), what="command")
        if f.obj.get("format") != CMD_FORMAT:
            raise ChannelError("malformed", "not an owner command")
        if f.obj.get("v") != VERSION:
            raise ChannelError("wrong_version", f"command version {str(f.obj.get('v'))[:10]} (this reads {VERSION})")
        f.only(*_CMD_KEYS)
        cmd = f.text("cmd", max_len=32)
        reply_to = f.text("reply_to", max_len=64)
        args = f.obj.get("args")
        body = _body_of(f, rest, padded=False)
        _check_form({"cmd": cmd, "args": args, "reply_to": reply_to}, body)
        assert isinstance(args, dict)
        sig = _strict_b64(f, "sig", 64)
        unsigned = canonical({k: v for k, v in f.obj.items() if k != "sig"})
        return Command(cmd, f.text("device_id", max_len=64), f.hexstr("nonce", length=16), f.integer("issued_at"),
                       reply_to, dict(args), _strict_b64(f, "signer", 32), body, sig,
                       signed_message(CMD_DOMAIN, unsigned))
    except FormatError as exc:
        raise ChannelError("malformed", str(exc)) from None


# ---------------------------------------------------------------------------------------------------- replies

@dataclass(frozen=True)
class Reply:
    """A verified device reply: ``result`` (command specific), ``body`` (bytes), ``ok``/``reason``/``detail``."""

    cmd: str
    nonce: str
    seq: int
    final: bool
    ok: bool
    reason: str
    detail: str
    result: dict[str, Any]
    t: int
    body: bytes = field(default=b"", repr=False)


def sign_reply(sign: Any, *, device_id: str, owner: PublicKeys, cmd: str, nonce: str, seq: int = 0,
               final: bool = True, ok: bool = True, reason: str = "ok", detail: str = "",
               result: dict[str, Any] | None = None, body: bytes = b"", now: float | None = None) -> bytes:
    """Device side: one signed, padded reply message whose content is sealed to ``owner`` (``sign``: the device
    identity's ``sign``). The broker sees the header (device, nonce, seq, final, time, sizes) and nothing else."""
    inner = canonical({"cmd": cmd, "ok": ok, "reason": reason, "detail": detail[:300], "result": result or {}})
    sealed = nacl.public.SealedBox(owner.box_key).encrypt(_LEN.pack(len(inner)) + inner + body)
    header = {"format": REPLY_FORMAT, "v": VERSION, "device_id": device_id, "nonce": nonce, "seq": seq,
              "final": final, "t": round((time.time() if now is None else now) * 1000), "bn": len(sealed),
              "bh": body_hash(sealed)}
    sig = sign(signed_message(REPLY_DOMAIN, canonical(header)))
    msg = canonical({**header, "sig": b64e(sig)}) + b"\n" + sealed
    if len(msg) > MAX_REPLY_BYTES:
        raise ChannelError("too_big", f"reply of {len(msg)} bytes exceeds {MAX_REPLY_BYTES}")
    return msg + bytes(min(-(-len(msg) // PAD) * PAD, MAX_REPLY_BYTES) - len(msg))


def parse_reply(data: bytes, device_key: bytes, owner: SecretKeys) -> Reply:
    """Owner side: verify a reply against the device key, then open its content with the owner's key.
    Raises :class:`ReplyInvalid`."""
    if len(data) > MAX_REPLY_BYTES:
        raise ReplyInvalid("too_big", f"{len(data)} bytes")
    try:
        head, rest = _split(data, "reply")
        f = Fields(parse_json(head, what="reply"), what="reply")
        f.header(REPLY_FORMAT, VERSION)
        f.only(*_REPLY_KEYS)
        unsigned = canonical({k: v for k, v in f.obj.items() if k != "sig"})
        try:
            nacl.signing.VerifyKey(device_key).verify(signed_message(REPLY_DOMAIN, unsigned), _strict_b64(f, "sig", 64))
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
            raise ReplyInvalid("bad_signature", "reply not signed by the device key") from None
        if f.text("device_id", max_len=64) != device_id_for(device_key):
            raise ReplyInvalid("wrong_device", "reply names another device")
        plain = owner.unseal(_body_of(f, rest, padded=True))
        if len(plain) < 4 or _LEN.unpack_from(plain)[0] > len(plain) - 4:
            raise FormatError("reply: sealed content is malformed")
        n = _LEN.unpack_from(plain)[0]
        g = Fields(parse_json(plain[4:4 + n], what="reply content"), what="reply content")
        g.only("cmd", "ok", "reason", "detail", "result")
        result = g.obj.get("result")
        if not isinstance(result, dict):
            raise FormatError("reply: 'result' must be an object")
        return Reply(g.text("cmd", max_len=32), f.hexstr("nonce", length=16), f.integer("seq"), f.flag("final"),
                     g.flag("ok"), g.text("reason", max_len=64), g.text("detail", max_len=300, empty=True), result,
                     f.integer("t"), plain[4 + n:])
    except ReplyInvalid:
        raise
    except ChannelError as exc:
        raise ReplyInvalid(exc.reason, exc.detail) from None
    except FormatError as exc:
        raise ReplyInvalid("malformed", str(exc)) from None
