"""PacketRing: a flush cut at every point of a recorded stream decodes from its first frame; live packets follow
with no gap and no duplicate; memory stays bounded."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from doorkeep.device.frames import Packet
from doorkeep.device.preroll import PacketRing
from doorkeep.device.sources.h264 import has_config, nal_types
from doorkeep.device.sources.synthetic import SyntheticSource
from foundation_util import Collect, decode_h264

FPS = 30
GOP = 8



@pytest.fixture(scope="module")
def stream() -> list[Packet]:
    """A recorded H.264 stream of the synthetic scene (moving figure), keyframe every GOP frames."""
    sink = Collect()
    src = SyntheticSource(width=160, height=120, lores_width=160, lores_height=120, fps=FPS, gop=GOP,
                          duration_s=64 / FPS, realtime=False, noise=2)
    src.attach(packet_sinks=[sink])
    with src:
        src.start()
        assert src.wait(30)
    # Capture times as a camera would stamp them (the run above was as fast as possible).
    return [replace(p, t_capture=i / FPS) for i, p in enumerate(sink.packets)]



def test_stream_repeats_sps_pps_on_every_keyframe(stream: list[Packet]) -> None:
    assert len(stream) == 64
    keys = [i for i, p in enumerate(stream) if p.keyframe]
    assert keys == list(range(0, 64, GOP))
    for p in stream:
        assert p.has_config == p.keyframe == has_config(p.data)
        assert nal_types(p.data)[-1] == (5 if p.keyframe else 1)


def test_flush_at_every_cut_point_decodes_from_first_frame_and_continues(stream: list[Packet]) -> None:
    reference = decode_h264(stream)
    assert len(reference) == len(stream)
    for cut in range(len(stream) + 1):
        ring = PacketRing(seconds=0.4, max_bytes=1 << 24)  # 0.4 s < 64 frames: the ring has wrapped
        for p in stream[:cut]:
            ring.on_packet(p)
        clip = Collect()
        n = ring.flush_into(clip)
        for p in stream[cut:]:
            ring.on_packet(p)
        got = clip.packets
        assert len(got) >= n
        if not got:
            continue
        first = stream.index(got[0])
        # No gap, no duplicate: exactly the recorded packets from `first` to the end, in order.
        assert [p.pts for p in got] == [p.pts for p in stream[first:]], f"cut {cut}"
        assert got[0].keyframe and got[0].has_config, f"cut {cut}"
        if cut > 0 and n:
            # The pre-roll reaches back at least `seconds` (whole GOPs) before the cut.
            assert stream[cut - 1].t_capture - got[0].t_capture >= min(0.4, stream[cut - 1].t_capture) - 1e-9
        decoded = decode_h264(got)
        assert len(decoded) == len(got), f"cut {cut}: only {len(decoded)} of {len(got)} packets decoded"
        for a, b in zip(decoded, reference[first:], strict=True):
            assert np.array_equal(a, b), f"cut {cut}: decoded frame differs from the full-stream decode"


def test_sink_attached_to_empty_ring_starts_at_next_config_keyframe(stream: list[Packet]) -> None:
    ring = PacketRing(seconds=1.0)
    clip = Collect()
    assert ring.flush_into(clip) == 0
    for p in stream[3:20]:  # starts mid-GOP
        ring.on_packet(p)
    assert clip.packets[0] is stream[GOP]
    assert ring.discarded == GOP - 3  # packets before the first usable keyframe are never held


def test_detach_stops_delivery_and_double_attach_refused(stream: list[Packet]) -> None:
    ring = PacketRing(seconds=1.0)
    clip = Collect()
    for p in stream[:10]:
        ring.on_packet(p)
    ring.flush_into(clip)
    with pytest.raises(ValueError):
        ring.flush_into(clip)
    ring.detach(clip)
    before = len(clip.packets)
    for p in stream[10:20]:
        ring.on_packet(p)
    assert len(clip.packets) == before
    ring.detach(clip)  # no error


def test_bounded_by_seconds_and_bytes(stream: list[Packet]) -> None:
    ring = PacketRing(seconds=0.5, max_bytes=1 << 24)
    for p in stream:
        ring.on_packet(p)
        held = ring.snapshot()
        assert held[0].keyframe and held[0].has_config
        assert ring.bytes == sum(len(q.data) for q in held)
        # Never more than `seconds` plus one GOP.
        assert held[-1].t_capture - held[0].t_capture < 0.5 + GOP / FPS
    gop_bytes = max(sum(len(q.data) for q in stream[i : i + GOP]) for i in range(0, 64, GOP))
    small = PacketRing(seconds=60, max_bytes=gop_bytes * 2)
    for p in stream:
        small.on_packet(p)
        assert small.bytes <= gop_bytes * 2
        held = small.snapshot()
        assert not held or (held[0].keyframe and held[0].has_config)
    assert len(small.snapshot()) >= GOP


def test_failing_sink_does_not_break_the_ring(stream: list[Packet]) -> None:
    class Broken:
        def on_packet(self, packet: Packet) -> None:
            raise OSError("disk full")

    ring = PacketRing(seconds=1.0)
    good = Collect()
    ring.flush_into(Broken())
    ring.flush_into(good)
    for p in stream[:16]:
        ring.on_packet(p)
    assert len(good.packets) == 16


def test_sink_may_detach_itself_from_on_packet(stream: list[Packet]) -> None:
    ring = PacketRing(seconds=1.0)

    class OneGop(Collect):
        def on_packet(self, packet: Packet) -> None:
            if self.packets and packet.keyframe:
                ring.detach(self)  # called on the capture thread, inside the ring's lock
                return
            super().on_packet(packet)

    clip, other = OneGop(), Collect()
    ring.flush_into(clip)
    ring.flush_into(other)
    for p in stream[:20]:
        ring.on_packet(p)
    assert len(clip.packets) == GOP and len(other.packets) == 20
