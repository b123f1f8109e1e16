"""Software H.264 encoding (PyAV libx264) of main I420 frames into Annex B :class:`Packet` s.

ultrafast + zerolatency (no lookahead, no B-frames: one packet out per frame in, immediately), a keyframe every
``gop`` frames and no scene-cut keyframes (so pre-roll granularity is predictable), and SPS/PPS repeated on every
keyframe (``repeat-headers=1``) so any keyframe is a valid place to start a clip.

The input :class:`av.VideoFrame` is allocated once and refilled per frame; x264 copies the picture in
``encode``, so reuse is safe.
"""

from __future__ import annotations

import fractions
from typing import Any

import numpy as np

from ..errors import CaptureError
from ..frames import Packet, chroma_planes
from .h264 import has_config

US = fractions.Fraction(1, 1_000_000)


class H264Encoder:
    """libx264 encoder for ``width`` x ``height`` I420 frames at ``fps``; ``pts`` in microseconds.

    Example::

        enc = H264Encoder(width=1280, height=720, fps=30, gop=30)
        packets = enc.encode(frame, pts=0, t_capture=time.monotonic(), t_wall=time.time())
        packets += enc.flush()
    """

    def __init__(self, *, width: int, height: int, fps: float, gop: int = 30, crf: int = 23) -> None:
        import av

        self.width = width
        self.height = height
        try:
            ctx: Any = av.CodecContext.create("libx264", "w")
        except Exception as exc:  # PyAV built without libx264
            raise CaptureError(f"libx264 encoder unavailable in PyAV: {exc}") from exc
        ctx.width = width
        ctx.height = height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = US
        ctx.framerate = fractions.Fraction(fps).limit_denominator(1001)
        ctx.gop_size = gop
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "crf": str(crf),
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1",
        }
        ctx.open()
        self._ctx = ctx
        self._frame = av.VideoFrame(width, height, "yuv420p")
        self._planes = [self._plane_view(i) for i in range(3)]
        self._pending: dict[int, tuple[float, float]] = {}

    def _plane_view(self, i: int) -> np.ndarray:
        p = self._frame.planes[i]
        h, w = (self.height, self.width) if i == 0 else (self.height // 2, self.width // 2)
        return np.frombuffer(memoryview(p), dtype=np.uint8).reshape(-1, p.line_size)[:h, :w]

    def encode(self, frame: np.ndarray, *, pts: int, t_capture: float, t_wall: float) -> list[Packet]:
        """Encode one I420 array ``(h*3/2, w)``; returns the packets that came out (normally exactly one)."""
        u, v = chroma_planes(frame, self.width, self.height)
        np.copyto(self._planes[0], frame[: self.height])
        np.copyto(self._planes[1], u)
        np.copyto(self._planes[2], v)
        self._frame.pts = pts
        self._pending[pts] = (t_capture, t_wall)
        return self._packets(self._ctx.encode(self._frame))

    def flush(self) -> list[Packet]:
        """Drain the encoder (end of stream)."""
        return self._packets(self._ctx.encode(None))

    def _packets(self, raw: list[Any]) -> list[Packet]:
        out = []
        for p in raw:
            data = bytes(p)
            pts = int(p.pts) if p.pts is not None else 0
            tc, tw = self._pending.pop(pts, (0.0, 0.0))
            out.append(Packet(data=data, pts=pts, t_capture=tc, t_wall=tw, keyframe=bool(p.is_keyframe),
                              has_config=has_config(data)))
        if len(self._pending) > 64:  # never grows in practice (zerolatency); bound it anyway
            for k in sorted(self._pending)[:-64]:
                del self._pending[k]
        return out
