"""#14.1 — only a full disk triggers retention: a storage fault (EACCES, EIO, EROFS, EMFILE) stops recording loudly,
shreds nothing, is retried with backoff and clears by itself; retention never destroys a key header it cannot then
unlink."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from doorkeep.device.disk import Backoff, errno_name, is_disk_full
from doorkeep.device.events import Event
from doorkeep.device.preroll import PacketRing
from doorkeep.device.publish.heartbeat import heartbeat_payload
from doorkeep.device.stats import Stats
from doorkeep.device.vault import retention
from doorkeep.device.vault.audit import verify
from vault_support import Device, make_device, make_packets, records, sealed_keys, wait_until, write_clip

NOW = time.time()




def of_kind(dev: Device, kind: str) -> list[dict]:
    return [r for r in records(dev) if r["kind"] == kind]



def twenty_clips(dev: Device) -> dict[str, bytes]:
    for i in range(20):
        write_clip(dev, f"c{i:02d}", make_packets(6, t0=NOW - 3600 + i, seed=i))
    store = dev.vault.store
    return {c: store.clip_path(c).read_bytes() + store.manifest_path(c).read_bytes() for c in store.clip_ids()}


def person(dev: Device, ring: PacketRing, n: int, packets: list) -> None:
    """One short person event with packets flowing through the pre-roll ring."""
    t = time.time()
    dev.vault.on_event(Event(f"e{n}", "person", "start", t, t))
    for p in packets[:10]:
        ring.on_packet(p)
    dev.vault.on_event(Event(f"e{n}", "person", "end", t, t, t))
    for p in packets[10:]:
        ring.on_packet(p)


@pytest.mark.parametrize("err", [errno.EACCES, errno.EIO, errno.EROFS, errno.EMFILE])
def test_a_storage_fault_shreds_nothing_and_clears_by_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              err: int) -> None:
    """Five events with a vault directory that refuses new files: today's main shredded ~10 % of the clips per
    event (20 → 9). Now: zero shredded, one warning/audit/count, the heartbeat flag, and recording resumes once the
    fault clears."""
    dev = make_device(tmp_path, postroll_s=0.05, max_retry_s=1)
    before = twenty_clips(dev)
    stats = Stats()
    dev.vault.stats = stats
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    root = str(dev.vault.store.root)
    real_open = os.open

    def refusing_open(path: object, flags: int, *args: object, **kw: object) -> int:  # below the vault's seam
        if flags & os.O_CREAT and str(path).startswith(root):
            raise OSError(err, os.strerror(err), str(path))
        return real_open(path, flags, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", refusing_open)
    packets = make_packets(20)
    for n in range(5):
        person(dev, ring, n, packets)
    time.sleep(0.5)  # let the writer and keeper run with the fault in place

    store = dev.vault.store
    after = {c: store.clip_path(c).read_bytes() + store.manifest_path(c).read_bytes() for c in store.clip_ids()}
    assert after == before, "a storage fault destroyed footage"
    assert of_kind(dev, "clip_shredded") == []
    name = errno.errorcode[err]
    assert dev.vault.health.fault == name and dev.vault.flags() == {"vault_fault": name}
    assert stats.snapshot()["counters"]["vault_faults"] == 1
    (fault,) = of_kind(dev, "vault_fault")  # audited once, not once per event or retry
    assert fault["f"]["errno"] == name
    hb = json.loads(heartbeat_payload(stats.snapshot(), identity=dev.identity, flags=dev.vault.flags()))
    assert hb["vault_fault"] == name

    monkeypatch.undo()  # the fault clears: the keeper's next probe (<= max_retry_s) resumes recording
    wait_until(lambda: dev.vault.health.ok, timeout=10, what="the fault to clear")
    assert dev.vault.flags() == {}
    assert "vault_fault" not in json.loads(heartbeat_payload({}, identity=dev.identity, flags=dev.vault.flags()))
    assert [r["f"]["errno"] for r in of_kind(dev, "vault_fault_cleared")] == [name]
    person(dev, ring, 9, make_packets(20, seed=9))
    wait_until(lambda: of_kind(dev, "clip_written"), what="a clip after the fault cleared")
    dev.vault.stop()
    assert set(before) < set(store.clip_ids())
    assert verify(dev.state / "audit.log", dev.identity.verify_key).ok


def test_a_fault_mid_clip_closes_it_torn_and_resumes_in_a_new_clip(tmp_path: Path) -> None:
    """EIO on a chunk write (injected at the vault's one disk seam): the clip is closed torn and kept; nothing is
    shredded; when the fault clears while the person is still there, recording resumes in a new clip and the torn
    one is recovered to its last complete chunk."""
    from vault_faults import FaultyIO

    dev = make_device(tmp_path, postroll_s=0.05, max_retry_s=1)
    io = FaultyIO()
    dev.vault.store.disk = io
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    packets = make_packets(80)
    t = time.time()
    dev.vault.on_event(Event("e", "person", "start", t, t))
    for p in packets[:30]:
        ring.on_packet(p)
    wait_until(lambda: dev.vault.recorder and dev.vault.recorder._q.empty(), what="the writer")  # type: ignore[union-attr]
    io.fail(errno.EIO, ops={"write", "fsync"})
    for p in packets[30:50]:
        ring.on_packet(p)
    wait_until(lambda: dev.vault.health.fault == "EIO", what="the fault")
    torn = of_kind(dev, "clip_torn")
    assert len(torn) == 1 and of_kind(dev, "clip_shredded") == []
    io.fail(None)
    wait_until(lambda: dev.vault.health.ok, timeout=10, what="the fault to clear")
    wait_until(lambda: dev.vault.recorder.recording is not None, what="recording to resume")  # type: ignore[union-attr]
    for p in packets[50:]:
        ring.on_packet(p)
    dev.vault.on_event(Event("e", "person", "end", time.time(), t, time.time()))
    wait_until(lambda: of_kind(dev, "clip_recovered") and of_kind(dev, "clip_written"), what="recovery + new clip")
    dev.vault.stop()
    clip_ids = dev.vault.store.clip_ids()
    assert len(clip_ids) == 2 and torn[0]["f"]["clip_id"] in clip_ids
    assert of_kind(dev, "clip_shredded") == []


def test_retention_that_cannot_unlink_keeps_the_key_header(tmp_path: Path) -> None:
    """A vault directory where names cannot be removed (append-only, ``chattr +a``: even root gets EPERM). Today's
    main overwrote the sealed key first and then failed to unlink: a clip destroyed but still there. Now the shred
    takes the clip's name away first, so the failure leaves the clip whole."""
    dev = make_device(tmp_path)
    write_clip(dev, "old", make_packets(6, t0=NOW - 40 * 86400))
    write_clip(dev, "new", make_packets(6, t0=NOW - 60))
    keys = sealed_keys(dev, "old", "new")
    root = dev.vault.store.root
    subprocess.run(["chattr", "+a", str(root)], check=True)
    try:
        with pytest.raises(OSError) as exc:
            retention.enforce(dev.vault.store, max_age_s=30 * 86400, max_bytes=1 << 40, audit=dev.vault.audit)
        assert exc.value.errno in (errno.EPERM, errno.EACCES)
    finally:
        subprocess.run(["chattr", "-a", str(root)], check=True)
    assert sealed_keys(dev, "old", "new") == keys, "the key header was destroyed although the clip stayed"
    assert dev.vault.store.clip_ids() == ["new", "old"]
    assert retention.enforce(dev.vault.store, max_age_s=30 * 86400, max_bytes=1 << 40) == ["old"]


@pytest.mark.parametrize(("op", "err", "kept"), [("rename", errno.EACCES, True), ("pwrite", errno.EIO, False)])
def test_a_shred_that_fails_is_audited_with_what_became_of_the_clip(tmp_path: Path, op: str, err: int,
                                                                     kept: bool) -> None:
    """Before, a shred that failed half-way left no audit record: a clip could vanish from the chain. Now
    ``clip_shred_failed`` says whether the clip is still whole (its name could not be taken) or doomed (name taken,
    key header not yet overwritten: the shred is finished at the next start)."""
    from vault_faults import FaultyIO

    dev = make_device(tmp_path)
    write_clip(dev, "old", make_packets(6, t0=NOW - 40 * 86400))
    io = FaultyIO()
    dev.vault.store.disk = io
    io.fail(err, ops={op})
    with pytest.raises(OSError):
        retention.enforce(dev.vault.store, max_age_s=30 * 86400, max_bytes=1 << 40, audit=dev.vault.audit)
    (failed,) = of_kind(dev, "clip_shred_failed")
    assert failed["f"] == {"clip_id": "old", "reason": "max_age", "error": errno.errorcode[err], "kept": kept}
    assert of_kind(dev, "clip_shredded") == []
    io.fail(None)
    dev.vault.store.recover(dev.identity)  # the next start finishes a doomed shred
    assert dev.vault.store.clip_ids() == (["old"] if kept else [])
    assert not list(dev.vault.store.root.glob("*.shred"))


def test_a_retention_fault_is_reported_not_retried_as_shredding(tmp_path: Path) -> None:
    """The keeper meets EPERM while shredding by age: a fault (recording stops, flagged), not a full disk."""
    dev = make_device(tmp_path, max_retry_s=1)
    write_clip(dev, "old", make_packets(6, t0=NOW - 40 * 86400))
    keys = sealed_keys(dev, "old")
    root = dev.vault.store.root
    subprocess.run(["chattr", "+a", str(root)], check=True)
    try:
        dev.vault.start(PacketRing(seconds=0.5))  # the start-up retention pass meets the fault
        assert dev.vault.health.fault == "EPERM"
        assert sealed_keys(dev, "old") == keys
    finally:
        subprocess.run(["chattr", "-a", str(root)], check=True)
    wait_until(lambda: dev.vault.health.ok, timeout=10, what="the probe to clear the fault")
    wait_until(lambda: of_kind(dev, "clip_shredded"), timeout=10, what="retention to catch up")
    dev.vault.stop()


def test_only_enospc_and_edquot_are_a_full_disk() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "x")) and is_disk_full(OSError(errno.EDQUOT, "x"))
    for e in (errno.EACCES, errno.EIO, errno.EROFS, errno.EMFILE, errno.ENFILE, errno.EPERM, errno.ENOENT):
        assert not is_disk_full(OSError(e, "x")), errno.errorcode[e]
    assert not is_disk_full(ValueError("disk full"))
    full = sqlite3.connect(":memory:")
    full.execute("PRAGMA max_page_count=2")
    full.execute("CREATE TABLE t (x BLOB)")
    with pytest.raises(sqlite3.OperationalError) as exc:
        full.execute("INSERT INTO t VALUES (?)", (b"x" * 100_000,))
    assert is_disk_full(exc.value) and errno_name(exc.value) == "SQLITE_FULL"
    assert errno_name(OSError(errno.EROFS, "x")) == "EROFS"


def test_backoff_doubles_to_at_most_60_s() -> None:
    b = Backoff(first_s=1.0, max_s=60.0)
    delays = [b.fail(0.0) for _ in range(10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert not b.due(59.0) and b.due(60.0)
    b.reset()
    assert b.due(0.0) and b.fail(0.0) == 1
