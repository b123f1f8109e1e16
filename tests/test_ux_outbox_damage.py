"""#11.5: a damaged outbox database never keeps the device from starting — it is moved aside (logged, audited, the
lost messages counted) and a new one starts; a locked or otherwise unusable one is an error and left alone."""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest
from doorkeep.device import activity
from doorkeep.device.assembly import assemble
from doorkeep.device.config import Config
from doorkeep.device.errors import PublishError
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.outbox import Outbox, OutMessage
from doorkeep.device.publish.payload import verify
from doorkeep.device.publish.publisher import OUTBOX_FILE
from doorkeep.device.sources.synthetic import SyntheticSource
from fixtures_broker import Subscriber


def _filled(path, n: int = 300) -> None:
    with Outbox(path) as box:
        for i in range(n):
            box.put([OutMessage(f"t/{i}", bytes([i % 256]) * 300)])


def test_a_file_that_is_not_a_database_is_moved_aside(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger=activity.NAME)
    path = tmp_path / "outbox.sqlite3"
    junk = b"this is not sqlite" * 100
    path.write_bytes(junk)
    with Outbox(path) as box:
        assert box.resets and box.resets[0].lost is None and "SQLITE_NOTADB" in box.resets[0].reason
        assert box.resets[0].moved_to.read_bytes() == junk  # kept as evidence, never deleted
        assert box.resets[0].moved_to.name.startswith("outbox.sqlite3.corrupt-")
        box.put([OutMessage("t/a", b"a")])
        assert len(box) == 1
    (line,) = [r.getMessage() for r in caplog.records if r.name == activity.NAME]
    assert f"damaged, moved aside to {box.resets[0].moved_to.name}" in line and "unknown number of" in line
    with Outbox(path) as box:  # the new one is healthy: nothing moved again
        assert box.resets == [] and len(box) == 1


def test_damaged_pages_are_found_at_open_and_the_loss_counted(tmp_path) -> None:
    path = tmp_path / "outbox.sqlite3"
    _filled(path)
    page = 4096
    with open(path, "r+b") as f:  # a worn SD card: garbage over a few pages in the middle of the table
        f.seek(page * 6)
        f.write(b"\xa5" * page * 3)
    with Outbox(path) as box:
        assert len(box.resets) == 1
        assert box.resets[0].lost is None or 0 < box.resets[0].lost <= 300
        assert len(box) == 0


def test_damage_found_while_running_is_moved_aside_and_delivery_goes_on(tmp_path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with Outbox(path) as box:
        resets = []
        box.on_reset = resets.append
        box.put([OutMessage(f"t/{i}", b"x") for i in range(30)])
        other = sqlite3.connect(path, isolation_level=None)  # the schema page goes bad under the running device
        other.execute("PRAGMA writable_schema=ON")
        other.execute("UPDATE sqlite_schema SET sql='CREATE TABLE outbox(' WHERE name='outbox'")
        (version,) = other.execute("PRAGMA schema_version").fetchone()
        other.execute(f"PRAGMA schema_version = {version + 1}")
        other.close()
        with pytest.raises(PublishError, match="SQLITE_CORRUPT"):
            box.peek(after=0, limit=100)  # the sender sees it once (and retries) ...
        (reset,) = resets  # ... the database was moved aside and the device told
        assert reset.moved_to.exists() and "SQLITE_CORRUPT" in reset.reason
        (seq,) = box.put([OutMessage("t/next", b"y")])
        assert seq == 31  # the sequence continues: the sender asks for rows after the last one it sent
        assert [r.message.topic for r in box.peek(after=30, limit=10)] == ["t/next"]


def test_a_locked_database_is_an_error_and_left_where_it_is(tmp_path) -> None:
    path = tmp_path / "outbox.sqlite3"
    _filled(path, 3)
    other = sqlite3.connect(path, timeout=0.1)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the write lock: not damage
    try:
        with pytest.raises(PublishError, match="locked"):
            Outbox(path)
    finally:
        other.rollback()
        other.close()
    assert [p.name for p in tmp_path.iterdir() if "corrupt" in p.name] == []
    with Outbox(path) as box:
        assert box.resets == [] and len(box) == 3


def test_the_device_starts_with_a_damaged_outbox_audits_it_and_delivers(tmp_path, mosquitto, model_path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / OUTBOX_FILE).write_bytes(b"\x00garbage" * 512)
    cfg = Config.from_dict({"device": {"state_dir": str(state)},
                            "capture": {"main_width": 320, "main_height": 240},
                            "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "discovery": False}})
    ident = DeviceIdentity.load_or_create(state)
    device = assemble(cfg, identity=ident, source=SyntheticSource(width=320, height=240, realtime=True),
                      status_file=False)
    with Subscriber(mosquitto, f"doorkeep/{ident.device_id}/event") as sub, device:
        device.publisher.client.wait_connected(30)
        device.button.press()
        (_topic, payload, _retain) = sub.get(timeout=30)  # delivery works with the new outbox
        assert verify(payload, ident.public_bytes).kind == "doorbell"
    recs = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    (reset,) = [r["f"] for r in recs if r["kind"] == "outbox_reset"]
    assert reset["moved_to"].startswith("outbox.sqlite3.corrupt-") and reset["lost"] is None
    assert (state / reset["moved_to"]).exists()
