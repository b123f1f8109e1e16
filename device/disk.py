"""Storage errors, classified in one place, and the space reserve that keeps the audit log and outbox writable.

**Only a full disk frees space.** :func:`is_disk_full` is the one rule: ``ENOSPC``/``EDQUOT`` (and SQLite's
``SQLITE_FULL``) mean "no room", which retention may cure by shredding the oldest clips. Every other error —
``EACCES``, ``EIO``, ``EROFS``, ``EMFILE``, a bad card — is a *fault*: the part that hit it stops, says so, and
retries later; nothing is ever deleted in answer to it (docs/security.md#storage-faults).

:class:`SpaceReserve` is a preallocated file in the state directory. When the audit log or the outbox meet a full
disk they release it (:meth:`SpaceReserve.release`), so the few KiB they need are there at once; the vault keeper
frees space by retention and takes the reserve back when the disk has room again.

Example::

    try:
        write()
    except OSError as exc:
        if not is_disk_full(exc):
            raise                      # a fault: never shred for it
        reserve.release()              # room for the audit record / outbox row right now
        keeper.need_space()            # retention frees clips in the background
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

#: The errnos that mean "no room" (and nothing else does).
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """True only for a full disk or quota: ``OSError`` ENOSPC/EDQUOT, or SQLite's ``SQLITE_FULL``."""
    if isinstance(exc, OSError):
        return exc.errno in SPACE_ERRNOS
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return False


def errno_name(exc: BaseException) -> str:
    """A short stable name for a storage error: ``EIO``, ``EROFS``, ... (``SQLITE_CORRUPT`` for SQLite, else the
    exception's type)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, f"E{exc.errno}")
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorname", None):
        return str(exc.sqlite_errorname)
    return type(exc).__name__


class Backoff:
    """Retry delays that double from ``first_s`` up to ``max_s`` (the issue's bound: 60 s between tries).

    ``fail(now)`` schedules the next try, ``due(now)`` says whether it has come, ``reset()`` after a success.
    Times are monotonic seconds.
    """

    def __init__(self, *, first_s: float = 1.0, max_s: float = 60.0) -> None:
        self.first_s = first_s
        self.max_s = max_s
        self.failures = 0
        self.next_at = 0.0

    def fail(self, now: float) -> float:
        """Record a failed try at ``now``; returns the delay until the next one."""
        delay = float(min(self.max_s, self.first_s * 2.0 ** min(self.failures, 30)))
        self.failures += 1
        self.next_at = now + delay
        return delay

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def reset(self) -> None:
        self.failures = 0
        self.next_at = 0.0


def free_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem (``f_bavail``; root gets a little more)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class SpaceReserve:
    """A preallocated file held back so the audit log and the outbox can still write on a full disk.

    Args:
        path: the reserve file (in the state directory, beside the audit log and outbox).
        size: bytes to hold (0: no reserve).
        on_release: called after the reserve was given up (the vault keeper starts retention).

    :meth:`release` is safe from any thread and cheap (one unlink); :meth:`ensure` is called by the vault keeper once
    retention has made room, and only takes the space back when at least ``size`` more stays free.
    """

    def __init__(self, path: str | os.PathLike[str], size: int, *,
                 on_release: Callable[[], object] | None = None) -> None:
        self.path = Path(path)
        self.size = max(0, int(size))
        self.on_release = on_release
        self.released_at: float | None = None
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        """The reserve is in place (always True without a reserve)."""
        if not self.size:
            return True
        try:
            return self.path.stat().st_blocks * 512 >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Hold the reserve if the disk has room for it and as much again. True when it is held afterwards."""
        if not self.size:
            return True
        with self._lock:
            if self.held:
                return True
            try:
                if free_bytes(self.path.parent) < 2 * self.size:
                    return False
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.size)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.path.unlink(missing_ok=True)  # a half-allocated reserve would only hide space
                if not is_disk_full(exc):
                    log.warning("space reserve %s: cannot allocate (%s)", self.path, errno_name(exc))
                return False
            if self.released_at is not None:
                log.info("space reserve %s held again (%d bytes)", self.path, self.size)
            self.released_at = None
            return True

    def release(self) -> int:
        """Give the reserve's space back to the filesystem; returns the bytes freed (0 if it was not held)."""
        with self._lock:
            try:
                freed = self.path.stat().st_blocks * 512
                self.path.unlink()
            except FileNotFoundError:
                freed = 0
            except OSError as exc:
                log.error("space reserve %s: cannot release (%s)", self.path, errno_name(exc))
                freed = 0
            if freed:
                self.released_at = time.monotonic()
                log.warning("disk full: released the %d-byte space reserve %s for the audit log and outbox",
                            freed, self.path)
        if self.on_release is not None:
            try:
                self.on_release()
            except Exception:
                log.exception("space reserve release callback failed")
        return freed
