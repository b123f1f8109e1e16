"""Owner-side checks for what the owner channel delivers: clip listings, clip files, audit records.

Everything here runs on the owner's machine and reads files in bounded pieces (a clip is checked against its
device-signed manifest chunk by chunk, never loaded whole).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
from doorkeep.device.errors import ChannelError, FormatError
from doorkeep.device.vault.audit import (
    GENESIS,
    SIG_DOMAIN,
    AuditRecord,
    parse_record,
    record_hash,
)
from doorkeep.device.vault.audit_format import CHECKPOINT
from doorkeep.device.vault.codec import signed_message
from doorkeep.device.vault.manifest import Manifest

_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class ClipInfo:
    """One clip as the device lists it (a device-signed reply): enough for a timeline."""

    clip_id: str
    t_start: float | None
    t_end: float | None
    size: int
    complete: bool
    event_ids: tuple[str, ...]
    events: int
    snapshot: bool
    error: str = ""

    @classmethod
    def from_json(cls, e: Any) -> ClipInfo:
        if not isinstance(e, dict) or not isinstance(e.get("clip_id"), str):
            raise ChannelError("malformed", "clip list entry without a clip id")

        def num(k: str) -> float | None:
            v = e.get(k)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        return cls(e["clip_id"], num("t_start"), num("t_end"), int(e.get("size") or 0), bool(e.get("complete")),
                   tuple(str(x) for x in e.get("event_ids") or ()), int(e.get("events") or 0),
                   bool(e.get("snapshot")), str(e.get("error", "")))


def write_range(path: Path, offset: int, data: bytes, *, expect: int) -> int:
    """Append ``data`` (which must start at ``expect``) to ``path``; returns the new length. (Not fsynced: a torn
    download is caught by :func:`check_clip_file` and fetched again.)"""
    if offset != expect:
        raise ChannelError("bad_range", f"got bytes from {offset}, expected {expect}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
    return offset + len(data)


def check_clip_file(path: Path, manifest: Manifest) -> None:
    """``path`` is exactly the clip ``manifest`` describes (header hash, every chunk hash, size), read a chunk at
    a time (``Manifest.checked_pieces``). Raises :class:`ChannelError` ``bad_clip``."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for _piece in manifest.checked_pieces(f, size):
                pass
    except (FormatError, OSError) as exc:
        raise ChannelError("bad_clip", f"clip {manifest.clip_id}: {exc}") from None


def check_audit(data: bytes, device_key: bytes, *, from_index: int, prev_head: str | None = None,
                seen: Any = None) -> list[AuditRecord]:
    """Parse and check audit lines fetched from ``from_index``: consecutive indexes, each hash recomputed, each
    linked to the one before (to genesis from 0, to ``prev_head`` when given), each signed by the device; and, when
    ``seen`` (a heartbeat's AuditPosition) falls inside, that the chain passes through the head the device signed.
    When the device's retention dropped the records asked for, the answer starts later, at a ``checkpoint`` record
    (``records[0].index > from_index``): history starts there. Raises :class:`ChannelError` ``bad_audit``."""
    vk = nacl.signing.VerifyKey(device_key)
    prev = GENESIS.hex() if from_index == 0 else prev_head
    out: list[AuditRecord] = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    start = from_index
    for k, line in enumerate(lines):
        i = start + k
        try:
            rec = parse_record(line)
        except FormatError as exc:
            raise ChannelError("bad_audit", f"record {i}: {exc}") from None
        if k == 0 and rec.index > from_index:
            if rec.kind != CHECKPOINT:
                raise ChannelError("bad_audit", f"records from {from_index} are missing without a checkpoint")
            start, i, prev = rec.index, rec.index, None  # older history was dropped by retention
        if rec.index != i:
            raise ChannelError("bad_audit", f"record {i} says it is {rec.index}")
        if prev is not None and rec.prev != prev:
            raise ChannelError("bad_audit", f"record {i} does not follow the record before it")
        if record_hash(bytes.fromhex(rec.prev), rec.body()).hex() != rec.hash:
            raise ChannelError("bad_audit", f"record {i} was altered")
        try:
            vk.verify(signed_message(SIG_DOMAIN, bytes.fromhex(rec.hash)), rec.sig)
        except nacl.exceptions.BadSignatureError:
            raise ChannelError("bad_audit", f"record {i} is not signed by this device") from None
        if seen is not None and i == seen.records - 1 and rec.hash != seen.head:
            raise ChannelError("bad_audit", f"record {i} differs from the head the device signed in its heartbeat")
        prev = rec.hash
        out.append(rec)
    return out
