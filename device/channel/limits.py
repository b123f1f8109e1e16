"""Flood limits for everything the device receives: freshness + replay window, token buckets, refusal tallies.

One rule in one place, shared by footage requests and owner commands:

- :class:`FreshnessWindow`: a message's ``issued_at`` must lie within ``±skew_s`` of the device clock, and its id
  (a request id, a command nonce) must not have been seen while it is fresh. Ids are persisted (append + fsync)
  so a restart does not reopen the window; an id is forgotten once its ``issued_at`` is older than ``skew_s``,
  because from then on the freshness check alone refuses it. The set is therefore bounded by what the token
  buckets let through in ``2 × skew_s``.
- :class:`TokenBucket` / :class:`KeyedBuckets`: sustained rate plus burst, overall and per key. Only messages that
  passed every cheaper check take tokens, so replays and garbage cannot drain a requester's bucket.
- :class:`AuditTally`: refused messages are counted by reason and written as **one** audit record per interval
  (``count``, ``reasons``, first/last time), never one record per message.

Example::

    window = FreshnessWindow(state_dir / "requests.seen", skew_s=600)
    reason = window.check(request_id, issued_at)      # None, "stale", "future" or "replayed"
    if reason is None and bucket.take():
        window.add(request_id, issued_at)
    else:
        tally.note(reason or "rate")
    tally.tick()                                       # writes the counted record when the interval is over
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..activity import log as activity
from ..errors import InvalidArgument

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Auditor(Protocol):
    """The part of the audit log the limits use (``AuditLog.append``)."""

    def append(self, kind: str, /, **fields: Any) -> Any: ...


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second (monotonic clock). Starts full."""

    def __init__(self, *, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        if rate < 0 or burst < 1:
            raise InvalidArgument("a token bucket needs rate >= 0 and burst >= 1")
        self.rate, self.burst, self._clock = rate, float(burst), clock
        self.tokens = float(burst)
        self._t = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._t) * self.rate)
        self._t = now

    def available(self, n: float = 1.0) -> bool:
        self._refill()
        return self.tokens >= n

    def take(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if there are that many; False (and nothing taken) otherwise."""
        self._refill()
        if self.tokens < n:
            return False
        self.tokens -= n
        return True

    @property
    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.burst


class KeyedBuckets:
    """One :class:`TokenBucket` per key (a requester's signing key), at most ``max_keys`` remembered.

    A key not seen before gets a full bucket, so its first fresh message always passes this limit. When the map is
    full the least recently used key is forgotten (a forgotten key comes back with a full bucket; the overall bucket
    still bounds the total).
    """

    def __init__(self, *, rate: float, burst: float, max_keys: int = 4096, clock: Clock = time.monotonic) -> None:
        self.rate, self.burst, self.max_keys, self._clock = rate, burst, max_keys, clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def bucket(self, key: str) -> TokenBucket:
        b = self._buckets.get(key)
        if b is None:
            b = TokenBucket(rate=self.rate, burst=self.burst, clock=self._clock)
            self._buckets[key] = b
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return b

    def __len__(self) -> int:
        return len(self._buckets)


class FreshnessWindow:
    """Ids seen while fresh (``|issued_at - now| <= skew_s``), persisted one per line as ``<issued_at> <id>``.

    Args:
        path: the file (``None``: memory only, for tests and tools).
        skew_s: the freshness bound, both ways.
        clock: wall clock (``issued_at`` is wall time from another machine).
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, skew_s: float, clock: Clock = time.time) -> None:
        self.path = Path(path) if path is not None else None
        self.skew_s = float(skew_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._ids: dict[str, float] = {}
        self._lines = 0
        self._load()

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            text = self.path.read_text("ascii", errors="replace")
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot read %s (%s); replay protection starts empty", self.path, exc.strerror)
            return
        now = self._clock()
        for line in text.splitlines():
            t, _, ident = line.partition(" ")
            try:
                issued = float(t)
            except ValueError:
                continue  # a torn last line
            if ident and issued + self.skew_s >= now:
                self._ids[ident] = issued
        self._compact()

    def check(self, ident: str, issued_at: float) -> str | None:
        """Why a message with this id and time must be refused: ``stale``, ``future``, ``replayed``; or None."""
        now = self._clock()
        if issued_at < now - self.skew_s:
            return "stale"
        if issued_at > now + self.skew_s:
            return "future"
        with self._lock:
            return "replayed" if ident in self._ids else None

    def add(self, ident: str, issued_at: float) -> None:
        """Remember ``ident`` (persisted before returning). A write error is logged; the id is still remembered."""
        with self._lock:
            self._expire()
            self._ids[ident] = issued_at
            if self.path is None:
                return
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                try:
                    os.write(fd, f"{int(issued_at)} {ident}\n".encode("ascii"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self._lines += 1
            except OSError as exc:
                log.warning("cannot persist a seen id to %s (%s); it is remembered until restart", self.path,
                            exc.strerror)
            if self._lines > 2 * len(self._ids) + 256:
                self._compact_locked()

    def _expire(self) -> None:
        cutoff = self._clock() - self.skew_s
        for k in [k for k, t in self._ids.items() if t < cutoff]:
            del self._ids[k]

    def _compact(self) -> None:
        with self._lock:
            self._compact_locked()

    def _compact_locked(self) -> None:
        """Rewrite the file with only the live ids (atomically)."""
        from ..fileio import write_atomic

        self._expire()
        if self.path is None:
            return
        data = "".join(f"{int(t)} {k}\n" for k, t in self._ids.items()).encode("ascii")
        try:
            write_atomic(self.path, data, mode=0o600)
            self._lines = len(self._ids)
        except OSError as exc:
            log.warning("cannot compact %s: %s", self.path, exc.strerror)

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._ids)


class AuditTally:
    """Counts messages (refused ones, by reason) and :meth:`tick` writes one ``kind`` audit record per
    ``interval_s``.

    The record: ``{"count": N, "reasons": {reason: n, …}, "first": t, "last": t, "interval_s": s}`` — reasons are
    this code's own vocabulary, never text from the message, so the record's size is bounded whatever arrives.
    """

    def __init__(self, audit: Auditor, kind: str, *, interval_s: float = 60.0, what: str = "refused messages",
                 level: int = logging.WARNING, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self.audit, self.kind, self.interval_s, self.what, self.level = audit, kind, interval_s, what, level
        self._clock, self._wall = clock, wall
        self._reasons: Counter[str] = Counter()
        self._since: float | None = None
        self._first = self._last = 0.0
        self.total = 0
        self.records = 0
        self._lock = threading.Lock()

    def note(self, reason: str) -> None:
        with self._lock:
            if self._since is None:
                self._since, self._first = self._clock(), self._wall()
            self._last = self._wall()
            self._reasons[reason] += 1
            self.total += 1

    def tick(self, *, force: bool = False) -> None:
        """Write the counted record if there is one and its interval is over (or ``force``)."""
        with self._lock:
            if self._since is None or (not force and self._clock() - self._since < self.interval_s):
                return
            reasons, self._reasons = dict(sorted(self._reasons.items())), Counter()
            first, last, self._since = self._first, self._last, None
        count = sum(reasons.values())
        activity.log(self.level, "%d %s in the last %.0f s (%s)", count, self.what, last - first,
                ", ".join(f"{r} {n}" for r, n in reasons.items()))
        try:
            self.audit.append(self.kind, count=count, reasons=reasons, first=round(first, 3), last=round(last, 3),
                              interval_s=self.interval_s)
            self.records += 1
        except Exception:  # the audit log's own trouble (disk full) must not stop the inbox
            log.exception("could not audit %d refused %s", count, self.what)

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(self._reasons.values())
