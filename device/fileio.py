"""Durable file writes: state, keys, manifests and models are never half-written.

A power cut during a write must leave either the old or the new file, so every write goes through a temporary file,
fsync, rename, and an fsync of the directory that makes the rename itself durable. A write that fails (a full
disk, an unwritable directory) removes its temporary file and leaves the old file, if any, untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InvalidArgument


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename or unlink inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str | os.PathLike[str], *, private: bool = True) -> Path:
    """Create directory ``path`` and its missing parents; those created are 0700 when ``private`` (the default:
    a folder doorkeep makes for keys or devices.json must not be listable by others). Returns the path."""
    target = Path(path)
    missing = []
    p = target
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700 if private else 0o777)
        except FileExistsError:
            pass
    return target


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd``: a short write (a disk filling up, a signal) is continued, an error raises."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class AtomicOutput:
    """A file that appears under its final name complete, or not at all.

    The data goes to a hidden temporary file beside the target (same filesystem, so the final rename is atomic),
    created with ``mode`` from the start. Write through :meth:`write` / :attr:`fd`, or let another writer (PyAV)
    open :attr:`tmp` by name; then :meth:`commit` (fsync, rename, fsync the directory) or :meth:`discard`. As a
    context manager it commits when the block succeeds and discards when it raises, so a failure (a full disk)
    never leaves a truncated file under the final name nor a temporary one behind.

    The constructor checks the target first — an existing directory, a missing parent, a read-only or full
    directory — so a caller can refuse before it does anything expensive or irreversible (spend a grant).

    Raises:
        InvalidArgument: the target is a directory, or its directory does not exist.
        OSError: what creating the temporary file raised (EACCES, EROFS, ENOSPC, ...), naming the target.
    """

    def __init__(self, path: str | os.PathLike[str], *, mode: int = 0o600) -> None:
        self.path = Path(path)
        parent = self.path.parent
        if self.path.is_dir():
            raise InvalidArgument(f"{self.path} is a directory (name the file to write)")
        if not parent.is_dir():
            raise InvalidArgument(f"cannot write {self.path}: {parent} is not a directory" if parent.exists() else
                                  f"cannot write {self.path}: no directory {parent}")
        try:
            self.fd, name = tempfile.mkstemp(dir=parent, prefix=f".{self.path.name}.", suffix=".tmp")
        except OSError as exc:  # name the file the caller asked for, not our temporary one
            raise type(exc)(exc.errno, exc.strerror, str(self.path)) from None
        self.tmp = Path(name)
        try:
            os.fchmod(self.fd, mode)
        except PermissionError:
            pass  # FAT (an SD card's boot partition) holds no modes: its mount options decide, fchmod says EPERM
        except BaseException:
            self.discard()
            raise

    def write(self, data: bytes | memoryview) -> None:
        """Append ``data`` (short writes are finished; ENOSPC and other errors raise)."""
        write_all(self.fd, data)

    def sync(self) -> None:
        """fsync the temporary file (the data is durable before it is renamed, or before anything else happens)."""
        os.fsync(self.fd)

    def commit(self) -> Path:
        """fsync, rename over the target, fsync the directory. On failure the temporary file is removed."""
        try:
            self.sync()
            os.close(self.fd)
            self.fd = -1
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        fsync_dir(self.path.parent)
        return self.path

    def discard(self) -> None:
        """Remove the temporary file (idempotent)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            if self.fd >= 0:
                self.commit()
        else:
            self.discard()


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` through a temporary file + fsync + rename (:class:`AtomicOutput`); the file gets
    ``mode`` (private by default). Missing parent directories are created, 0700 for a private file. Returns the
    path."""
    target = Path(path)
    make_dirs(target.parent, private=not mode & 0o077)
    with AtomicOutput(target, mode=mode) as out:
        out.write(data)
    return target
