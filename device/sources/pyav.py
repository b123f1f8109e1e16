"""A video file or V4L2 webcam through PyAV.

* H.264 input with no main filters is passed through: packets are converted to Annex B (``h264_mp4toannexb`` when
  the container stores avcC, as MP4/MKV do) and SPS/PPS are repeated on every keyframe, so any keyframe starts a
  playable clip. The stream is still decoded, for the lores frames.
* Any other codec — and H.264 whenever ``main_filters`` are set, so a privacy mask can never be bypassed — is
  decoded, filtered and re-encoded with libx264 (ultrafast/zerolatency, see :mod:`.encode`).

Lores frames are the decoded frames scaled by swscale to the lores size and copied into the ring slot. Files are
paced at their frame rate (``realtime=True``) or read as fast as possible, optionally looping; a V4L2 device paces
itself.

Example::

    src = PyAVSource(path="door.mp4", realtime=True, loop=True)
    src.attach(ring=ring, packet_sinks=[preroll]); src.start()
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CaptureError
from ..frames import Packet, chroma_planes, i420_shape
from .base import MainFilter, MetadataHook, Pacer, ThreadedSource
from .encode import H264Encoder
from .h264 import config_prefix, has_config, is_idr


class PyAVSource(ThreadedSource):
    """Frames from a video file or a V4L2 device.

    Args:
        path: file path or device (``/dev/video0``).
        v4l2: open ``path`` as a V4L2 device (live: not paced, never loops).
        input_options: PyAV/FFmpeg demuxer options, e.g. ``{"video_size": "1280x720", "framerate": "30"}``.
        realtime: pace a file at its frame rate (else as fast as possible).
        loop: start a file again at its end.
        gop: keyframe interval when re-encoding.
        lores_width, lores_height: size of the ring's frames.
        main_filters, on_metadata: see :class:`FrameSource`.

    Raises:
        CaptureError: the file/device cannot be opened or has no video stream (from the constructor).
    """

    def __init__(self, *, path: str | Path, v4l2: bool = False, input_options: dict[str, str] | None = None,
                 realtime: bool = True, loop: bool = False, gop: int = 30, lores_width: int = 320,
                 lores_height: int = 240, main_filters: Sequence[MainFilter] = (),
                 on_metadata: MetadataHook | None = None) -> None:
        super().__init__(main_filters=main_filters, on_metadata=on_metadata)
        i420_shape(lores_width, lores_height)
        self.path = str(path)
        self.v4l2 = v4l2
        self.input_options = dict(input_options or {})
        self.realtime = realtime and not v4l2
        self.loop = loop and not v4l2
        self.gop = gop
        self.lores_size = (lores_width, lores_height)
        container = self._open()
        try:
            st = container.streams.video[0]
            cc = st.codec_context
            self.main_size = (cc.width // 2 * 2, cc.height // 2 * 2)
            rate = st.average_rate or st.guessed_rate or cc.framerate
            self.fps = float(rate) if rate else 30.0
            self.codec = cc.name
        finally:
            container.close()

    @property
    def passthrough(self) -> bool:
        """True when packets are passed through untouched (H.264 input and no main filters)."""
        return self.codec == "h264" and not self.main_filters

    def _open(self) -> Any:
        import av

        try:
            container = av.open(self.path, format="v4l2" if self.v4l2 else None, options=self.input_options)
        except (OSError, av.FFmpegError) as exc:
            raise CaptureError(f"cannot open video {self.path!r}: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise CaptureError(f"{self.path!r} has no video stream")
        return container

    # ------------------------------------------------------------------------------------------ capture thread

    def _run(self) -> None:
        from av.video.reformatter import VideoReformatter

        self._scaler = VideoReformatter()
        self._pacer = Pacer(self.fps)
        self._pts_offset = 0
        self._index = 0
        self._config = b""
        w, h = self.main_size
        self._main_buf = np.empty(i420_shape(w, h), dtype=np.uint8)
        self._main_views = (self._main_buf[:h], *chroma_planes(self._main_buf, w, h))
        self._encoder = None if self.passthrough else H264Encoder(width=w, height=h, fps=self.fps, gop=self.gop)
        while not self._stop_event.is_set():
            last_pts = self._play_once()
            if not self.loop or self._stop_event.is_set():
                break
            self._pts_offset = last_pts + round(1e6 / self.fps)
        if self._encoder is not None:
            for p in self._encoder.flush():
                self._emit_packet(p)

    def _play_once(self) -> int:
        """Play the file (or device) once; returns the last pts emitted (µs)."""
        import av

        container = self._open()
        try:
            st = container.streams.video[0]
            st.thread_type = "AUTO"
            tb = float(st.time_base)
            bsf = None
            if self.passthrough and st.codec_context.extradata and st.codec_context.extradata[0] == 1:
                bsf = av.bitstream.BitStreamFilterContext("h264_mp4toannexb", st)
            first: int | None = None
            last_pts = self._pts_offset
            for packet in container.demux(st):
                if self._stop_event.is_set():
                    break
                if packet.size == 0:  # demuxer's end-of-stream packet: drain the decoder
                    frames = st.codec_context.decode(None)
                    self._frames(frames)
                    continue
                ts = packet.pts if packet.pts is not None else packet.dts
                if first is None:
                    first = ts or 0
                pts = self._pts_offset + round(((ts or 0) - first) * tb * 1e6)
                last_pts = max(last_pts, pts)
                frames = st.codec_context.decode(packet)
                if self.passthrough:
                    t_capture = self._pace()
                    t_wall = time.time()
                    for q in (bsf.filter(packet) if bsf is not None else [packet]):
                        self._pass_packet(bytes(q), bool(q.is_keyframe), pts, t_capture, t_wall)
                    self._lores(frames, t_capture, t_wall)
                else:
                    self._frames(frames)
            return last_pts
        finally:
            container.close()

    def _pace(self) -> float:
        if not self.realtime:
            return time.monotonic()
        t = self._pacer.wait(self._stop_event)
        self.drops = self._pacer.late
        self.max_lag = self._pacer.max_lag
        return t

    def _pass_packet(self, data: bytes, keyframe: bool, pts: int, t_capture: float, t_wall: float) -> None:
        keyframe = keyframe or is_idr(data)
        config = has_config(data)
        if config:
            self._config = config_prefix(data)
        elif keyframe and self._config:  # inputs that send SPS/PPS only once: repeat them on every keyframe
            data = self._config + data
            config = True
        self._emit_packet(Packet(data=data, pts=pts, t_capture=t_capture, t_wall=t_wall, keyframe=keyframe,
                                 has_config=config))

    def _frames(self, frames: list[Any]) -> None:
        """Re-encode path (and decoder drain): pace, lores, filter + encode each decoded frame."""
        for frame in frames:
            if self._stop_event.is_set():
                return
            t_capture = self._pace()
            t_wall = time.time()
            self._lores([frame], t_capture, t_wall)
            if self._encoder is None:
                continue
            fpts = round((self._index - 1) * 1e6 / self.fps)  # cumulative over loops
            self._copy_planes(frame.reformat(format="yuv420p") if frame.format.name != "yuv420p" else frame,
                              self._main_views, self.main_size)
            self._filter_main(self._main_buf)
            for p in self._encoder.encode(self._main_buf, pts=fpts, t_capture=t_capture, t_wall=t_wall):
                self._emit_packet(p)

    def _lores(self, frames: list[Any], t_capture: float, t_wall: float) -> None:
        lw, lh = self.lores_size
        for frame in frames:
            self.frames += 1
            self._index += 1
            if self.ring is None:
                continue
            # AREA (box) filter: antialiased 6x decimation at a third of BILINEAR's cost (BENCHMARKS.md).
            small = self._scaler.reformat(frame, width=lw, height=lh, format="yuv420p", interpolation="AREA")
            self._copy_planes(small, self.ring.begin_write_planes(), self.lores_size)
            self.ring.commit(t_capture, t_wall)

    @staticmethod
    def _copy_planes(frame: Any, views: tuple[np.ndarray, ...], size: tuple[int, int]) -> None:
        w, h = size
        for i, dst in enumerate(views):
            plane = frame.planes[i]
            ph, pw = (h, w) if i == 0 else (h // 2, w // 2)
            np.copyto(dst, np.frombuffer(memoryview(plane), dtype=np.uint8).reshape(-1, plane.line_size)[:ph, :pw])
