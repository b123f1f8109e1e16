"""#14.2 — a full disk never stops capture or events, on a real small tmpfs: the audit log gets the space reserve,
retention frees clips on its own thread and recording resumes by itself; the outbox keeps delivering from memory
while SQLite says "database or disk is full" and goes back to disk once there is room; its sender never dies."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from doorkeep.device.config import MqttSection
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.preroll import PacketRing
from doorkeep.device.publish.payload import verify as verify_event
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.vault.audit import verify
from fixtures_broker import Subscriber
from vault_faults import fake_packets, fill
from vault_support import make_device, records, wait_until, write_clip

pytestmark = pytest.mark.slow





def test_a_full_card_recovers_by_itself(small_tmpfs: Callable[[int], Path]) -> None:
    """The card is full to the last byte when a visitor comes. Today's main: the ``event`` audit append raises
    ENOSPC in Vault.on_event before the recorder opens a clip — recording stops for good. Now the audit log takes the
    space reserve, the keeper shreds the oldest clips (reason ``disk_full``) and recording resumes by itself, over
    several fill-ups; the audit chain verifies afterwards."""
    disk = small_tmpfs(6 * 1024)
    dev = make_device(disk, postroll_s=0.2, chunk_bytes=16384, reserve_mb=0.25, max_retry_s=1)
    now = time.time()
    for i in range(12):  # about 2 MiB of old footage
        write_clip(dev, f"old{i:02d}", list(fake_packets(10, size=16_000, t0=now - 3600 + i, seed=i)))
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    assert dev.vault.reserve.held
    filler = fill(disk)

    t = time.time()
    dev.vault.on_event(Event("visit", "person", "start", t, t))  # must not raise, must not stop recording
    deadline = time.monotonic() + 25
    for p in fake_packets(100_000, size=8_000, t0=t):  # ~0.8 MB/s: fills the card again and again
        ring.on_packet(p)
        time.sleep(0.01)
        if time.monotonic() > deadline or sum(r["kind"] == "clip_torn" for r in records(dev)) >= 2:
            break
    t = time.time()
    dev.vault.on_event(Event("visit", "person", "end", t, t, t))
    wait_until(lambda: dev.vault.recorder.recording is None, what="the clip to close")  # type: ignore[union-attr]
    filler.unlink()  # whatever else filled the card goes: the vault is healthy again by itself
    wait_until(lambda: dev.vault.health.ok and not dev.vault.keeper.waiting_for_space, what="the vault to recover")
    dev.vault.stop()

    kinds = [r["kind"] for r in records(dev)]
    shreds = [r for r in records(dev) if r["kind"] == "clip_shredded"]
    assert shreds and all(r["f"]["reason"] == "disk_full" for r in shreds)
    assert all(r["f"]["clip_id"].startswith("old") for r in shreds[:1])  # the oldest go first
    assert kinds.count("clip_torn") >= 2, "the card did not fill up again: recording had not resumed"
    assert "clip_written" in kinds or "clip_recovered" in kinds
    new = [c for c in dev.vault.store.clip_ids() if not c.startswith("old")]
    assert len(new) >= 2, "recording did not resume in a new clip after the full disk"
    assert all(r["f"]["errno"] == "ENOSPC" for r in records(dev) if r["kind"] == "vault_fault")
    assert verify(dev.state / "audit.log", dev.identity.verify_key).ok


def test_the_audit_log_writes_on_a_full_disk(small_tmpfs: Callable[[int], Path]) -> None:
    disk = small_tmpfs(2048)
    dev = make_device(disk, reserve_mb=0.125)
    dev.vault.start(PacketRing(seconds=0.5))
    fill(disk)
    head = dev.vault.audit_head()
    for i in range(20):
        t = time.time()
        dev.vault.on_event(Event(f"b{i}", "doorbell", "press", t, t))
    assert not dev.vault.reserve.held and dev.vault.audit_head() != head
    events = [r for r in records(dev) if r["kind"] == "event"]
    assert [r["f"]["event_id"] for r in events] == [f"b{i}" for i in range(20)]
    assert verify(dev.state / "audit.log", dev.identity.verify_key).ok
    dev.vault.close()


@pytest.mark.broker
def test_the_outbox_delivers_on_a_full_disk_and_goes_back_to_disk(small_tmpfs: Callable[[int], Path],
                                                                 mosquitto) -> None:
    """SQLite meets "database or disk is full". Today's main: ``on_event`` raises and the event is lost (and the
    sender dies on the same error). Now every event reaches the broker (held in memory meanwhile), the sender stays
    alive, and once space is back the backlog is on disk again."""
    disk = small_tmpfs(1024)
    ident = DeviceIdentity.load_or_create(disk / "id")
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port, heartbeat_s=3600, discovery=False,
                           reconnect_max_s=1)
    pub = MqttPublisher(settings, ident, state_dir=disk)
    with Subscriber(mosquitto, f"doorkeep/{ident.device_id}/event") as sub:
        pub.start()
        wait_until(lambda: pub.client.connected, what="MQTT connect")
        filler = fill(disk)
        pub.client.stop()  # offline while the disk is full: the backlog must survive in memory
        for i in range(40):
            t = time.time()
            pub.on_event(Event(f"{i:016x}", "doorbell", "press", t, t))  # never raises
        assert pub.outbox.spills > 0 and len(pub.outbox) >= 40
        pub.client.start()
        got = sub.wait_for(40, timeout=30)
        ids = [verify_event(p, ident.verify_key).event_id for _, p, _ in got]
        assert ids == [f"{i:016x}" for i in range(40)]  # all, in order
        assert pub._sender.alive
        filler.unlink()  # space is back: new events go to disk, the memory backlog is written back
        for i in range(40, 45):
            t = time.time()
            pub.on_event(Event(f"{i:016x}", "doorbell", "press", t, t))
        got += sub.wait_for(5, timeout=30)
        assert [verify_event(p, ident.verify_key).event_id for _, p, _ in got][-5:] == \
            [f"{i:016x}" for i in range(40, 45)]
        wait_until(lambda: pub.outbox.spilled == 0 and len(pub.outbox) == 0, what="the outbox to drain")
    pub.close()


class _FailingDb:
    """Wraps a sqlite3 connection: the first ``n`` SELECTs fail like a full/broken disk."""

    def __init__(self, db: sqlite3.Connection, n: int) -> None:
        self.db, self.n = db, n

    def execute(self, sql: str, *args: object) -> object:
        if sql.lstrip().startswith("SELECT seq") and self.n > 0:
            self.n -= 1
            exc = sqlite3.OperationalError("disk I/O error")
            exc.sqlite_errorcode = sqlite3.SQLITE_IOERR  # type: ignore[attr-defined]
            exc.sqlite_errorname = "SQLITE_IOERR"  # type: ignore[attr-defined]
            raise exc
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


@pytest.mark.broker
def test_the_outbox_sender_survives_sqlite_errors(tmp_path: Path, mosquitto) -> None:
    """Reading the outbox fails a few times (SQLITE_IOERR). Today's main: the sender thread dies on the first one and
    nothing is published until a restart. Now it backs off and delivers everything."""
    ident = DeviceIdentity.load_or_create(tmp_path / "id")
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port, heartbeat_s=3600, discovery=False)
    pub = MqttPublisher(settings, ident, state_dir=tmp_path)
    pub.outbox._db = _FailingDb(pub.outbox._db, 3)  # type: ignore[assignment]
    with Subscriber(mosquitto, f"doorkeep/{ident.device_id}/event") as sub:
        pub.start()
        for i in range(5):
            t = time.time()
            pub.on_event(Event(f"{i:016x}", "doorbell", "press", t, t))
        got = sub.wait_for(5, timeout=30)
        assert [json.loads(p)["i"] for _, p, _ in got] == [f"{i:016x}" for i in range(5)]
        assert pub._sender.alive and pub._sender.storage_errors == 3
    pub.close()
