"""Small file helpers for provisioning state: atomic private writes and shredding.

State files must never be half-written (a power cut during ``config apply`` must leave either the old or the new
document), and secrets must not linger after a factory reset, so both helpers fsync the file and its directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from doorkeep.device.fileio import fsync_dir, make_dirs, write_atomic

__all__ = ["fsync_dir", "make_dirs", "shred", "write_atomic"]


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
