"""Verifying and reading a segmented audit log, streaming (one line in memory at a time).

:func:`verify` checks every present record's index, chain, hash and signature across all segments; that each
segment after the first starts with a checkpoint that continues the chain (a missing segment is named); where the
history starts — record 0, or a checkpoint whose older segments retention dropped *and audited*
(``audit_dropped``), anything else is missing history; and, with ``expect_head``, that a head seen earlier (e.g. in a
heartbeat) is still in the chain, which detects truncation and rollback.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import nacl.exceptions
import nacl.signing

from ..errors import FormatError, VaultError
from .audit_format import (
    DROPPED,
    GENESIS,
    MAX_LINE,
    SIG_DOMAIN,
    AuditRecord,
    checkpoint_problem,
    closed_segments,
    parse_record,
    read_lines,
    record_hash,
    segment_files,
)
from .codec import signed_message

Lines = Iterable[tuple[bytes, bool]]


@dataclass(frozen=True)
class VerifyReport:
    """Result of :func:`verify`. ``first_bad`` is the index of the first bad record. ``history_start`` is the index
    of the oldest record present; ``history`` says why it is not 0: ``complete`` (it is 0), ``dropped`` (older
    segments were dropped by retention, as a signed ``audit_dropped`` record says) — otherwise verification fails
    with ``missing_history``. ``records`` counts the records verified."""

    ok: bool
    records: int
    head: str
    first_bad: int | None = None
    reason: str | None = None
    detail: str = ""
    history_start: int = 0
    history: str = "complete"
    segments: int = 0

    def check(self) -> VerifyReport:
        """Raise :class:`VaultError` unless the log verified."""
        if not self.ok:
            raise VaultError(f"audit log bad at record {self.first_bad}: {self.reason} {self.detail}".strip())
        return self


class _Chain:
    """Walks records segment by segment; :meth:`segment` returns a failure report or None."""

    def __init__(self, vk: nacl.signing.VerifyKey, expect_head: str | None) -> None:
        self.vk = vk
        self.expect_head = expect_head
        self.seen_expected = expect_head is None or expect_head == GENESIS.hex()
        self.prev = GENESIS
        self.next: int | None = None  # index expected next; None before the first record
        self.start = 0
        self.count = 0
        self.dropped_to = 0
        self.segments = 0

    def report(self, ok: bool, reason: str | None = None, detail: str = "", *,
               history: str = "complete") -> VerifyReport:
        at = None if ok else (self.next if self.next is not None else 0)
        return VerifyReport(ok, self.count, self.prev.hex(), at, reason, detail, self.start, history, self.segments)

    def segment(self, lines: Lines) -> VerifyReport | None:
        self.segments += 1
        first = True
        for line, complete in lines:
            if not complete:
                if len(line) > MAX_LINE:
                    return self.report(False, "malformed", f"line longer than {MAX_LINE} bytes")
                return self.report(False, "torn", "last line is incomplete")
            try:
                rec = parse_record(line)
            except FormatError as exc:
                return self.report(False, "malformed", str(exc))
            bad = self._boundary(rec) if first else None
            if bad is not None:
                return bad
            first = False
            if rec.index != self.next:
                return self.report(False, "index", f"record says {rec.index}")
            if rec.prev != self.prev.hex():
                return self.report(False, "chain", "prev does not match the previous record's hash")
            h = record_hash(self.prev, rec.body())
            if h.hex() != rec.hash:
                return self.report(False, "hash", "record altered")
            try:
                self.vk.verify(signed_message(SIG_DOMAIN, h), rec.sig)
            except nacl.exceptions.BadSignatureError:
                return self.report(False, "signature", "not signed by this device")
            self._accept(rec, h)
        return None

    def _boundary(self, rec: AuditRecord) -> VerifyReport | None:
        """The first record of a segment: the start of history, or a checkpoint continuing the chain."""
        if self.next is None:  # oldest record present
            self.next = rec.index
            if rec.index == 0:
                return None
            self.start = rec.index
            problem = checkpoint_problem(rec)
            if problem is not None:
                return self.report(False, "no_checkpoint", f"history starts at record {rec.index}: {problem}")
            self.prev = bytes.fromhex(rec.prev)  # anchored by the device-signed checkpoint
            return None
        if rec.index > self.next:
            return self.report(False, "missing_segment", f"records {self.next}..{rec.index - 1} are missing")
        problem = checkpoint_problem(rec)
        return None if problem is None else self.report(False, "no_checkpoint", problem)

    def _accept(self, rec: AuditRecord, h: bytes) -> None:
        if rec.kind == DROPPED and isinstance(rec.fields.get("history_starts"), int):
            self.dropped_to = max(self.dropped_to, rec.fields["history_starts"])
        self.prev, self.next = h, rec.index + 1
        self.count += 1
        self.seen_expected = self.seen_expected or rec.hash == self.expect_head

    def finish(self) -> VerifyReport:
        history = "complete" if self.start == 0 else "dropped"
        if self.start > self.dropped_to:
            return self.report(False, "missing_history", f"records before {self.start} are missing and no "
                               "audit_dropped record accounts for them")
        if not self.seen_expected:
            return self.report(False, "truncated", f"expected head {self.expect_head} is not in the log (truncated "
                               f"or rolled back{'' if self.start == 0 else ', or older than the kept history'})",
                               history=history)
        return self.report(True, history=history)


def _verify(segments: Iterable[Lines], verify_key: nacl.signing.VerifyKey | bytes,
            expect_head: str | None) -> VerifyReport:
    vk = verify_key if isinstance(verify_key, nacl.signing.VerifyKey) else nacl.signing.VerifyKey(verify_key)
    chain = _Chain(vk, expect_head)
    for lines in segments:
        bad = chain.segment(lines)
        if bad is not None:
            return bad
    return chain.finish()


def _file_lines(path: Path) -> Iterator[tuple[bytes, bool]]:
    with open(path, "rb") as f:
        yield from read_lines(f)


def verify(path: str | os.PathLike[str], verify_key: nacl.signing.VerifyKey | bytes, *,
           expect_head: str | None = None) -> VerifyReport:
    """Verify the log at ``path`` (the active segment) and its closed segments (``path.<first index>``); see the
    module docstring."""
    return _verify((_file_lines(p) for p in segment_files(path)), verify_key, expect_head)


def verify_bytes(data: bytes, verify_key: nacl.signing.VerifyKey | bytes, *,
                 expect_head: str | None = None) -> VerifyReport:
    """:func:`verify` on a log's bytes (one segment or several concatenated, e.g. a copy the hub fetched)."""
    lines = data.split(b"\n")
    last = lines.pop()
    pairs = [(x, True) for x in lines] + ([(last, False)] if last else [])
    return _verify([pairs], verify_key, expect_head)


def iter_records(path: str | os.PathLike[str], start: int = 0, *,
                 active: tuple[BinaryIO, int] | None = None) -> Iterator[AuditRecord]:
    """Records with index >= ``start`` across the segments of the log at ``path``, oldest first (parsed, not
    verified; unparseable lines are skipped). ``active``: an open handle on the active segment and the byte offset
    to stop at (``AuditLog.records`` passes a consistent snapshot)."""
    p = Path(path)
    closed = closed_segments(p)
    k = max([i for i, (first, _) in enumerate(closed) if first <= start], default=0)
    for _, q in closed[k:]:
        try:
            f = open(q, "rb")
        except FileNotFoundError:  # dropped by retention meanwhile
            continue
        with f:
            yield from _records(f, None, start)
    if active is None and p.exists():
        active = (open(p, "rb"), -1)
    if active is not None:
        with active[0] as af:
            yield from _records(af, None if active[1] < 0 else active[1], start)


def _records(f: BinaryIO, end: int | None, start: int) -> Iterator[AuditRecord]:
    for line, complete in read_lines(f, end):
        if not complete:
            return
        try:
            rec = parse_record(line)
        except FormatError:
            continue
        if rec.index >= start:
            yield rec
