"""Fault injection at the vault's one disk seam (device/vault/diskio.py) — as root, ``chmod`` denies nothing, so EIO
and EACCES come from here; EROFS comes from a real read-only bind mount and ENOSPC from a real small tmpfs
(tests/fixtures_fs.py ``small_tmpfs``, filled to the last byte by :func:`fill`)."""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from doorkeep.device.frames import Packet
from doorkeep.device.vault.diskio import DiskIO, PathLike

WRITE_OPS = frozenset({"open", "write", "pwrite", "fsync", "truncate", "rename", "unlink"})


class FaultyIO(DiskIO):
    """A :class:`DiskIO` that raises ``OSError(errno)`` on the chosen write-side operations while a fault is set.

    ``fail(errno.EIO, ops={"write", "fsync"})`` starts failing, ``fail(None)`` stops. Opening for reading is never
    failed (recovery reads clips). ``hits`` counts the refused calls."""

    def __init__(self) -> None:
        self._errno: int | None = None
        self._ops: frozenset[str] = WRITE_OPS
        self._lock = threading.Lock()
        self.hits = 0

    def fail(self, err: int | None, *, ops: set[str] | frozenset[str] = WRITE_OPS) -> None:
        with self._lock:
            self._errno, self._ops = err, frozenset(ops)

    def _check(self, op: str, path: object = None) -> None:
        with self._lock:
            err = self._errno if op in self._ops else None
            if err is not None:
                self.hits += 1
        if err is not None:
            raise OSError(err, os.strerror(err), None if path is None else str(path))

    def open(self, path: PathLike, flags: int, mode: int = 0o600) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            self._check("open", path)
        return super().open(path, flags, mode)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        self._check("write")
        return super().write(fd, data)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        self._check("pwrite")
        return super().pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        self._check("fsync")
        super().fsync(fd)

    def truncate(self, fd: int, size: int) -> None:
        self._check("truncate")
        super().truncate(fd, size)

    def rename(self, src: PathLike, dst: PathLike) -> None:
        self._check("rename", src)
        super().rename(src, dst)

    def unlink(self, path: PathLike) -> None:
        self._check("unlink", path)
        super().unlink(path)


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` a read-only bind mount of itself (real EROFS for every writer, root included); undone on
    exit even when the block fails."""
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fake_packets(n: int, *, size: int, t0: float, gop: int = 10, seed: int = 0) -> Iterator[Packet]:
    """Incompressible packets at 10 fps of footage time (the vault never decodes them): a config keyframe every
    ``gop``; capture times (monotonic) and wall times advance by 0.1 s per packet."""
    rnd = os.urandom(size + n)
    m0 = time.monotonic()
    for i in range(n):
        key = i % gop == 0
        yield Packet(rnd[i:i + size], i * 100_000, m0 + i / 10, t0 + i / 10, key, key)


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem refuses (ENOSPC): the disk is really full."""
    path = directory / "filler"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    os.write(fd, b"\xff" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return path
