"""Snapshots the owner can see and nobody else: a JPEG of the privacy-masked lores frame, sealed to the owner.

The device cannot decrypt a closed clip, so a clip's thumbnail is made when the clip opens, from the newest lores
frame (privacy masks are applied to every lores frame before anyone can read it, device/rings.py), sealed to the
owner's X25519 key (SealedBox) and written beside the clip as ``<clip_id>.snap``. A *live* snapshot (for drawing
masks in the console) is the same thing made on request and never stored.

Snapshot file (docs/formats.md#snapshot)::

    8 bytes magic b"DKSNAP\\x00\\x01" | u32 N | N bytes canonical JSON meta | u32 M | M bytes SealedBox(JPEG)
    | 64-byte device Ed25519 signature over everything before it (domain doorkeep-snapshot-v1)

meta = ``{"format":"doorkeep-snapshot","v":1,"device_id","clip_id" ("" for live),"t","w","h","type":"image/jpeg"}``.

Example::

    taker = SnapshotTaker(ring, identity=identity, owner=vault_owner)
    taker.start()
    taker.for_clip(clip_id, store.snapshot_path(clip_id))   # copies the frame now, encodes on its own thread
    sealed = taker.live()                                    # bytes, for the owner channel
    jpeg = open_snapshot(sealed, owner=owner_secret, device_key=key).jpeg     # owner side
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.signing
import numpy as np

from ..errors import ChannelError, FormatError
from ..fileio import write_atomic
from ..identity import DeviceIdentity
from ..vault.codec import Fields, canonical, parse_json, signed_message
from ..vault.keys import PublicKeys, SecretKeys
from ..worker import Worker

log = logging.getLogger(__name__)

MAGIC = b"DKSNAP\x00\x01"
FORMAT = "doorkeep-snapshot"
VERSION = 1
SIG_DOMAIN = "doorkeep-snapshot-v1"
MAX_SNAPSHOT = 1 << 20
_LEN = struct.Struct(">I")


def encode_jpeg(frame: np.ndarray, *, width: int, height: int, quality: int = 5) -> bytes:
    """JPEG of an I420 frame (PyAV's MJPEG encoder; ``quality`` is its qscale, 2 best .. 31 worst)."""
    import av
    from av.video.frame import VideoFrame

    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, "yuvj420p", Fraction(1, 25)
    ctx.options = {"qmin": str(quality), "qmax": str(quality)}
    vf = VideoFrame.from_ndarray(frame, format="yuv420p")
    vf.pts = 0
    packets = ctx.encode(vf) + ctx.encode(None)
    if not packets:
        raise ChannelError("encode_failed", "the JPEG encoder produced nothing")
    return bytes(packets[0])


def seal_snapshot(jpeg: bytes, *, owner: PublicKeys, identity: DeviceIdentity, clip_id: str, t: float, width: int,
                  height: int) -> bytes:
    """The signed snapshot file for ``jpeg`` sealed to ``owner``."""
    meta = canonical({"format": FORMAT, "v": VERSION, "device_id": identity.device_id, "clip_id": clip_id,
                      "t": round(t, 3), "w": width, "h": height, "type": "image/jpeg"})
    sealed = nacl.public.SealedBox(owner.box_key).encrypt(jpeg)
    head = MAGIC + _LEN.pack(len(meta)) + meta + _LEN.pack(len(sealed)) + sealed
    return head + identity.sign(signed_message(SIG_DOMAIN, head))


@dataclass(frozen=True)
class Snapshot:
    """An opened snapshot (owner side)."""

    device_id: str
    clip_id: str
    t: float
    width: int
    height: int
    jpeg: bytes = field(repr=False)


def open_snapshot(data: bytes, *, owner: SecretKeys, device_key: bytes) -> Snapshot:
    """Owner side: check the device signature, then unseal. Raises :class:`FormatError`."""
    if len(data) > MAX_SNAPSHOT or not data.startswith(MAGIC) or len(data) < len(MAGIC) + 8 + 64:
        raise FormatError("snapshot: not a doorkeep snapshot")
    head, sig = data[:-64], data[-64:]
    try:
        nacl.signing.VerifyKey(device_key).verify(signed_message(SIG_DOMAIN, head), sig)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise FormatError("snapshot: not signed by this device") from None
    pos = len(MAGIC)
    (n,) = _LEN.unpack_from(head, pos)
    meta = head[pos + 4:pos + 4 + n]
    pos += 4 + n
    if pos + 4 > len(head):
        raise FormatError("snapshot: truncated")
    (m,) = _LEN.unpack_from(head, pos)
    sealed = head[pos + 4:]
    if len(sealed) != m:
        raise FormatError("snapshot: sealed part length differs from its header")
    f = Fields(parse_json(meta, what="snapshot meta"), what="snapshot meta")
    f.header(FORMAT, VERSION)
    f.only("format", "v", "device_id", "clip_id", "t", "w", "h", "type")
    return Snapshot(f.text("device_id", max_len=64), f.text("clip_id", max_len=64, empty=True), f.number("t"),
                    f.integer("w", hi=65535), f.integer("h", hi=65535), owner.unseal(sealed))


class SnapshotTaker(Worker):
    """Makes sealed snapshots of the newest (masked) lores frame; clip thumbnails on its own thread.

    Args:
        ring: the lores :class:`~doorkeep.device.rings.FrameRing` (its frames are already masked).
        identity: signs the snapshot file.
        owner: ``() -> PublicKeys | None``, the pinned owner (read each time: pairing or rotation may change it).
    """

    def __init__(self, ring: Any, *, identity: DeviceIdentity, owner: Callable[[], PublicKeys | None]) -> None:
        super().__init__("snapshots")
        self.ring, self.identity, self.owner = ring, identity, owner
        self._free: queue.Queue[np.ndarray] = queue.Queue()
        for _ in range(2):  # preallocated: a thumbnail costs one frame copy on the event thread, nothing else
            self._free.put(ring.empty_frame())
        self._jobs: queue.Queue[tuple[str, Path, np.ndarray, float] | None] = queue.Queue()
        self._live = ring.empty_frame()
        self._live_lock = threading.Lock()
        self.thumbnails = 0
        self.skipped = 0

    def _wake(self) -> None:
        self._jobs.put(None)

    def live(self, *, timeout: float = 2.0) -> bytes:
        """A sealed snapshot of the newest lores frame. Raises ChannelError ``no_owner`` / ``no_frame``."""
        owner = self.owner()
        if owner is None:
            raise ChannelError("no_owner", "no owner is pinned; nothing can be sealed")
        with self._live_lock:
            info = self.ring.read_latest(self._live, timeout=timeout)
            if info is None:
                raise ChannelError("no_frame", "the camera has delivered no frame yet")
            jpeg = encode_jpeg(self._live, width=self.ring.width, height=self.ring.height)
        return seal_snapshot(jpeg, owner=owner, identity=self.identity, clip_id="", t=info.t_wall,
                             width=self.ring.width, height=self.ring.height)

    def for_clip(self, clip_id: str, path: Path) -> None:
        """Copy the newest frame now; encode, seal and write ``path`` on the snapshot thread. Never blocks."""
        try:
            buf = self._free.get_nowait()
        except queue.Empty:
            self.skipped += 1
            return
        info = self.ring.read_latest(buf, timeout=0)
        if info is None:
            self._free.put(buf)
            self.skipped += 1
            return
        self._jobs.put((clip_id, path, buf, info.t_wall))

    def _run(self) -> None:
        while not self.stopping:
            job = self._jobs.get()
            if job is None:
                continue
            clip_id, path, buf, t = job
            try:
                owner = self.owner()
                if owner is not None:
                    jpeg = encode_jpeg(buf, width=self.ring.width, height=self.ring.height)
                    write_atomic(path, seal_snapshot(jpeg, owner=owner, identity=self.identity, clip_id=clip_id,
                                                     t=t, width=self.ring.width, height=self.ring.height))
                    self.thumbnails += 1
            except Exception:
                log.exception("clip %s: thumbnail not written", clip_id)
            finally:
                self._free.put(buf)
                self.mark()

