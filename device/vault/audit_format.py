"""The audit log's on-disk format: records, segment files, and bounded line reading (docs/formats.md#audit-log).

A record is one canonical JSON line; ``hash`` chains it to the previous record and ``sig`` is the device's
signature over that hash. The log is a sequence of segment files: the active one at ``<path>`` (``audit.log``) and
closed ones at ``<path>.<first index, 12 digits>``. Every segment but the very first starts with a ``checkpoint``
record (the next record of the one chain) carrying the previous segment's head, first index, record count and last
time, so a verifier can start from any segment's checkpoint once older segments were dropped by retention.

Nothing here reads a whole file: lines are read one at a time and bounded by :data:`MAX_LINE`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import FormatError, VaultError
from .codec import Fields, b64e, blake2b, canonical, parse_json

VERSION = 1
GENESIS = bytes(32)
PERSON = b"dk-audit"
SIG_DOMAIN = "doorkeep-audit-v1"
MAX_LINE = 64 * 1024
CHECKPOINT = "checkpoint"
DROPPED = "audit_dropped"
CHECKPOINT_FIELDS = ("head", "count", "prev_first", "prev_t")
_KEYS = ("v", "i", "t", "kind", "f", "prev", "hash", "sig")
_SEGMENT = re.compile(r"\.(\d{12})$")


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


def checkpoint_problem(rec: AuditRecord) -> str | None:
    """Why ``rec`` is not a well-formed checkpoint (its fields must restate its own chain position), or None."""
    f = rec.fields
    if rec.kind != CHECKPOINT:
        return "segment does not start with a checkpoint"
    if set(f) != set(CHECKPOINT_FIELDS) or f["head"] != rec.prev or f["count"] != rec.index:
        return "checkpoint fields differ from its place in the chain"
    pf = f["prev_first"]
    if not isinstance(pf, int) or isinstance(pf, bool) or not 0 <= pf <= rec.index:
        return "checkpoint names an impossible previous segment"
    return None


# ------------------------------------------------------------------------------------------------ segment files

def closed_path(path: Path, first: int) -> Path:
    """Where a closed segment whose first record has index ``first`` lives."""
    return path.with_name(f"{path.name}.{first:012d}")


def closed_segments(path: Path) -> list[tuple[int, Path]]:
    """The closed segments of the log at ``path`` as (first index, path), oldest first."""
    out = []
    for p in path.parent.glob(path.name + ".*"):
        m = _SEGMENT.search(p.name)
        if m and p.name == closed_path(path, int(m.group(1))).name:
            out.append((int(m.group(1)), p))
    return sorted(out)


def segment_files(path: str | os.PathLike[str]) -> list[Path]:
    """Every segment file of the log at ``path``, oldest first (the active one last, if it exists)."""
    p = Path(path)
    files = [q for _, q in closed_segments(p)] + ([p] if p.exists() else [])
    if not files:
        raise VaultError(f"{p}: no audit log there (nor any of its segments)")
    return files


def move_log(path: Path, to: Path) -> list[Path]:
    """Rename a whole log — the active segment and every closed one — so it stays verifiable at ``to``."""
    moved = []
    for first, p in closed_segments(path):
        os.replace(p, closed_path(to, first))
        moved.append(closed_path(to, first))
    if path.exists():
        os.replace(path, to)
        moved.append(to)
    return moved


def read_lines(f: BinaryIO, end: int | None = None) -> Iterator[tuple[bytes, bool]]:
    """(line without its newline, complete) from ``f``'s position up to byte ``end``, one in memory at a time. A
    last line without a newline (torn) comes with ``complete`` false; so does an over-long line, after which the
    reading stops (nothing after it can be trusted to be framed)."""
    left = -1 if end is None else end - f.tell()
    while left != 0:
        line = f.readline(MAX_LINE + 1 if left < 0 else min(MAX_LINE + 1, left))
        if not line:
            return
        left = left - len(line) if left > 0 else left
        if not line.endswith(b"\n"):
            yield line, False
            return
        yield line[:-1], True


def first_record(path: Path) -> AuditRecord | None:
    """The first record of a segment file, or None if it has none that parses."""
    try:
        with open(path, "rb") as f:
            for line, complete in read_lines(f):
                return parse_record(line) if complete else None
    except (OSError, FormatError):
        return None
    return None


def tail(fd: int, size: int) -> tuple[int, AuditRecord | None]:
    """Scan only the end of a segment: (end of its last complete line, that line's record or None when it does not
    parse or is longer than :data:`MAX_LINE`). An empty segment gives (0, None)."""
    start = max(0, size - 2 * (MAX_LINE + 1))
    block = os.pread(fd, size - start, start)
    nl = block.rfind(b"\n")
    if nl < 0:
        return (0, None) if start == 0 else (size, None)
    end = start + nl + 1
    prev = block.rfind(b"\n", 0, nl)
    if prev < 0 and start > 0:
        return end, None
    try:
        return end, parse_record(block[prev + 1:nl])
    except FormatError:
        return end, None
