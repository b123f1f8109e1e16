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
