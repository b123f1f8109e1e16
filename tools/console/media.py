"""Clips for the browser: fetched as ciphertext, opened with the owner key and remuxed to MP4 in memory only.

The device sends each clip file exactly as it stores it (sealed to the owner, checked against its device-signed
manifest by the owner link); the fetched files sit in a private temporary directory (0700, removed when the
console stops) — ciphertext only. Opening a clip (the owner's X25519 key unseals the clip key, secretstream
decrypts the chunks) and remuxing its H.264 into an MP4 happen in memory; the MP4 lives in a bounded cache of
``bytearray`` buffers that are zeroed and dropped when the console locks. Nothing decrypted is written to disk
unless the owner clicks *Download* (then the browser saves it).

Example::

    media = ClipMedia(fetch=link.fetch_clip, keys=session.owner_keys)
    job = media.prepare("20251129T140327Z-00000003")    # starts the fetch in the background
    job.wait(30); mp4 = media.mp4(job.clip_id)          # bytes of a playable MP4
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doorkeep.device.errors import DoorkeepError
from doorkeep.device.vault.clips import decrypt_clip, open_clip_key, parse_header
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.device.vault.manifest import Manifest
from doorkeep.tools.vault_mp4 import write_mp4

log = logging.getLogger(__name__)

#: Plaintext MP4s kept in memory at once (the oldest are zeroed and dropped first).
MAX_CACHE_BYTES = 512 << 20

FetchClip = Callable[..., Manifest]


def clip_to_mp4(data: bytes, manifest: Manifest, owner: SecretKeys) -> bytes:
    """Open one clip file with the owner's key and remux it to an MP4, all in memory.

    Raises:
        FormatError: the clip does not open with this key or is damaged.
    """
    header, packets = decrypt_clip(data, open_clip_key(parse_header(data), owner), require_final=manifest.complete)
    buf = io.BytesIO()
    write_mp4(packets, buf, codec=header.codec)
    return buf.getvalue()


@dataclass
class FetchJob:
    """One clip being fetched and opened. ``state``: ``fetching`` → ``ready`` | ``failed``."""

    clip_id: str
    state: str = "fetching"
    done: int = 0
    total: int = 0
    error: str = ""
    manifest: Manifest | None = None
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0
    _event: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def as_json(self) -> dict[str, Any]:
        return {"clip_id": self.clip_id, "state": self.state, "done": self.done, "total": self.total,
                "error": self.error, "seconds": round(self.seconds, 3)}


class ClipMedia:
    """Fetches clips in the background (two at a time) and keeps their MP4s in a bounded in-memory cache.

    Args:
        fetch: returns ``fetch(clip_id, out_path, progress=fn) -> Manifest`` (``OwnerLink.fetch_clip``) or None.
        keys: returns the unlocked owner keys (``OwnerSession.owner_keys``; raises ``Locked``).
        snapshot: ``snapshot(clip_id) -> JPEG bytes`` (``OwnerLink.fetch_snapshot``, opened with the owner key).
        max_bytes: bound of the plaintext cache.
    """

    def __init__(self, *, fetch: Callable[[], FetchClip | None], keys: Callable[[], SecretKeys],
                 snapshot: Callable[[str], bytes] | None = None, max_bytes: int = MAX_CACHE_BYTES) -> None:
        self._fetch = fetch
        self._keys = keys
        self._snapshot = snapshot
        self._thumbs: OrderedDict[str, bytes] = OrderedDict()
        self._thumb_gate = threading.Semaphore(2)
        self.max_bytes = max_bytes
        self.dir = Path(tempfile.mkdtemp(prefix="doorkeep-console-"))  # 0700: ciphertext only
        self._lock = threading.Lock()
        self._jobs: dict[str, FetchJob] = {}
        self._mp4: OrderedDict[str, bytearray] = OrderedDict()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="doorkeep-console-fetch")

    def prepare(self, clip_id: str) -> FetchJob:
        """The job for ``clip_id``, started now unless one is running or done (a failed one is retried)."""
        with self._lock:
            job = self._jobs.get(clip_id)
            if job is not None and job.state != "failed" and (job.state != "ready" or clip_id in self._mp4):
                return job
            job = self._jobs[clip_id] = FetchJob(clip_id)
        self._pool.submit(self._run, job)
        return job

    def job(self, clip_id: str) -> FetchJob | None:
        with self._lock:
            return self._jobs.get(clip_id)

    def _run(self, job: FetchJob) -> None:
        try:
            fetch = self._fetch()
            if fetch is None:
                raise DoorkeepError("not connected to the device")
            path = self.dir / f"{job.clip_id}.clip"

            def progress(done: int, total: int) -> None:
                job.done, job.total = done, total

            job.manifest = fetch(job.clip_id, path, progress=progress)
            mp4 = clip_to_mp4(path.read_bytes(), job.manifest, self._keys())
            self._store(job.clip_id, bytearray(mp4))
            job.state = "ready"
        except Exception as exc:
            log.exception("console: clip %s could not be fetched or opened", job.clip_id)
            job.state, job.error = "failed", str(exc) or type(exc).__name__
        finally:
            job.seconds = time.monotonic() - job.started
            job._event.set()

    def _store(self, clip_id: str, data: bytearray) -> None:
        with self._lock:
            self._mp4[clip_id] = data
            self._mp4.move_to_end(clip_id)
            while sum(len(b) for b in self._mp4.values()) > self.max_bytes and len(self._mp4) > 1:
                _, old = self._mp4.popitem(last=False)
                old[:] = bytes(len(old))

    def ciphertext(self, clip_id: str, *, timeout: float = 300.0) -> bytes:
        """The clip file as the device stores it (fetched and checked against its manifest first if needed).

        Raises:
            DoorkeepError: the fetch failed or took longer than ``timeout``.
        """
        job = self.prepare(clip_id)
        if not job.wait(timeout):
            raise DoorkeepError(f"clip {clip_id}: not fetched within {timeout:.0f} s")
        if job.state != "ready":
            raise DoorkeepError(f"clip {clip_id}: {job.error}")
        return (self.dir / f"{clip_id}.clip").read_bytes()

    def thumbnail(self, clip_id: str) -> bytes | None:
        """The clip's snapshot JPEG (cached until the console locks); None when the device has none."""
        with self._lock:
            if clip_id in self._thumbs:
                return self._thumbs[clip_id]
        if self._snapshot is None:
            return None
        with self._thumb_gate:  # a timeline full of thumbnails asks the device two at a time
            jpeg = self._snapshot(clip_id)
        with self._lock:
            self._thumbs[clip_id] = jpeg
            while len(self._thumbs) > 2000:
                self._thumbs.popitem(last=False)
        return jpeg

    def mp4(self, clip_id: str) -> bytes | None:
        """The clip's MP4 (a copy), or ``None`` when it is not ready."""
        with self._lock:
            buf = self._mp4.get(clip_id)
            return None if buf is None else bytes(buf)

    def wipe(self, _reason: str = "") -> None:
        """Zero and drop every decrypted MP4, drop the snapshots, forget the jobs (called when the console locks)."""
        with self._lock:
            for buf in self._mp4.values():
                buf[:] = bytes(len(buf))
            self._mp4.clear()
            self._jobs.clear()
            self._thumbs.clear()

    def close(self) -> None:
        self.wipe()
        self._pool.shutdown(wait=False, cancel_futures=True)
        shutil.rmtree(self.dir, ignore_errors=True)
