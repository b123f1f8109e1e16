"""The append-only, hash-chained, device-signed audit log.

One record per line (canonical JSON). Each record's ``hash`` is BLAKE2b over the previous record's hash and the
canonical record body; ``sig`` is the device's Ed25519 signature over that hash. The newest hash (the *head*) goes
into the MQTT heartbeat, so the hub can later prove the log was not truncated or rolled back
(``verify(path, key, expect_head=...)``). Format: docs/formats.md#audit-record.

Example::

    log = AuditLog.open(state_dir / "audit.log", identity)
    log.append("boot", version="0.1")
    report = verify(state_dir / "audit.log", identity.verify_key, expect_head=hub_seen_head)
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import nacl.exceptions
import nacl.signing

from ..errors import AuditError, FormatError, VaultError
from ..identity import DeviceIdentity
from .codec import Fields, b64e, blake2b, canonical, parse_json, signed_message

VERSION = 1
GENESIS = bytes(32)
PERSON = b"dk-audit"
SIG_DOMAIN = "doorkeep-audit-v1"
MAX_LINE = 64 * 1024
_KEYS = ("v", "i", "t", "kind", "f", "prev", "hash", "sig")


@dataclass(frozen=True)
class AuditRecord:
    """One verified (or just written) audit record."""

    index: int
    t: float
    kind: str
    fields: dict[str, Any]
    prev: str
    hash: str
    sig: bytes

    def body(self) -> dict[str, Any]:
        return {"v": VERSION, "i": self.index, "t": self.t, "kind": self.kind, "f": self.fields, "prev": self.prev}

    def to_line(self) -> bytes:
        return canonical({**self.body(), "hash": self.hash, "sig": b64e(self.sig)}) + b"\n"


def record_hash(prev: bytes, body: dict[str, Any]) -> bytes:
    return blake2b(prev + canonical(body), person=PERSON)


def parse_record(line: bytes) -> AuditRecord:
    """Parse one audit line (without checking chain or signature). Raises :class:`FormatError`."""
    f = Fields(parse_json(line, what="audit record"), what="audit record")
    if f.obj.get("v") != VERSION or isinstance(f.obj.get("v"), bool):
        raise FormatError(f"audit record: unsupported version {f.obj.get('v')!r}")
    f.only(*_KEYS)
    fields = f.obj.get("f")
    if not isinstance(fields, dict):
        raise FormatError("audit record: 'f' must be an object")
    return AuditRecord(f.integer("i"), f.number("t"), f.text("kind", max_len=64), fields,
                       f.hexstr("prev", length=32), f.hexstr("hash", length=32), f.b64("sig", length=64))


class AuditLog:
    """Appends records to one audit file. Thread-safe; each append is one ``write`` + ``fsync``."""

    def __init__(self, path: Path, identity: DeviceIdentity, fd: int, index: int, head: bytes) -> None:
        self.path = path
        self._identity = identity
        self._fd = fd
        self._next = index
        self._head = head
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | os.PathLike[str], identity: DeviceIdentity) -> AuditLog:
        """Open (creating) the log. A torn last line from a crash is cut off and an ``audit_repair`` record
        naming its length and hash is appended, so the crash is visible rather than silently accepted."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        data = p.read_bytes() if p.exists() else b""
        good_end, index, head = _scan_tail(data)
        fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        log = cls(p, identity, fd, index, head)
        if good_end < len(data):
            torn = data[good_end:]
            os.ftruncate(fd, good_end)
            os.fsync(fd)
            log.append("audit_repair", torn_bytes=len(torn), torn_hash=blake2b(torn, person=PERSON).hex())
        return log

    def append(self, kind: str, /, **fields: Any) -> AuditRecord:
        """Append, fsync and return one record. ``fields`` must be JSON values."""
        if not isinstance(kind, str) or not 0 < len(kind) <= 64:
            raise AuditError("audit kind must be a non-empty string of <= 64 characters")
        with self._lock:
            if self._fd < 0:
                raise VaultError(f"{self.path}: audit log is closed")
            t, prev = round(time.time(), 6), self._head.hex()
            body = {"v": VERSION, "i": self._next, "t": t, "kind": kind, "f": fields, "prev": prev}
            try:
                h = record_hash(self._head, body)
            except (TypeError, ValueError) as exc:
                raise AuditError(f"audit fields must be JSON values: {exc}") from None
            sig = self._identity.sign(signed_message(SIG_DOMAIN, h))
            rec = AuditRecord(self._next, t, kind, fields, prev, h.hex(), sig)
            line = rec.to_line()
            if len(line) > MAX_LINE:
                raise AuditError(f"audit record larger than {MAX_LINE} bytes")
            os.write(self._fd, line)
            os.fsync(self._fd)
            self._next += 1
            self._head = h
            return rec

    def head(self) -> str:
        """Hex hash of the newest record (the genesis hash, all zeros, for an empty log)."""
        with self._lock:
            return self._head.hex()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _scan_tail(data: bytes) -> tuple[int, int, bytes]:
    """(end of the last complete parseable line, next index, head hash) of a log's bytes."""
    end = len(data) if data.endswith(b"\n") else data.rfind(b"\n") + 1
    # the last newline-terminated line may itself be garbage (torn write that happened to end in \n is unlikely,
    # but a partial line before a crash can be followed by nothing): walk back to the last parseable one.
    while end > 0:
        start = data.rfind(b"\n", 0, end - 1) + 1
        try:
            rec = parse_record(data[start:end - 1])
        except FormatError:
            end = start
            continue
        return end, rec.index + 1, bytes.fromhex(rec.hash)
    return 0, 0, GENESIS


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify`. ``first_bad`` is the index (line number, from 0) of the first bad record."""

    ok: bool
    records: int
    head: str
    first_bad: int | None = None
    reason: str | None = None
    detail: str = ""

    def check(self) -> VerifyReport:
        """Raise :class:`VaultError` unless the log verified."""
        if not self.ok:
            raise VaultError(f"audit log bad at record {self.first_bad}: {self.reason} {self.detail}".strip())
        return self


def verify(path: str | os.PathLike[str], verify_key: nacl.signing.VerifyKey | bytes, *,
           expect_head: str | None = None) -> VerifyReport:
    """Check every record's index, chain, hash and signature; with ``expect_head`` also that a head seen earlier
    (e.g. in a heartbeat) is still in the chain, which detects truncation and rollback."""
    return verify_bytes(Path(path).read_bytes(), verify_key, expect_head=expect_head)


def verify_bytes(data: bytes, verify_key: nacl.signing.VerifyKey | bytes, *,
                 expect_head: str | None = None) -> VerifyReport:
    """:func:`verify` on the log's bytes (e.g. a copy the hub fetched)."""
    vk = verify_key if isinstance(verify_key, nacl.signing.VerifyKey) else nacl.signing.VerifyKey(verify_key)
    lines = data.split(b"\n")
    torn = lines.pop() != b""  # a complete file ends with "\n", leaving one empty piece
    prev = GENESIS
    seen_expected = expect_head is None or expect_head == GENESIS.hex()
    for i, line in enumerate(lines):
        def bad(reason: str, detail: str = "", i: int = i, prev: bytes = prev) -> VerifyReport:
            return VerifyReport(False, i, prev.hex(), i, reason, detail)

        try:
            rec = parse_record(line)
        except FormatError as exc:
            return bad("malformed", str(exc))
        if rec.index != i:
            return bad("index", f"record says {rec.index}")
        if rec.prev != prev.hex():
            return bad("chain", "prev does not match the previous record's hash")
        h = record_hash(prev, rec.body())
        if h.hex() != rec.hash:
            return bad("hash", "record altered")
        try:
            vk.verify(signed_message(SIG_DOMAIN, h), rec.sig)
        except nacl.exceptions.BadSignatureError:
            return bad("signature", "not signed by this device")
        prev = h
        seen_expected = seen_expected or rec.hash == expect_head
    if torn:
        return VerifyReport(False, len(lines), prev.hex(), len(lines), "torn", "last line is incomplete")
    if not seen_expected:
        return VerifyReport(False, len(lines), prev.hex(), len(lines), "truncated",
                            f"expected head {expect_head} is not in the log (truncated or rolled back)")
    return VerifyReport(True, len(lines), prev.hex())
