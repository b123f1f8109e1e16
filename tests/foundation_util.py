"""Helpers shared by the foundation tests: a collecting packet sink and a PyAV H.264 decode."""

from __future__ import annotations

import av
import numpy as np
from doorkeep.device.frames import Packet


class Collect:
    """A packet sink that keeps everything it is given."""

    def __init__(self) -> None:
        self.packets: list[Packet] = []

    def on_packet(self, packet: Packet) -> None:
        self.packets.append(packet)


def decode_h264(packets: list[Packet]) -> list[np.ndarray]:
    """Decode Annex B packets with a fresh PyAV decoder; returns I420 arrays (raises on undecodable input)."""
    ctx = av.CodecContext.create("h264", "r")
    frames = []
    for p in packets:
        frames += [f.to_ndarray(format="yuv420p") for f in ctx.decode(av.Packet(p.data))]
    return frames + [f.to_ndarray(format="yuv420p") for f in ctx.decode(None)]
