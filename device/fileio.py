"""Durable file writes: state, keys, manifests and models are never half-written.

A power cut during a write must leave either the old or the new file, so every write goes through a temporary file,
fsync, rename, and an fsync of the directory that makes the rename itself durable.
"""

from __future__ import annotations

import os
from pathlib import Path


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


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` through a temporary file + fsync + rename; the file gets ``mode`` (private by
    default). Missing parent directories are created, 0700 for a private file. Returns the path."""
    target = Path(path)
    make_dirs(target.parent, private=not mode & 0o077)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    except OSError as exc:  # name the file the caller asked for, not our temporary one
        raise type(exc)(exc.errno, exc.strerror, str(target)) from None
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, target)
    fsync_dir(target.parent)
    return target
