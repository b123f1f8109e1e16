"""The durable outbox: every outgoing event message is on disk before it is published, and leaves only on PUBACK.

SQLite in WAL mode with ``synchronous=FULL``: a ``put`` has returned only after the rows are durable (a power cut
right after ``put`` loses nothing). Rows are delivered in ``seq`` order; a row is deleted when the broker's PUBACK
for it arrives (:meth:`Outbox.ack`). After a crash or restart every unacknowledged row is sent again, so a hub may
see a message twice — it de-duplicates by event id (QoS1 semantics: at least once).

Bound and policy when full: at most ``max_rows`` rows (default 10,000 ≈ 4 MB: a row is ≤ 256 bytes of payload
plus its topic). When a ``put`` would exceed the bound, the OLDEST rows are dropped — after a long outage the
recent events matter most, and the vault still holds every clip. Dropped rows are counted persistently
(:attr:`Outbox.dropped`, reported in the stats heartbeat as ``outbox_dropped``) and logged.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from ..errors import InvalidArgument, PublishError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class OutMessage:
    """One message to publish."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class OutRow:
    """A queued message with its position in the outbox."""

    seq: int
    message: OutMessage


class Outbox:
    """A bounded, ordered, durable queue of outgoing messages (thread-safe; one connection, one lock).

    Args:
        path: the SQLite file (created with its directory, mode 0600).
        max_rows: bound; the oldest rows are dropped beyond it (counted in :attr:`dropped`).

    Raises:
        PublishError: the file is not a doorkeep outbox or cannot be opened.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_rows: int = 10_000) -> None:
        if max_rows < 1:
            raise InvalidArgument(f"max_rows must be >= 1, got {max_rows}")
        self.path = Path(path)
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS outbox (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
                INSERT OR IGNORE INTO meta VALUES ('schema', 1), ('dropped', 0);
                """
            )
            (schema,) = self._db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise PublishError(f"outbox {self.path}: cannot open ({exc})") from None
        if schema != SCHEMA_VERSION:
            raise PublishError(f"outbox {self.path}: schema {schema}, this version reads {SCHEMA_VERSION}")

    def put(self, messages: list[OutMessage]) -> list[int]:
        """Append ``messages`` atomically (all or none) and durably; returns their sequence numbers."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                seqs = []
                for m in messages:
                    cur.execute("INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                                (m.topic, bytes(m.payload), int(m.qos), int(m.retain)))
                    seqs.append(int(cur.lastrowid or 0))
                (n,) = cur.execute("SELECT COUNT(*) FROM outbox").fetchone()
                excess = n - self.max_rows
                if excess > 0:
                    cur.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                                (excess,))
                    cur.execute("UPDATE meta SET v = v + ? WHERE k='dropped'", (excess,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        if excess > 0:
            log.error("outbox full (%d rows): dropped the %d oldest unsent message(s)", self.max_rows, excess)
        return seqs

    def peek(self, *, after: int = 0, limit: int = 16) -> list[OutRow]:
        """Up to ``limit`` rows with ``seq > after``, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ? "
                                    "ORDER BY seq LIMIT ?", (after, limit)).fetchall()
        return [OutRow(seq, OutMessage(topic, bytes(payload), qos, bool(retain)))
                for seq, topic, payload, qos, retain in rows]

    def ack(self, seq: int) -> None:
        """Remove row ``seq`` (its PUBACK arrived). Unknown or already-removed rows are ignored."""
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(n)

    @property
    def dropped(self) -> int:
        """Rows dropped because the outbox was full, over its whole life."""
        with self._lock:
            (n,) = self._db.execute("SELECT v FROM meta WHERE k='dropped'").fetchone()
        return int(n)

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
