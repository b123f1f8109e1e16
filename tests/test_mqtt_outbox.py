"""The durable outbox on its own: ordered, durable across reopen, bounded with drop-oldest, WAL + FULL sync."""

from __future__ import annotations

import pytest
from doorkeep.device.publish.outbox import Outbox, OutMessage


def msgs(*names: str) -> list[OutMessage]:
    return [OutMessage(f"t/{n}", n.encode()) for n in names]


def test_order_ack_and_survives_reopen(tmp_path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path) as box:
        box.put(msgs("a", "b"))
        box.put(msgs("c"))
        rows = box.peek(limit=10)
        assert [r.message.payload for r in rows] == [b"a", b"b", b"c"]
        box.ack(rows[0].seq)
        box.ack(rows[0].seq)  # idempotent
        assert [r.message.payload for r in box.peek(after=rows[1].seq)] == [b"c"]
    with Outbox(path) as box:  # a restarted device sees what was not acknowledged
        assert [r.message.payload for r in box.peek(limit=10)] == [b"b", b"c"]
        assert len(box) == 2


def test_wal_and_full_sync(tmp_path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        assert box._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert oct((tmp_path / "o.sqlite3").stat().st_mode & 0o777) == "0o600"


def test_full_drops_oldest_and_counts(tmp_path) -> None:
    path = tmp_path / "o.sqlite3"
    with Outbox(path, max_rows=5) as box:
        for i in range(8):
            box.put(msgs(str(i)))
        assert [r.message.payload for r in box.peek(limit=10)] == [b"3", b"4", b"5", b"6", b"7"]
        assert box.dropped == 3
    with Outbox(path, max_rows=5) as box:
        assert box.dropped == 3  # persistent


def test_put_is_atomic(tmp_path) -> None:
    with Outbox(tmp_path / "o.sqlite3") as box:
        with pytest.raises(TypeError):
            box.put([OutMessage("t/ok", b"1"), OutMessage("t/bad", None)])  # type: ignore[arg-type]
        assert len(box) == 0


def test_not_an_outbox_is_moved_aside(tmp_path) -> None:
    bad = tmp_path / "o.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with Outbox(bad) as box:  # damage never keeps the device from starting (#11.5, test_ux_outbox_damage.py)
        assert len(box.resets) == 1 and len(box) == 0
