"""The append-only, hash-chained, device-signed audit log, in bounded segments.

One record per line (canonical JSON). Each record's ``hash`` is BLAKE2b over the previous record's hash and the
canonical record body; ``sig`` is the device's Ed25519 signature over that hash. The newest hash (the *head*) goes
into the MQTT heartbeat, so the hub can later prove the log was not truncated or rolled back
(``verify(path, key, expect_head=...)``). Format: docs/formats.md#audit-log.

The log is segmented (:mod:`.audit_format`): when the active segment would pass ``segment_bytes`` it is closed and
the next one starts with a signed ``checkpoint`` record; with ``max_bytes`` set, the oldest closed segments are
dropped (after an ``audit_dropped`` record says so) while the log is larger. Opening reads only the tail of the
active segment, so it takes constant time and memory whatever the log's size. An append that fails part-way (short
write, ENOSPC, EIO) is cut back to the last good record and the head does not move.

Example::

    log = AuditLog.open(state_dir / "audit.log", identity, max_bytes=64 << 20)
    log.append("boot", version="0.1")
    for rec in log.records(start=120):   # e.g. the owner channel fetching records from a point
        ...
    report = verify(state_dir / "audit.log", identity.verify_key, expect_head=hub_seen_head)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

from ..errors import AuditError, FormatError, InvalidArgument, VaultError
from ..fileio import fsync_dir, write_all
from ..identity import DeviceIdentity
from .audit_format import (
    CHECKPOINT,
    DROPPED,
    GENESIS,
    MAX_LINE,
    PERSON,
    SIG_DOMAIN,
    VERSION,
    AuditRecord,
    closed_path,
    closed_segments,
    first_record,
    move_log,
    parse_record,
    read_lines,
    record_hash,
    segment_files,
    tail,
)
from .audit_verify import VerifyReport, iter_records, verify, verify_bytes
from .codec import blake2b, signed_message

__all__ = ["GENESIS", "MAX_LINE", "SIG_DOMAIN", "VERSION", "AuditLog", "AuditRecord", "VerifyReport",
           "iter_records", "move_log", "parse_record", "record_hash", "segment_files", "verify", "verify_bytes"]
log = logging.getLogger(__name__)
DEFAULT_SEGMENT_BYTES = 1 << 20


class AuditLog:
    """Appends records to a segmented audit log. Thread-safe; each append is one write (looped) + ``fsync``."""

    def __init__(self, path: Path, identity: DeviceIdentity, *, segment_bytes: int, max_bytes: int | None) -> None:
        if segment_bytes < 4096:
            raise InvalidArgument("segment_bytes must be at least 4096")
        self.path = path
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self._identity = identity
        self._lock = threading.Lock()
        self._fd = -1
        self._size = 0  # bytes of good records in the active segment
        self._first = 0  # index of the active segment's first record
        self._next = 0
        self._head = GENESIS
        self._t_last = 0.0
        self._cut_pending: int | None = None  # a failed append left bytes past this offset
        self._checkpoint_pending: int | None = None  # the active segment still needs its checkpoint (prev_first)

    @classmethod
    def open(cls, path: str | os.PathLike[str], identity: DeviceIdentity, *,
             segment_bytes: int = DEFAULT_SEGMENT_BYTES, max_bytes: int | None = None) -> AuditLog:
        """Open (creating) the log, reading only the active segment's tail. A torn last record from a crash is cut
        off and an ``audit_repair`` record names its length and hash; a damaged tail (not a crash artifact) is kept
        as a closed segment and the chain continues from the last good record in a new one, also audited."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        self = cls(p, identity, segment_bytes=segment_bytes, max_bytes=max_bytes)
        self._fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._recover()
        except BaseException:
            self.close()
            raise
        return self

    def _recover(self) -> None:
        size = os.fstat(self._fd).st_size
        end, last = tail(self._fd, size)
        torn = size - end
        if (last is None and end > 0) or torn > MAX_LINE:
            self._seal_damaged(size)
            return
        cut = os.pread(self._fd, torn, end) if torn else b""
        if torn:  # a crash mid-append: part of one record
            self._truncate(end)
        if last is not None:
            first = first_record(self.path)
            self._adopt(last, end, first.index if first else last.index)
        elif (last := self._last_closed_record()) is not None:  # empty active segment after a rotation
            self._adopt(last, 0, last.index + 1)
            self._checkpoint_pending = closed_segments(self.path)[-1][0]
        if torn:
            self._write("audit_repair", {"torn_bytes": torn, "torn_hash": blake2b(cut, person=PERSON).hex()})
        elif self._checkpoint_pending is not None:
            self._checkpoint()

    def _adopt(self, last: AuditRecord, size: int, first: int) -> None:
        self._next, self._head, self._t_last = last.index + 1, bytes.fromhex(last.hash), last.t
        self._size, self._first = size, first

    def _last_closed_record(self) -> AuditRecord | None:
        closed = closed_segments(self.path)
        if not closed:
            return None
        with open(closed[-1][1], "rb") as f:
            _, last = tail(f.fileno(), os.fstat(f.fileno()).st_size)
        if last is None:
            raise VaultError(f"{closed[-1][1]}: closed audit segment has no readable last record "
                             "(run doorkeep audit verify)")
        return last

    def _seal_damaged(self, size: int) -> None:
        """The active segment's tail is not a crash artifact (damage or tampering): keep it, as a closed segment,
        and continue the chain from its last good record (or the previous segment's) in a new segment."""
        good = None
        with open(self.path, "rb") as f:
            for line, complete in read_lines(f):
                try:
                    good = parse_record(line) if complete else good
                except FormatError:
                    continue
        good = good or self._last_closed_record()
        if good is not None:
            self._adopt(good, size, good.index + 1)
        first = first_record(self.path)
        self._first = first.index if first else self._next
        while closed_path(self.path, self._first).exists():
            self._first += 1
        name = closed_path(self.path, self._first).name
        self._rotate(reason="damaged")
        self._write("audit_repair", {"damaged_segment": name, "bytes": size})
        log.error("audit log %s: damaged tail kept as %s; the chain continues from its last good record", self.path,
                  name)

    # ------------------------------------------------------------------------------------------ appending
    def append(self, kind: str, /, **fields: Any) -> AuditRecord:
        """Append, fsync and return one record. ``fields`` must be JSON values. On a write error the partial
        record is cut off, the head stays where it was and the ``OSError`` propagates."""
        if not isinstance(kind, str) or not 0 < len(kind) <= 64:
            raise AuditError("audit kind must be a non-empty string of <= 64 characters")
        with self._lock:
            if self._fd < 0:
                raise VaultError(f"{self.path}: audit log is closed")
            return self._write(kind, fields)

    def _write(self, kind: str, fields: dict[str, Any]) -> AuditRecord:
        """The one place a record is made and reaches the disk (caller holds the lock)."""
        t, prev = round(time.time(), 6), self._head.hex()
        body = {"v": VERSION, "i": self._next, "t": t, "kind": kind, "f": fields, "prev": prev}
        try:
            h = record_hash(self._head, body)
        except (TypeError, ValueError) as exc:
            raise AuditError(f"audit fields must be JSON values: {exc}") from None
        rec = AuditRecord(self._next, t, kind, fields, prev, h.hex(),
                          self._identity.sign(signed_message(SIG_DOMAIN, h)))
        line = rec.to_line()
        if len(line) > MAX_LINE:
            raise AuditError(f"audit record larger than {MAX_LINE} bytes")
        if kind != CHECKPOINT and self._checkpoint_pending is not None:
            self._checkpoint()
            return self._write(kind, fields)
        if kind != CHECKPOINT and self._size and self._size + len(line) > self.segment_bytes:
            self._rotate(reason="full")
            return self._write(kind, fields)
        if self._cut_pending is not None:
            self._truncate(self._cut_pending)
        try:
            write_all(self._fd, line)
            os.fsync(self._fd)
        except OSError:
            self._cut_back()
            raise
        self._size += len(line)
        self._next, self._head, self._t_last = rec.index + 1, h, t
        return rec

    def _cut_back(self) -> None:
        """Remove a partly written record; if even that fails, remember to do it before the next append."""
        self._cut_pending = self._size
        try:
            self._truncate(self._size)
        except OSError:
            log.exception("audit log %s: cannot cut back a failed append; retried at the next one", self.path)

    def _truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        os.fsync(self._fd)
        self._cut_pending = None

    # ------------------------------------------------------------------------------------------ segments
    def _rotate(self, *, reason: str) -> None:
        """Close the active segment (rename it), start a new one with a checkpoint, then apply retention. If the
        new segment cannot be created the old one stays active; if its checkpoint cannot be written, the next
        append writes it first."""
        prev_first = self._first
        closed = closed_path(self.path, prev_first)
        os.replace(self.path, closed)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError:
            os.replace(closed, self.path)
            raise
        os.close(self._fd)
        self._fd = fd
        fsync_dir(self.path.parent)
        self._size, self._first, self._checkpoint_pending = 0, self._next, prev_first
        self._checkpoint()
        log.info("audit log %s: new segment at record %d (%s)", self.path, self._first, reason)
        self._drop_old()

    def _checkpoint(self) -> None:
        assert self._checkpoint_pending is not None
        self._write(CHECKPOINT, {"head": self._head.hex(), "count": self._next,
                                 "prev_first": self._checkpoint_pending, "prev_t": self._t_last})
        self._checkpoint_pending = None

    def _drop_old(self) -> None:
        """Retention: drop the oldest closed segments while the log exceeds ``max_bytes``. A segment goes only when
        the segment after it starts with its checkpoint; the drop is audited before any file is unlinked."""
        if self.max_bytes is None:
            return
        closed = closed_segments(self.path)
        sizes = [p.stat().st_size for _, p in closed]
        total = sum(sizes) + self._size
        drop: list[Path] = []
        for k, (_, p) in enumerate(closed):
            nxt = closed[k + 1][1] if k + 1 < len(closed) else self.path
            rec = first_record(nxt)
            if total <= self.max_bytes or rec is None or rec.kind != CHECKPOINT:
                break
            drop.append(p)
            total -= sizes[k]
        if not drop:
            return
        keep_from = closed[len(drop)][0] if len(drop) < len(closed) else self._first
        self._write(DROPPED, {"segments": len(drop), "first": closed[0][0], "history_starts": keep_from,
                              "bytes": sum(sizes[:len(drop)])})
        for p in drop:
            p.unlink(missing_ok=True)
        fsync_dir(self.path.parent)

    # ------------------------------------------------------------------------------------------ reading
    def head(self) -> str:
        """Hex hash of the newest record (the genesis hash, all zeros, for an empty log)."""
        with self._lock:
            return self._head.hex()

    @property
    def count(self) -> int:
        """Records ever appended (the next record's index)."""
        with self._lock:
            return self._next

    def records(self, start: int = 0) -> Iterator[AuditRecord]:
        """Records with index >= ``start`` across segments, oldest first, as of this call (parsed, not verified;
        a segment dropped meanwhile is skipped). Starts at the oldest kept record if ``start`` is older."""
        with self._lock:
            if self._fd < 0:
                raise VaultError(f"{self.path}: audit log is closed")
            active = open(self.path, "rb")
            end = self._size
        return iter_records(self.path, start, active=(active, end))

    def position(self) -> tuple[int, str]:
        """(records written, head hex), read together (for the signed heartbeat)."""
        with self._lock:
            return self._next, self._head.hex()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
