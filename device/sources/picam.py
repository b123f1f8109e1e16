"""The Raspberry Pi camera through picamera2 (imported lazily: it only exists on a Pi).

* main stream (YUV420, e.g. 1920x1080) → picamera2's ``H264Encoder`` (the hardware encoder on Pi 4; libav on
  Pi 5) with ``repeat=True`` (SPS/PPS on every keyframe) and ``iperiod=gop`` → an ``Output``
  (:func:`_packet_output`) turns each encoded frame into a :class:`Packet` for the packet sinks.
* ``main_filters`` run in picamera2's ``pre_callback`` on the main buffer itself (``MappedArray``), before the
  encoder sees it: what a privacy mask covers never reaches a clip.
* the lores stream (YUV420, e.g. 320x240) is copied from the request's mapped buffer straight into the next
  FrameRing slot — no ``capture_array`` copies in the hot path.
* request metadata (``Lux``, ``ExposureTime``, ...) goes to ``on_metadata``.
* failure is reported like every other source (``error`` set, then ``finished``): an exception in the request
  callback, a failed ``start_recording``, or a camera that delivers no frame for ``frame_timeout_s`` (a cable pulled,
  libcamera wedged) — seen by a small watch :class:`~doorkeep.device.worker.Worker` (``doorkeep-camera``).

How this is checked on a Pi: docs/sources.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import CaptureError
from ..frames import Packet, chroma_planes, i420_shape
from ..worker import Worker
from .base import FrameSource, MainFilter, MetadataHook
from .h264 import has_config

log = logging.getLogger(__name__)


def _import_picamera2() -> Any:
    try:
        import picamera2
        import picamera2.encoders
        import picamera2.outputs
    except ImportError as exc:  # off-Pi, or python3-picamera2 not visible in the venv
        raise CaptureError(
            f"picamera2 is not available ({exc}). On Raspberry Pi OS: sudo apt install -y python3-picamera2 and "
            "make the venv with --system-site-packages; elsewhere use capture.source = 'file', 'v4l2' or "
            "'synthetic'") from exc
    return picamera2


class PicameraSource(FrameSource):
    """The Pi camera: H.264 main stream to the packet sinks, YUV420 lores into the ring.

    Args:
        width, height: main stream size (encoded). lores_width, lores_height: analysis size.
        fps: frame rate. gop: keyframe interval. bitrate: H.264 bitrate (bits/s).
        camera: camera index. main_filters, on_metadata: see :class:`FrameSource`.
        frame_timeout_s: the camera counts as failed when no frame arrives for this long while recording.

    Raises:
        CaptureError: picamera2 is missing or the camera cannot be opened (from the constructor).
    """

    def __init__(self, *, width: int = 1920, height: int = 1080, lores_width: int = 320, lores_height: int = 240,
                 fps: float = 30.0, gop: int = 30, bitrate: int = 4_000_000, camera: int = 0,
                 main_filters: Sequence[MainFilter] = (), on_metadata: MetadataHook | None = None,
                 frame_timeout_s: float = 5.0) -> None:
        super().__init__(main_filters=main_filters, on_metadata=on_metadata)
        i420_shape(width, height), i420_shape(lores_width, lores_height)
        self.main_size = (width, height)
        self.lores_size = (lores_width, lores_height)
        self.fps = fps
        self.gop = gop
        self.bitrate = bitrate
        self._pc2 = _import_picamera2()
        try:
            self._cam = self._pc2.Picamera2(camera)
        except Exception as exc:
            raise CaptureError(f"cannot open camera {camera}: {exc}") from exc
        try:
            config = self._cam.create_video_configuration(
                main={"size": (width, height), "format": "YUV420"},
                lores={"size": (lores_width, lores_height), "format": "YUV420"},
                controls={"FrameRate": fps}, buffer_count=6)
            self._cam.configure(config)
        except Exception as exc:
            self._cam.close()  # a failed __init__ releases the camera
            raise CaptureError(f"camera refused {width}x{height}+{lores_width}x{lores_height}@{fps}: {exc}") from exc
        self._last_ts: int | None = None
        self.watch = _CameraWatch(self, timeout_s=frame_timeout_s)

    @property
    def workers(self) -> list[Worker]:
        return [self.watch]

    def _start(self) -> None:
        enc = self._pc2.encoders.H264Encoder(bitrate=self.bitrate, repeat=True, iperiod=self.gop)
        self._cam.pre_callback = self._on_request
        try:
            self._cam.start_recording(enc, _packet_output(self, self._pc2.outputs.Output))
        except Exception as exc:
            self._cam.pre_callback = None
            raise CaptureError(f"camera did not start recording: {exc}") from exc
        self.watch.start()

    def _stop(self) -> None:
        self.watch.stop()
        try:
            self._cam.stop_recording()
        finally:
            self._cam.pre_callback = None

    def _close(self) -> None:
        self._cam.close()

    def _on_request(self, request: Any) -> None:
        """picamera2's camera thread, before the encoder: filter main, copy lores into the ring, metadata."""
        if self.finished.is_set():
            return
        try:
            self._take(request)
        except Exception as exc:  # picamera2 would only log it and carry on with a broken pipeline
            log.exception("camera request failed")
            self._fail(exc)

    def _take(self, request: Any) -> None:
        t_capture, t_wall = time.monotonic(), time.time()
        mapped = self._pc2.MappedArray
        if self.main_filters:
            w, h = self.main_size
            with mapped(request, "main") as m:
                self._filter_main(m.array[: h * 3 // 2, :w])
        if self.ring is not None:
            lw, lh = self.lores_size
            with mapped(request, "lores") as m:
                _copy_i420(m.array, self.ring.begin_write_planes(), lw, lh)
            self.ring.commit(t_capture, t_wall)
        self.frames += 1
        md = request.get_metadata()
        self._count_drops(md.get("SensorTimestamp"))
        self._metadata(md)

    def _count_drops(self, ts_ns: int | None) -> None:
        if ts_ns is None:
            return
        if self._last_ts is not None:
            gap = (ts_ns - self._last_ts) / 1e9 * self.fps
            if gap > 1.5:
                self.drops += round(gap) - 1
        self._last_ts = ts_ns


class _CameraWatch(Worker):
    """``doorkeep-camera``: fails the source when picamera2 stops delivering frames (it has no error callback)."""

    def __init__(self, source: PicameraSource, *, timeout_s: float) -> None:
        super().__init__("camera", restartable=False)
        self.source = source
        self.timeout_s = timeout_s

    def _run(self) -> None:
        src = self.source
        seen, since = src.frames, time.monotonic()
        while not self.wait(min(1.0, self.timeout_s / 4)):
            if src.error is not None:
                raise CaptureError(f"camera failed: {src.error}")
            if src.frames != seen:
                seen, since = src.frames, time.monotonic()
                self.mark()
            elif time.monotonic() - since > self.timeout_s:
                exc = CaptureError(f"camera delivered no frame for {self.timeout_s:g} s")
                src._fail(exc)
                raise exc


def _copy_i420(src: np.ndarray, planes: tuple[np.ndarray, np.ndarray, np.ndarray], w: int, h: int) -> None:
    """Copy a (possibly stride-padded) YUV420 buffer ``(h*3/2, stride)`` into I420 plane views."""
    stride = src.shape[1]
    y, u, v = planes
    np.copyto(y, src[:h, :w])
    if stride == w:
        su, sv = chroma_planes(src, w, h)
    else:  # chroma rows are stride/2 wide, packed two per buffer row
        flat = src.reshape(-1)[h * stride:]
        cs = stride // 2
        su = flat[: (h // 2) * cs].reshape(h // 2, cs)[:, : w // 2]
        sv = flat[(h // 2) * cs: h * cs].reshape(h // 2, cs)[:, : w // 2]
    np.copyto(u, su)
    np.copyto(v, sv)


def _packet_output(source: PicameraSource, base: type) -> Any:
    """A picamera2 ``Output`` (``base``, imported lazily) that turns encoded frames into Packets for the sinks."""

    class PacketOutput(base):
        def outputframe(self, frame: bytes, keyframe: bool = True, timestamp: int | None = None,
                        packet: Any = None, audio: bool = False) -> None:
            if audio:
                return
            data = bytes(frame)
            source._emit_packet(Packet(data=data, pts=int(timestamp or 0), t_capture=time.monotonic(),
                                       t_wall=time.time(), keyframe=bool(keyframe), has_config=has_config(data)))

    return PacketOutput()
