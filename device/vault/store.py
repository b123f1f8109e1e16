"""The clip directory: where clips and manifests live, shredding, and recovery of clips torn by a crash.

``<dir>/<clip_id>.clip`` is the encrypted clip, ``<dir>/<clip_id>.manifest`` its signed manifest, written
atomically after the FINAL chunk. A clip file without a manifest was being written when the process died: on
start :meth:`ClipStore.recover` cuts it back to its last complete chunk and signs a ``complete: false`` manifest,
or shreds it when nothing is recoverable. Both outcomes are audited.

Every file operation goes through :attr:`ClipStore.disk` (device/vault/diskio.py), the vault's one disk seam. A shred
first renames the clip out of the way (``<clip_id>.shred``), so a directory where names cannot be removed (EACCES,
EROFS, EPERM) fails the shred *before* any key byte is destroyed; a ``.shred`` file left by a crash or an I/O error
is finished by the next :meth:`ClipStore.recover`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import nacl.utils

from ..errors import FormatError, VaultError
from ..identity import DeviceIdentity
from .clips import SHRED_RANGE, check_clip_id, chunk_hash, read_frames, read_header
from .diskio import DEFAULT_IO, DiskIO
from .faults import Auditor
from .manifest import Manifest

log = logging.getLogger(__name__)
CLIP_SUFFIX = ".clip"
MANIFEST_SUFFIX = ".manifest"
SHRED_SUFFIX = ".shred"
#: The clip's thumbnail, sealed to the owner at record time (device/channel/snapshots.py).
SNAPSHOT_SUFFIX = ".snap"


@dataclass(frozen=True)
class Recovery:
    clip_id: str
    action: str  # "recovered" or "discarded"
    chunks: int
    bytes_cut: int


class ClipStore:
    """Paths and whole-clip operations on one vault directory (mode 0700).

    A directory that cannot be created now (a read-only or missing mount) is not an error here: the recorder meets
    the fault at its first write and reports it, while capture and events go on.
    """

    def __init__(self, root: str | os.PathLike[str], *, disk: DiskIO = DEFAULT_IO) -> None:
        self.root = Path(root)
        self.disk = disk
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            log.error("vault directory %s cannot be created (%s); recording waits for it", self.root, exc.strerror)

    def clip_path(self, clip_id: str) -> Path:
        return self.root / (check_clip_id(clip_id) + CLIP_SUFFIX)

    def manifest_path(self, clip_id: str) -> Path:
        return self.root / (check_clip_id(clip_id) + MANIFEST_SUFFIX)

    def snapshot_path(self, clip_id: str) -> Path:
        return self.root / (check_clip_id(clip_id) + SNAPSHOT_SUFFIX)

    def clip_ids(self) -> list[str]:
        return sorted(p.name[: -len(CLIP_SUFFIX)] for p in self.root.glob("*" + CLIP_SUFFIX))

    def exists(self, clip_id: str) -> bool:
        return self.clip_path(clip_id).is_file() and self.manifest_path(clip_id).is_file()

    def manifest(self, clip_id: str) -> Manifest:
        try:
            return Manifest.from_bytes(self.manifest_path(clip_id).read_bytes())
        except OSError as exc:
            raise VaultError(f"clip {clip_id}: no manifest ({exc.strerror})") from None

    def manifests(self) -> list[Manifest]:
        """Every finished clip's manifest, oldest first (unreadable ones are logged and skipped)."""
        out = []
        for p in self.root.glob("*" + MANIFEST_SUFFIX):
            try:
                out.append(Manifest.from_bytes(p.read_bytes()))
            except (OSError, FormatError):
                log.exception("unreadable manifest %s", p)
        return sorted(out, key=lambda m: (m.t_start, m.clip_id))

    def size_of(self, clip_id: str) -> int:
        total = 0
        for p in (self.clip_path(clip_id), self.manifest_path(clip_id), self.snapshot_path(clip_id)):
            try:
                total += p.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def total_bytes(self) -> int:
        return sum(self.size_of(c) for c in self.clip_ids())

    def write_manifest(self, manifest: Manifest) -> None:
        self.disk.write_file(self.manifest_path(manifest.clip_id), manifest.to_bytes(), mode=0o600)

    def shred(self, clip_id: str) -> int:
        """Destroy a clip: take its name away (rename to ``.shred``), remove its manifest, overwrite its sealed key
        and stream header with random bytes, fsync, unlink. Returns the bytes freed. Without those header bytes no
        key in the world decrypts it.

        Raises ``OSError`` with the clip untouched when its name cannot be removed (EACCES, EROFS, EPERM): the key
        header is destroyed only once the clip is sure to go.
        """
        freed = self.size_of(clip_id)
        doomed = self.root / (check_clip_id(clip_id) + SHRED_SUFFIX)
        try:
            self.disk.rename(self.clip_path(clip_id), doomed)
        except FileNotFoundError:
            pass
        try:
            self.disk.unlink(self.manifest_path(clip_id))
        except FileNotFoundError:
            pass
        self._finish_shred(doomed)
        snap = self.snapshot_path(clip_id)  # the thumbnail, sealed to the owner: every byte overwritten
        shred_file(snap, whole=True, disk=self.disk)
        try:
            self.disk.unlink(snap)
        except FileNotFoundError:
            pass
        return freed

    def finish_shreds(self) -> int:
        """Finish shreds interrupted by a crash or an I/O error (``<clip_id>.shred`` files). Returns how many."""
        doomed = list(self.root.glob("*" + SHRED_SUFFIX))
        for p in doomed:
            self._finish_shred(p)
        return len(doomed)

    def _finish_shred(self, doomed: Path) -> None:
        shred_file(doomed, disk=self.disk)
        try:
            self.disk.unlink(doomed)
        except FileNotFoundError:
            pass
        self.disk.fsync_dir(self.root)

    def shred_all(self) -> int:
        """Shred every clip (factory reset). Returns the number of clips destroyed."""
        ids = self.clip_ids()
        for c in ids:
            self.shred(c)
        self.finish_shreds()
        for p in self.root.glob("*" + MANIFEST_SUFFIX):  # orphans
            p.unlink()
        for p in self.root.glob("*" + SNAPSHOT_SUFFIX):
            shred_file(p, whole=True, disk=self.disk)
            p.unlink()
        return len(ids)

    # -------------------------------------------------------------------------------------------- recovery
    def torn(self, exclude: Collection[str] = ()) -> list[str]:
        """Clips without a manifest (torn by a crash or a write error), except those in ``exclude``."""
        return [c for c in self.clip_ids() if c not in exclude and not self.manifest_path(c).exists()]

    def recover(self, identity: DeviceIdentity, audit: Auditor | None = None, *,
                exclude: Collection[str] = ()) -> list[Recovery]:
        """Finish interrupted shreds, then find clips without a manifest (torn by a crash or a write error; not the
        ones in ``exclude``, still being written) and recover or discard each. Raises ``OSError`` from the disk."""
        self.finish_shreds()
        out = []
        for clip_id in self.torn(exclude):
            r = self.recover_one(clip_id, identity)
            out.append(r)
            if audit is not None:
                audit.append("clip_" + r.action, clip_id=clip_id, chunks=r.chunks, bytes_cut=r.bytes_cut,
                             reason="torn")
        return out

    def recover_one(self, clip_id: str, identity: DeviceIdentity, *, prev_clip: str | None = None,
                    part: int = 0) -> Recovery:
        """Cut a torn clip back to its last complete chunk and sign a ``complete: false`` manifest for it (or shred
        it when nothing is recoverable). Reads one chunk at a time: constant memory whatever the clip's size."""
        path = self.clip_path(clip_id)
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            try:
                header, head = read_header(f)
                if header.clip_id != clip_id or header.device_id != identity.device_id:
                    raise FormatError("header names another clip or device")
            except FormatError:
                header = None
            chunks, end = [], len(head) if header else 0
            for frame in read_frames(f) if header else ():
                chunks.append((len(frame), chunk_hash(frame)))
                end += len(frame)
        if header is None or not chunks:
            self.shred(clip_id)
            return Recovery(clip_id, "discarded", 0, size)
        if end < size:
            fd = self.disk.open(path, os.O_WRONLY)
            try:
                self.disk.truncate(fd, end)
                self.disk.fsync(fd)
            finally:
                self.disk.close(fd)
        m = Manifest(clip_id, identity.device_id, header.t_start, None, (header.event_id,), header.hash.hex(),
                     tuple(chunks), 0, 0, end, 0, header.codec, False, prev_clip=prev_clip,
                     part=part).signed(identity)
        self.write_manifest(m)
        return Recovery(clip_id, "recovered", len(chunks), size - end)


def shred_file(path: Path, *, whole: bool = False, disk: DiskIO = DEFAULT_IO) -> None:
    """Overwrite a clip's sealed key and stream header (``whole``: every byte, for a small sealed snapshot) in place
    with random bytes and fsync (no unlink)."""
    try:
        fd = disk.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return
    try:
        start, end = (0, 1 << 20) if whole else SHRED_RANGE
        size = os.fstat(fd).st_size
        if size > start:
            data = memoryview(nacl.utils.random(min(end, size) - start))
            while data:  # a short write is continued; an error raises with the rest of the header still whole
                n = disk.pwrite(fd, bytes(data), start)
                data, start = data[n:], start + n
        disk.fsync(fd)
    finally:
        disk.close(fd)


def shred_all_clips(vault_dir: str | os.PathLike[str]) -> int:
    """Factory reset: destroy every clip's sealed-key header, then unlink. Returns the clips destroyed."""
    if not Path(vault_dir).is_dir():
        return 0
    return ClipStore(vault_dir).shred_all()
