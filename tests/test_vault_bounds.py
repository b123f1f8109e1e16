"""#14.3 — bounded events and clips: a presence longer than ``[events] max_event_s`` becomes a series of events, a
recording longer than ``[vault] max_clip_s`` (or larger than ``max_clip_mb``) continues in new clips linked in their
manifests, a poster of a person never grows one clip until the disk is full, and retention runs on a timer."""

from __future__ import annotations

import json
import time
from pathlib import Path

from doorkeep.device.detections import Detection
from doorkeep.device.events import Event
from doorkeep.device.person_events import PersonTracker
from doorkeep.device.preroll import PacketRing
from doorkeep.device.vault.clips import decrypt_clip, open_clip_key, parse_header
from vault_faults import fake_packets
from vault_support import Device, decode_packets, make_device, make_packets, records, wait_until, write_clip

PERSON = [Detection(0.9, 0.2, 0.2, 0.6, 0.9)]





def chain(dev: Device) -> list:
    """The manifests of one recording, first part first (following ``prev_clip``)."""
    ms = {m.clip_id: m for m in dev.vault.store.manifests()}
    (first,) = [m for m in ms.values() if m.prev_clip is None]
    out = [first]
    while nxt := [m for m in ms.values() if m.prev_clip == out[-1].clip_id]:
        out.append(nxt[0])
    assert len(out) == len(ms), "every clip belongs to the one chain"
    return out


def test_a_poster_of_a_person_makes_bounded_events() -> None:
    """A person detected on every frame for 1000 s (a poster): today's main opens one event that never ends. Now
    each event lasts at most max_event_s (default 300 s) and the next starts where it ended."""
    tracker = PersonTracker()
    events: list[Event] = []
    for i in range(2001):
        events += tracker.update(i * 0.5, PERSON)
    starts = [e for e in events if e.phase == "start"]
    ends = [e for e in events if e.phase == "end"]
    assert len(starts) == 4 and len(ends) == 3
    for s, e in zip(starts, ends, strict=False):
        assert e.event_id == s.event_id and e.t_end is not None and e.t_end - s.t_start <= 300.5
    for prev_end, nxt in zip(ends, starts[1:], strict=False):
        assert nxt.t_start >= prev_end.t_end  # type: ignore[operator]  # no overlap
        assert nxt.t - prev_end.t <= 1.0  # and no gap of more than a frame or two


def test_a_long_recording_continues_in_linked_clips(tmp_path: Path) -> None:
    """20 s of footage with max_clip_s = 5: today's main writes one clip. Now four or five parts, each cut at a
    config keyframe, linked by prev_clip/part, that decode on their own and together give every packet exactly
    once."""
    dev = make_device(tmp_path, postroll_s=0.3, max_clip_s=5)
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    packets = make_packets(200)
    t0 = packets[0].t_wall
    dev.vault.on_event(Event("long", "person", "start", t0, t0))
    for i, p in enumerate(packets):
        if i == 190:
            dev.vault.on_event(Event("long", "person", "end", p.t_wall, t0, p.t_wall, mono_end=p.t_capture))
        ring.on_packet(p)
    wait_until(lambda: dev.vault.recorder.recording is None, what="the last part to close")  # type: ignore[union-attr]
    dev.vault.stop()
    parts = chain(dev)
    assert len(parts) >= 4 and [m.part for m in parts] == list(range(len(parts)))
    assert all(m.v == 2 and m.complete and m.event_ids == ("long",) for m in parts)
    got = []
    for m in parts:
        data = dev.vault.store.clip_path(m.clip_id).read_bytes()
        m.verify(dev.identity.verify_key).check_clip(data)
        _, pk = decrypt_clip(data, open_clip_key(parse_header(data), dev.owner))
        assert pk[0].keyframe and pk[0].has_config
        assert pk[-1].t_capture - pk[0].t_capture <= 5.0 + 0.5  # max_clip_s plus at most one GOP
        assert len(decode_packets(pk)) == len(pk)  # each part decodes on its own
        got += pk
    assert [p.pts for p in got] == [p.pts for p in packets[:len(got)]]  # no gap, no duplicate
    written = [r for r in records(dev) if r["kind"] == "clip_written"]
    assert [r["f"].get("part", 0) for r in written] == list(range(len(parts)))


def test_a_large_recording_is_cut_at_max_clip_mb(tmp_path: Path) -> None:
    dev = make_device(tmp_path, postroll_s=0.3, max_clip_mb=1)
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    t0, m0 = time.time(), time.monotonic()
    dev.vault.on_event(Event("big", "person", "start", t0, t0))
    for p in fake_packets(100, size=50_000, t0=t0):  # 5 MB in 10 s of footage
        ring.on_packet(p)
    t = t0 + 10
    dev.vault.on_event(Event("big", "person", "end", t, t0, t, mono_end=m0 + 10))  # at the footage's end
    dev.vault.stop()
    parts = chain(dev)
    assert len(parts) >= 4
    assert all(m.size <= (1 << 20) + 10 * 50_100 for m in parts)  # 1 MiB plus at most one GOP


def test_a_poster_never_fills_the_disk(tmp_path: Path) -> None:
    """A poster in view for 60 s of footage, with max_event_s = 8, max_clip_s = 5 and max_bytes = 2 MiB (12 MB
    of footage): a series of bounded events and linked clips, and retention keeps the vault within its bound."""
    dev = make_device(tmp_path, postroll_s=0.5, max_clip_s=5, max_bytes=2 << 20)
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    tracker = PersonTracker(max_event_s=8)
    t0 = time.time()
    for i, p in enumerate(fake_packets(600, size=20_000, t0=t0)):
        for ev in tracker.update(p.t_capture, PERSON, wall=p.t_wall):
            dev.vault.on_event(ev)
        ring.on_packet(p)
        if i % 50 == 0:  # let the writer keep up (the queue is bounded: overflow would be counted, not tested)
            wait_until(lambda: dev.vault.recorder._q.empty(), what="the writer")  # type: ignore[union-attr]
    wait_until(lambda: dev.vault.recorder._q.empty(), what="the writer")  # type: ignore[union-attr]
    kinds = [r["kind"] for r in records(dev)]
    assert kinds.count("event") >= 2 * 6  # 60 s in events of at most 8 s: starts and ends
    wait_until(lambda: dev.vault.store.total_bytes() <= (2 << 20) + (1 << 20), what="retention to catch up")
    dev.vault.stop()
    assert kinds.count("clip_written") >= 10
    assert all(m.size < (2 << 20) for m in dev.vault.store.manifests())


def test_retention_runs_on_a_timer(tmp_path: Path) -> None:
    """Nothing is recorded, yet a clip that ages past max_age_days is shredded by the keeper's timer. Today's main
    ran retention only at start and after a clip."""
    dev = make_device(tmp_path, max_age_days=1, retention_interval_s=1)
    dev.vault.start(PacketRing(seconds=0.5))
    write_clip(dev, "stale", make_packets(6, t0=time.time() - 2 * 86400))  # appears after the start-up pass
    wait_until(lambda: "stale" not in dev.vault.store.clip_ids(), timeout=10, what="the timed retention pass")
    dev.vault.stop()
    (shred,) = [r for r in records(dev) if r["kind"] == "clip_shredded"]
    assert shred["f"] == {"clip_id": "stale", "reason": "max_age", "bytes": shred["f"]["bytes"]}
    assert json.dumps(shred)
