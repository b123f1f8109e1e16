"""Small file helpers for provisioning state: atomic private writes and shredding.

State files must never be half-written (a power cut during ``config apply`` must leave either the old or the new
document), and secrets must not linger after a factory reset, so both helpers fsync the file and its directory.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or unlink inside it is durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, *, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` through a temporary file + fsync + rename; the file gets ``mode``."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
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


def shred(path: str | os.PathLike[str], *, passes: int = 1) -> bool:
    """Overwrite a regular file with random bytes (fsync after each pass), then unlink it and fsync the directory.

    Returns False when there was nothing to shred. On flash storage with wear levelling an overwrite is not a
    guarantee that the old bytes are gone from the chip; doorkeep's design does not rely on it alone (clip keys are
    sealed to the owner, the device cannot open a closed clip anyway).
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    except OSError:  # a symlink or something else: remove the name only
        p.unlink(missing_ok=True)
        return True
    try:
        size = os.fstat(fd).st_size
        for _ in range(passes):
            os.lseek(fd, 0, os.SEEK_SET)
            left = size
            while left > 0:
                chunk = os.urandom(min(left, 1 << 16))
                left -= os.write(fd, chunk)
            os.fsync(fd)
    finally:
        os.close(fd)
    p.unlink(missing_ok=True)
    fsync_dir(p.parent)
    return True
