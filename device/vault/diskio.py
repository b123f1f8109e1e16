"""The vault's one seam to the disk: every byte of a clip, manifest or shred goes through a :class:`DiskIO`.

Production code uses the plain ``os`` calls below. A test (or a vendor's hardware-in-the-loop rig) subclasses it to
inject faults — EIO from a dying card, EACCES from a changed mount — at the single place writes happen, since as
root a ``chmod`` denies nothing. ``ClipStore.disk`` holds the instance every clip writer, manifest write, recovery
and shred uses.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fileio import fsync_dir

PathLike = str | os.PathLike[str]


class DiskIO:
    """Plain ``os`` file operations (the default). Override any method to inject a fault."""

    def open(self, path: PathLike, flags: int, mode: int = 0o600) -> int:
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, src: PathLike, dst: PathLike) -> None:
        os.replace(src, dst)

    def unlink(self, path: PathLike) -> None:
        os.unlink(path)

    def fsync_dir(self, path: PathLike) -> None:
        fsync_dir(path)

    # ------------------------------------------------------------------------------------------ compositions
    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        """Write all of ``data`` (a short write is continued; an error raises)."""
        view = memoryview(data)
        while view:
            view = view[self.write(fd, view):]

    def write_file(self, path: Path, data: bytes, *, mode: int = 0o600) -> None:
        """Write ``path`` atomically: a temporary file beside it, fsync, rename, fsync the directory. A failure
        removes the temporary file and leaves any old ``path`` as it was."""
        tmp = path.with_name(f".{path.name}.tmp")
        fd = self.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            try:
                self.write_all(fd, data)
                self.fsync(fd)
            finally:
                self.close(fd)
            self.rename(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self.fsync_dir(path.parent)

    def probe(self, directory: Path) -> None:
        """Create, write, fsync and remove a small file in ``directory``: raises what a clip write would meet."""
        path = directory / ".probe"
        fd = self.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.write_all(fd, b"\0" * 4096)
            self.fsync(fd)
        finally:
            self.close(fd)
        self.unlink(path)


#: The instance used unless a store is given another.
DEFAULT_IO = DiskIO()
