"""The two things a frame source produces: lores analysis frames and encoded packets.

Lores frames are I420 (YUV420 planar) stored as one ``uint8`` array of shape ``(height * 3 // 2, width)``:
rows ``[0, height)`` are the Y plane, then U (``height//4`` rows of ``width``) then V, exactly as picamera2's
``YUV420`` lores stream and PyAV's ``yuv420p`` lay them out. Width and height must be even.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import FrameError


def i420_shape(width: int, height: int) -> tuple[int, int]:
    """Array shape of one I420 frame of ``width`` x ``height`` pixels."""
    if width % 2 or height % 2 or width <= 0 or height <= 0:
        raise FrameError(f"I420 needs positive even dimensions, got {width}x{height}")
    return (height * 3 // 2, width)


def i420_size(frame: np.ndarray) -> tuple[int, int]:
    """``(width, height)`` of an I420 frame array (the inverse of :func:`i420_shape`)."""
    rows, width = frame.shape
    return width, rows * 2 // 3


def chroma_planes(frame: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Views of the U and V planes (each ``height/2`` x ``width/2``) of an I420 frame array."""
    quarter = (height // 2) * (width // 2)
    flat = frame.reshape(-1)
    start = width * height
    u = flat[start : start + quarter].reshape(height // 2, width // 2)
    v = flat[start + quarter : start + 2 * quarter].reshape(height // 2, width // 2)
    return u, v


@dataclass(frozen=True, slots=True)
class Packet:
    """One encoded H.264 access unit (Annex B byte stream).

    ``keyframe`` marks an IDR picture; ``has_config`` says the packet itself carries SPS/PPS, so a decoder can start
    here without anything earlier. ``t_capture`` is ``time.monotonic()`` at capture; ``t_wall`` is ``time.time()``.
    """

    data: bytes
    pts: int
    t_capture: float
    t_wall: float
    keyframe: bool
    has_config: bool = False


class PacketSink:
    """Anything that takes encoded packets (pre-roll ring, clip writer). Called on the capture thread: never block."""

    def on_packet(self, packet: Packet) -> None:  # pragma: no cover - interface
        raise NotImplementedError
