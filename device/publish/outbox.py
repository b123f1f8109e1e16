"""The durable outbox: every outgoing event message is on disk before it is published, and leaves only on PUBACK.

SQLite in WAL mode with ``synchronous=FULL``: a ``put`` has returned only after the rows are durable (a power cut
right after ``put`` loses nothing). Rows are delivered in ``seq`` order; a row is deleted when the broker's PUBACK
for it arrives (:meth:`Outbox.ack`). After a crash or restart every unacknowledged row is sent again, so a hub may
see a message twice — it de-duplicates by event id (QoS1 semantics: at least once).

Bound and policy when full: at most ``max_rows`` rows (default 10,000 ≈ 4 MB: a row is ≤ 256 bytes of payload
plus its topic). When a ``put`` would exceed the bound, the OLDEST rows are dropped — after a long outage the
recent events matter most, and the vault still holds every clip. Dropped rows are counted persistently
(:attr:`Outbox.dropped`, reported in the stats heartbeat as ``outbox_dropped``) and logged.

**A full or failing disk never stops delivery.** SQLite errors are classified (:func:`outbox_error`): a full disk
first calls ``on_full`` (the vault's space reserve is released) and retries; if the database still cannot take the
rows — disk full, an I/O error, a corrupt file — they are *spilled* to memory (at most ``max_rows``, oldest dropped
and counted) and delivered from there, in order after the rows on disk; every later ``put`` spills too until the
spill is written back, which each ``put`` and :meth:`Outbox.flush` retry. A spilled row is lost only if the process
dies before the disk takes it back.

**A damaged database never keeps the device from starting or delivering** (under systemd it would be a restart
loop with no event ever delivered). When SQLite reports the file corrupt or not a database — at open (where
``PRAGMA quick_check`` also runs), or later on a read or a write — it is moved aside as
``outbox.sqlite3.corrupt-<UTC time>`` (with its ``-wal``/``-shm``; kept, never deleted), an empty outbox starts in
its place (sequence numbers continue, rows held in memory are kept), the unsent messages it still held are counted
if it can be read at all, the activity log says so, and :attr:`Outbox.resets` / ``on_reset`` carry it to the
device's audit log (``outbox_reset``). Only those two SQLite codes count as damage (:func:`outbox_error`): a locked,
unreadable, read-only or full database is never moved — at open it is an error, later it is retried.

Example::

    box = Outbox(state_dir / "outbox.sqlite3", max_rows=10_000)
    box.put([OutMessage("doorkeep/dk-…/event", payload, qos=1, retain=False)])
    for row in box.peek(after=0, limit=16):
        ...publish row..., then on PUBACK: box.ack(row.seq)
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ..activity import log as activity
from ..disk import errno_name, is_disk_full
from ..errors import InvalidArgument, OutboxCorrupt, OutboxError, OutboxFull, PublishError
from ..lograte import FailureLog

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_CORRUPT = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class OutboxReset:
    """A damaged outbox moved aside: where it went, why, and how many unsent messages it held (``None``: it could
    not be read at all)."""

    moved_to: Path
    reason: str
    lost: int | None


@dataclass(frozen=True, slots=True)
class OutRow:
    """A queued message with its position in the outbox."""

    seq: int
    message: OutMessage


def outbox_error(exc: sqlite3.Error, path: Path) -> OutboxError:
    """Classify a SQLite error: :class:`OutboxFull` (disk full: retry once there is room), :class:`OutboxCorrupt`
    (the file is damaged: #11.5 quarantines it), else :class:`OutboxError` (I/O, busy, read-only: retry later)."""
    code = getattr(exc, "sqlite_errorcode", None)
    what = f"outbox {path}: {errno_name(exc)} ({exc})"
    if is_disk_full(exc):
        return OutboxFull(what)
    if code in _CORRUPT:
        return OutboxCorrupt(what)
    return OutboxError(what)


class Outbox:
    """A bounded, ordered, durable queue of outgoing messages (thread-safe; one connection, one lock).

    Args:
        path: the SQLite file (created with its directory, mode 0600).
        max_rows: bound; the oldest rows are dropped beyond it (counted in :attr:`dropped`).
        on_full: called when the disk is full, before the one retry (releases the vault's space reserve).

    Attributes: ``resets`` (every :class:`OutboxReset` so far, the one at open included), ``on_reset``
    (``(OutboxReset) -> None``, called for a damaged database moved aside while running; the device audits it),
    ``spilled`` (rows held in memory now).

    Raises:
        PublishError: the file is not a doorkeep outbox or cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_rows: int = 10_000,
                 on_full: Callable[[], object] | None = None) -> None:
        if max_rows < 1:
            raise InvalidArgument(f"max_rows must be >= 1, got {max_rows}")
        self.path = Path(path)
        self.max_rows = max_rows
        self.on_full = on_full
        self.on_reset: Callable[[OutboxReset], object] | None = None
        self.resets: list[OutboxReset] = []
        self._lock = threading.Lock()
        self._spill: deque[OutRow] = deque()
        self._spill_dropped = 0  # counted while the disk could not take the count
        self._unacked: set[int] = set()  # delivered rows whose delete the disk refused (retried)
        self._last_seq = 0
        #: How many ``put`` calls the disk could not take (their messages went to memory).
        self.spills = 0
        self._spill_log = FailureLog(log, "outbox write", traceback=False)  # once, then counted once a minute
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._db = self._open()
        except OutboxCorrupt as exc:
            self._db = self._quarantine(str(exc))

    def _open(self) -> sqlite3.Connection:
        """Open (or create) the database and check it; raises OutboxCorrupt for damage, PublishError otherwise."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            (check,) = db.execute("PRAGMA quick_check(1)").fetchone()  # a few ms for a full outbox
            if check != "ok":
                raise OutboxCorrupt(f"outbox {self.path}: quick_check: {check}")
            db.executescript(
                """
                CREATE TABLE IF NOT EXISTS outbox (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
                INSERT OR IGNORE INTO meta VALUES ('schema', 1), ('dropped', 0);
                """
            )
            (schema,) = db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name='outbox'").fetchone()
        except sqlite3.DatabaseError as exc:
            db.close()
            err = outbox_error(exc, self.path)
            if isinstance(err, OutboxCorrupt):
                raise err from None
            raise PublishError(f"outbox {self.path}: cannot open ({exc})") from None
        except OutboxCorrupt:
            db.close()
            raise
        if schema != SCHEMA_VERSION:
            db.close()
            raise PublishError(f"outbox {self.path}: schema {schema}, this version reads {SCHEMA_VERSION}")
        self._last_seq = max(self._last_seq, int(row[0]) if row else 0)
        return db

    def _quarantine(self, reason: str) -> sqlite3.Connection:
        """Move the damaged database aside and open an empty one whose sequence continues (caller holds the lock
        or is ``__init__``); rows held in memory stay. Returns the new connection."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        moved, n = self.path.with_name(f"{self.path.name}.corrupt-{stamp}"), 1
        while moved.exists():
            n += 1
            moved = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        for suffix in ("-wal", "-shm", ""):  # the main file last: a crash in between leaves it where it was
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                os.replace(src, f"{moved}{suffix}")
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        lost = _count_rows(moved)
        reset = OutboxReset(moved, reason, lost)
        self.resets.append(reset)
        self._unacked.clear()
        db = self._open()
        if self._last_seq:  # sequence numbers continue: the sender asks for rows after the last one it sent
            db.execute("INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (self._last_seq,))
        activity.error("%s: damaged, moved aside to %s and started an empty one; %s unsent message(s) lost",
                       reason, moved.name, "an unknown number of" if lost is None else lost)
        return db

    def _recover_locked(self, err: OutboxError) -> OutboxReset | None:
        """After an error while running: quarantine a damaged database (never anything else)."""
        if not isinstance(err, OutboxCorrupt):
            return None
        try:
            self._db.close()
        except sqlite3.Error:
            pass
        try:
            self._db = self._quarantine(str(err))
        except PublishError:  # no new database either (e.g. the directory refuses it): rows wait in memory
            log.exception("outbox %s: cannot start a new database after moving the damaged one aside", self.path)
            return None
        return self.resets[-1]

    def _said(self, reset: OutboxReset | None) -> None:
        if reset is not None and self.on_reset is not None:
            try:
                self.on_reset(reset)
            except Exception:  # the audit of it failing must not stop delivery
                log.exception("outbox on_reset callback failed")

    # ------------------------------------------------------------------------------------------------ writing
    def put(self, messages: list[OutMessage]) -> list[int]:
        """Append ``messages`` atomically (all or none) and durably — or, when the disk cannot take them, to the
        in-memory spill (see the module docstring). Returns their sequence numbers. Never raises for storage."""
        reset = None
        try:
            with self._lock:
                if self._spill and not self._flush_locked():
                    return self._spill_locked(messages)
                for attempt in (1, 2):
                    try:
                        seqs = self._insert_locked(messages)
                        self._spill_log.ok()
                        return seqs
                    except sqlite3.Error as exc:
                        err = outbox_error(exc, self.path)
                        if attempt == 1 and isinstance(err, OutboxFull) and self.on_full is not None:
                            self.on_full()
                            continue
                        if attempt == 1 and (reset := self._recover_locked(err)) is not None:
                            continue
                        self._spill_log.failed(f"({err}): {len(messages)} message(s) held in memory until the "
                                               "disk takes them")
                return self._spill_locked(messages)
        finally:
            self._said(reset)

    def _insert_locked(self, messages: list[OutMessage]) -> list[int]:
        cur = self._db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            seqs = []
            for m in messages:
                cur.execute("INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                            (m.topic, bytes(m.payload), int(m.qos), int(m.retain)))
                seqs.append(int(cur.lastrowid or 0))
            excess = self._trim(cur)
            cur.execute("COMMIT")
        except BaseException:
            _rollback(cur)
            raise
        if seqs:
            self._last_seq = max(self._last_seq, seqs[-1])
        if excess > 0:
            log.error("outbox full (%d rows): dropped the %d oldest unsent message(s)", self.max_rows, excess)
        return seqs

    def _trim(self, cur: sqlite3.Cursor) -> int:
        (n,) = cur.execute("SELECT COUNT(*) FROM outbox").fetchone()
        excess = int(n) - self.max_rows
        if excess > 0:
            cur.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (excess,))
        if excess > 0 or self._spill_dropped:
            cur.execute("UPDATE meta SET v = v + ? WHERE k='dropped'", (max(excess, 0) + self._spill_dropped,))
            self._spill_dropped = 0
        return excess

    def _spill_locked(self, messages: list[OutMessage]) -> list[int]:
        self.spills += 1
        seqs = []
        for m in messages:
            self._last_seq += 1
            self._spill.append(OutRow(self._last_seq, m))
            seqs.append(self._last_seq)
        while len(self._spill) > self.max_rows:
            self._spill.popleft()
            self._spill_dropped += 1
        return seqs

    def _flush_locked(self) -> bool:
        """Write the spill back to disk in one transaction (their seqs follow every row on disk)."""
        if not self._spill:
            return True
        cur = self._db.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            try:
                for r in self._spill:
                    m = r.message
                    cur.execute("INSERT INTO outbox (seq, topic, payload, qos, retain) VALUES (?, ?, ?, ?, ?)",
                                (r.seq, m.topic, bytes(m.payload), int(m.qos), int(m.retain)))
                self._trim(cur)
                cur.execute("COMMIT")
            except BaseException:
                _rollback(cur)
                raise
        except sqlite3.Error as exc:
            log.debug("outbox spill not written back yet: %s", outbox_error(exc, self.path))
            return False
        log.warning("outbox: %d message(s) held in memory are on disk again", len(self._spill))
        self._spill.clear()
        return True

    def flush(self) -> bool:
        """Try to write spilled rows back to disk (the sender calls this). True when nothing is left in memory."""
        with self._lock:
            return self._flush_locked()

    # ------------------------------------------------------------------------------------------------ reading
    def peek(self, *, after: int = 0, limit: int = 16) -> list[OutRow]:
        """Up to ``limit`` rows with ``seq > after``, oldest first (rows on disk, then spilled ones).

        Raises:
            OutboxError: the database cannot be read (:class:`OutboxCorrupt` when it is damaged).
        """
        with self._lock:
            try:
                rows = self._db.execute("SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? "
                                        "ORDER BY seq LIMIT ?", (after, limit + len(self._unacked))).fetchall()
            except sqlite3.Error as exc:
                err = outbox_error(exc, self.path)
            else:
                out = [OutRow(seq, OutMessage(topic, bytes(payload), qos, bool(retain)))
                       for seq, topic, payload, qos, retain in rows if seq not in self._unacked][:limit]
                out += [r for r in self._spill if r.seq > after][: limit - len(out)]
                return out
        if isinstance(err, OutboxCorrupt):  # moved aside: the rows held in memory go on, the sender asks again
            with self._lock:
                reset = self._recover_locked(err)
            self._said(reset)
        raise err

    def ack(self, seq: int) -> None:
        """Remove row ``seq`` (its PUBACK arrived). Unknown or already-removed rows are ignored. A delete the disk
        refuses is remembered (the row is not sent again) and retried with the next ack."""
        with self._lock:
            if self._spill and self._spill[0].seq <= seq:
                kept = [r for r in self._spill if r.seq != seq]
                if len(kept) != len(self._spill):
                    self._spill = deque(kept)
                    return
            self._unacked.add(seq)
            try:
                for s in sorted(self._unacked):
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (s,))
                    self._unacked.discard(s)
            except sqlite3.Error as exc:
                log.debug("outbox: delete of acknowledged rows deferred: %s", outbox_error(exc, self.path))

    def __len__(self) -> int:
        with self._lock:
            try:
                (n,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
            except sqlite3.Error:
                n = 0  # unreadable: the sender reports it; the heartbeat shows what memory holds
            return max(0, int(n) - len(self._unacked)) + len(self._spill)

    @property
    def spilled(self) -> int:
        """Rows held in memory because the disk could not take them."""
        return len(self._spill)

    @property
    def dropped(self) -> int:
        """Rows dropped because the outbox was full, over its whole life."""
        with self._lock:
            try:
                (n,) = self._db.execute("SELECT v FROM meta WHERE k='dropped'").fetchone()
            except sqlite3.Error:
                n = 0
            return int(n) + self._spill_dropped

    def close(self) -> None:
        """Close the database (idempotent). Rows still spilled in memory are lost (logged)."""
        with self._lock:
            if self._spill and not self._flush_locked():
                log.error("outbox closed with %d message(s) the disk never took back: they are lost",
                          len(self._spill))
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rollback(cur: sqlite3.Cursor) -> None:
    try:
        cur.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # the transaction is gone already (SQLite rolls back on some I/O errors by itself)


def _count_rows(path: Path) -> int | None:
    """Rows left in a damaged outbox file, or None when it cannot be read at all."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (n,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return None
    return int(n)
