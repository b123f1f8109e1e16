"""One process at a time in a state directory.

The service and the device-side commands (``pair --device``, ``config apply``, ``factory-reset``) share the state
directory, and in particular the audit log, whose hash chain forks if two processes append at once. Whoever runs
holds an exclusive ``flock`` on ``<state_dir>/.lock``; a second one is refused with a message saying what to do.
The lock dies with its process, so a crash never leaves the device locked.

Example (``doorkeep run``)::

    with StateLock(config.state_dir, holder="doorkeep run"):
        ...
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from .errors import ProvisionError, ProvisionRefused

LOCK_FILE = ".lock"


class StateBusy(ProvisionRefused):
    """Another doorkeep process (normally the service) is using the state directory."""

    reason = "state-busy"


class StateDirUnusable(ProvisionError):
    """The state directory cannot be created or written (read-only file system, wrong owner, not a directory)."""


class StateLock:
    """Exclusive, non-blocking lock on a state directory (``with`` or :meth:`acquire` / :meth:`release`)."""

    def __init__(self, state_dir: str | os.PathLike[str], *, holder: str) -> None:
        self.path = Path(state_dir) / LOCK_FILE
        self.holder = holder
        self._fd = -1

    def acquire(self) -> Self:
        """Take the lock or raise :class:`StateBusy` naming the holder."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:  # the first write into the state directory: say what it is for
            raise StateDirUnusable(
                f"cannot use the state directory {self.path.parent}: {exc.strerror or exc} "
                f"({exc.filename or self.path}); doorkeep keeps its keys, outbox, clips and audit log there, so it "
                "must be a writable directory of this user ([device] state_dir, --state-dir)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StateBusy(f"{self.path.parent} is in use by {other}; stop it first "
                            "(sudo systemctl stop doorkeep)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self.holder} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing drops the flock
            self._fd = -1

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def lock_holder(state_dir: str | os.PathLike[str]) -> int | None:
    """PID of the process holding the state lock (0 if it is outside our pid namespace), ``None`` when free.

    Read from ``/proc/locks``, so asking never takes the lock (a service starting at that moment is never refused).
    Without ``/proc/locks`` (not Linux) a shared lock is probed for an instant instead.
    """
    path = Path(state_dir) / LOCK_FILE
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return _probe(path)
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 812 fe:00:2146692 0 EOF" (waiters are "1: -> FLOCK ...": not holders)
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == key:
            return int(parts[4]) if parts[4].isdigit() else 0
    return None


def _probe(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0
    finally:
        os.close(fd)  # also drops the shared lock
    return None
