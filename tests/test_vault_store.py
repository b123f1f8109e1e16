"""Retention, shredding, recovery edge cases, the recorder's never-block rules, overlapping events, disk full."""

from __future__ import annotations

import errno
import json
import time
from pathlib import Path

import pytest
from doorkeep.device.errors import FormatError
from doorkeep.device.events import Event
from doorkeep.device.preroll import PacketRing
from doorkeep.device.vault import retention
from doorkeep.device.vault.clips import (
    ClipWriter,
    decrypt_clip,
    open_clip_key,
    parse_header,
)
from doorkeep.device.vault.store import shred_all_clips, shred_file
from vault_support import Device, make_device, make_packets, write_clip


def kinds(dev: Device) -> list[dict]:
    return [json.loads(x) for x in (dev.state / "audit.log").read_text().splitlines()]


def test_shred_destroys_the_key_header(tmp_path: Path) -> None:
    dev = make_device(tmp_path)
    write_clip(dev, "c1", make_packets(6))
    path = dev.vault.store.clip_path("c1")
    before = path.read_bytes()
    shred_file(path)
    after = path.read_bytes()
    assert len(after) == len(before) and after[120:] == before[120:]  # only the header bytes changed
    with pytest.raises(FormatError):
        open_clip_key(parse_header(after), dev.owner)  # the owner key no longer opens it
    assert decrypt_clip(before, open_clip_key(parse_header(before), dev.owner))[1]


def test_retention_age_then_bytes_oldest_first(tmp_path: Path) -> None:
    dev = make_device(tmp_path)
    now = time.time()
    for i, age_days in enumerate([40, 20, 10, 1]):
        write_clip(dev, f"c{i}", make_packets(6, t0=now - age_days * 86400))
    store = dev.vault.store
    size = store.size_of("c3")
    gone = retention.enforce(store, max_age_s=30 * 86400, max_bytes=10**12, audit=dev.vault.audit, now=now)
    assert gone == ["c0"]
    gone = retention.enforce(store, max_age_s=30 * 86400, max_bytes=2 * size + 10, audit=dev.vault.audit, now=now)
    assert gone == ["c1"] and store.clip_ids() == ["c2", "c3"]
    shreds = [r for r in kinds(dev) if r["kind"] == "clip_shredded"]
    assert [(r["f"]["clip_id"], r["f"]["reason"]) for r in shreds] == [("c0", "max_age"), ("c1", "max_bytes")]


def test_factory_reset_shreds_everything(tmp_path: Path) -> None:
    dev = make_device(tmp_path)
    for i in range(3):
        write_clip(dev, f"c{i}", make_packets(6))
    assert shred_all_clips(dev.vault.store.root) == 3
    assert list(dev.vault.store.root.iterdir()) == []


def test_recovery_discards_header_only_and_garbage(tmp_path: Path) -> None:
    dev = make_device(tmp_path)
    store = dev.vault.store
    w = ClipWriter(store.clip_path("h1"), owner=dev.owner.public, clip_id="h1", device_id=dev.identity.device_id,
                   t_start=1.0, event_id="e", codec=dev.vault.codec)
    w.abort()  # header written, no chunk: nothing to recover
    store.clip_path("g1").write_bytes(b"garbage")
    rec = store.recover(dev.identity, dev.vault.audit)
    assert {(r.clip_id, r.action) for r in rec} == {("h1", "discarded"), ("g1", "discarded")}
    assert store.clip_ids() == []
    assert {r["f"]["clip_id"] for r in kinds(dev) if r["kind"] == "clip_discarded"} == {"h1", "g1"}


def test_on_packet_never_blocks_and_counts_overflow(tmp_path: Path) -> None:
    dev = make_device(tmp_path, queue_packets=16)
    ring = PacketRing(seconds=5.0)
    packets = make_packets(60)
    for p in packets[:10]:
        ring.on_packet(p)
    dev.vault.start(ring)
    rec = dev.vault.recorder
    assert rec is not None
    rec.stop()  # no writer thread: the queue fills up
    rec._thread = None
    dev.vault.on_event(Event("e", "person", "start", packets[10].t_wall, packets[10].t_wall))
    for p in packets[10:]:
        ring.on_packet(p)  # a blocking put would hang here (pytest-timeout fails it)
    assert rec.dropped == 60 - 16
    dev.vault.stop()  # the keeper thread too


def test_overlapping_events_extend_one_clip(tmp_path: Path) -> None:
    dev = make_device(tmp_path, postroll_s=0.5)
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    packets = make_packets(60)
    for i, p in enumerate(packets):
        t = p.t_wall
        if i == 5:
            dev.vault.on_event(Event("a", "person", "start", t, t))
        if i == 15:
            dev.vault.on_event(Event("b", "person", "start", t, t))
        if i == 20:
            dev.vault.on_event(Event("a", "person", "end", t, t, t))
        if i == 30:
            dev.vault.on_event(Event("b", "person", "end", t, t, t))
        ring.on_packet(p)
    dev.vault.stop()
    (m,) = dev.vault.store.manifests()
    assert m.event_ids == ("a", "b") and m.complete


def test_disk_full_never_stops_capture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dev = make_device(tmp_path, postroll_s=0.5)
    write_clip(dev, "old", make_packets(6, t0=time.time() - 3600))
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    real_add = ClipWriter.add
    calls = {"n": 0}

    def add(self: ClipWriter, packet) -> None:  # the disk fills up after 12 packets
        calls["n"] += 1
        if calls["n"] > 12:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_add(self, packet)

    monkeypatch.setattr(ClipWriter, "add", add)
    packets = make_packets(40)
    dev.vault.on_event(Event("e", "person", "start", packets[0].t_wall, packets[0].t_wall))
    for p in packets:
        ring.on_packet(p)  # never raises, never blocks

    def done() -> bool:  # the keeper shreds for space and recovers the torn clip on its own thread
        k = {r["kind"] for r in kinds(dev)}
        return {"clip_torn", "clip_recovered", "clip_shredded"} <= k

    deadline = time.monotonic() + 20
    while not done() and time.monotonic() < deadline:
        time.sleep(0.02)
    dev.vault.stop()
    assert done(), [r["kind"] for r in kinds(dev)]
    shreds = [r for r in kinds(dev) if r["kind"] == "clip_shredded"]
    assert shreds and shreds[0]["f"]["reason"] == "disk_full" and shreds[0]["f"]["clip_id"] == "old"


def test_no_owner_no_recording_until_paired(tmp_path: Path) -> None:
    dev = make_device(tmp_path, postroll_s=0.2)
    (dev.state / "owner.pub").unlink()
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    assert dev.vault.recorder is None and kinds(dev)[-1]["kind"] == "vault_idle"
    packets = make_packets(30)
    dev.vault.on_event(Event("a", "person", "start", packets[0].t_wall, packets[0].t_wall))
    assert dev.vault.recorder is None
    from doorkeep.device.vault.keys import pin_owner_public
    pin_owner_public(dev.state, dev.owner.public)  # pairing happens while running
    for i, p in enumerate(packets):
        if i == 5:
            dev.vault.on_event(Event("b", "person", "start", p.t_wall, p.t_wall))
        if i == 10:
            dev.vault.on_event(Event("b", "person", "end", p.t_wall, p.t_wall, p.t_wall, mono_end=p.t_capture))
        ring.on_packet(p)
    dev.vault.stop()
    (m,) = dev.vault.store.manifests()
    assert m.event_ids == ("b",)
