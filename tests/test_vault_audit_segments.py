"""The bounded audit log (#14.7): segments that start with signed checkpoints, retention that drops old segments only
after their checkpoint (and says so), verification across segments that names where history starts and what is
missing, iteration from an index, and appends that never leave a partial record (short writes, ENOSPC)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.audit import AuditLog, iter_records, verify
from doorkeep.device.vault.audit_format import closed_segments

SEG = 4096


@pytest.fixture
def ident() -> DeviceIdentity:
    return DeviceIdentity.generate()


def fill(log: AuditLog, n: int) -> None:
    for i in range(n):
        log.append("event", n=i, pad="x" * 100)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_segments_start_with_checkpoints(tmp_path: Path, ident: DeviceIdentity) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG) as log:
        fill(log, 120)
        head, count = log.head(), log.count
    closed = closed_segments(path)
    assert len(closed) >= 3 and closed[0][0] == 0
    segs = [p for _, p in closed] + [path]
    for k in range(1, len(segs)):
        prev, cur = lines(segs[k - 1]), lines(segs[k])
        cp = cur[0]
        assert cp["kind"] == "checkpoint" and cp["i"] == prev[-1]["i"] + 1 == closed[k][0] if k < len(closed) else True
        assert cp["f"] == {"head": prev[-1]["hash"], "count": prev[-1]["i"] + 1, "prev_first": prev[0]["i"],
                           "prev_t": prev[-1]["t"]}
        assert segs[k - 1].stat().st_size <= SEG
    r = verify(path, ident.verify_key, expect_head=head)
    assert r.ok and r.records == count and r.segments == len(segs) and r.history == "complete", r


def test_records_from_an_index_across_segments(tmp_path: Path, ident: DeviceIdentity) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG) as log:
        fill(log, 100)
        start = closed_segments(path)[1][0] + 3  # inside the second segment
        got = [r.index for r in log.records(start)]
        assert got == list(range(start, log.count))
        assert [r.index for r in log.records(0)] == list(range(log.count))
        it = log.records(log.count - 2)
        log.append("event", n="after the call")  # a consistent snapshot: not in the iteration
        assert [r.index for r in it] == [log.count - 3, log.count - 2]
        assert [r.index for r in iter_records(path, log.count - 1)] == [log.count - 1]  # offline, no lock


def test_retention_drops_old_segments_audited(tmp_path: Path, ident: DeviceIdentity, capsys) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG, max_bytes=3 * SEG) as log:
        fill(log, 300)
        head = log.head()
        kept = closed_segments(path)
        sizes = sum(p.stat().st_size for _, p in kept) + path.stat().st_size
        assert sizes <= 3 * SEG + SEG
        assert kept[0][0] > 0
        dropped = [r for r in log.records(0) if r.kind == "audit_dropped"]
        assert dropped and dropped[-1].fields["history_starts"] <= kept[0][0]
        assert next(r.index for r in log.records(0)) == kept[0][0]  # records() starts where history starts
    r = verify(path, ident.verify_key, expect_head=head)
    assert r.ok and r.history == "dropped" and r.history_start == kept[0][0], r

    from doorkeep.tools.cli import main
    capsys.readouterr()
    assert main(["audit", "verify", "--log", str(path), "--device-key", ident.public_bytes.hex()]) == 0
    out = capsys.readouterr().out
    assert f"history starts at record {kept[0][0]}" in out and "dropped by retention" in out


def test_no_retention_without_checkpoint(tmp_path: Path, ident: DeviceIdentity) -> None:
    """A closed segment whose successor does not start with its checkpoint is never dropped."""
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG) as log:
        fill(log, 60)
    closed = closed_segments(path)
    second = closed[1][1]
    second.write_bytes(b"".join(x + b"\n" for x in second.read_bytes().splitlines()[1:]))  # checkpoint gone
    with AuditLog.open(path, ident, segment_bytes=SEG, max_bytes=SEG) as log:
        fill(log, 30)
    assert closed[0][1].exists()  # its checkpoint (in the next segment) is missing: kept


def test_missing_segments_are_named(tmp_path: Path, ident: DeviceIdentity) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG) as log:
        fill(log, 120)
    closed = closed_segments(path)
    closed[1][1].unlink()  # a middle segment deleted by hand
    r = verify(path, ident.verify_key)
    assert (r.ok, r.reason, r.first_bad) == (False, "missing_segment", closed[1][0]), r
    closed[0][1].unlink()  # and the oldest: now history starts at a checkpoint no audited drop explains
    r = verify(path, ident.verify_key)
    assert (r.ok, r.reason, r.history_start) == (False, "missing_history", closed[2][0]), r


def test_checkpoint_cannot_be_forged_to_hide_history(tmp_path: Path, ident: DeviceIdentity) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG, max_bytes=2 * SEG) as log:
        fill(log, 150)
    seg = closed_segments(path)[0][1]
    recs = seg.read_bytes().splitlines()
    cp = json.loads(recs[0])
    cp["f"]["count"] += 1  # a checkpoint whose fields lie
    seg.write_bytes(b"\n".join([json.dumps(cp).encode(), *recs[1:]]) + b"\n")
    r = verify(path, ident.verify_key)
    assert not r.ok and r.reason in {"no_checkpoint", "hash"}, r



@pytest.mark.parametrize("lie", ["head", "count"])
def test_a_device_signed_checkpoint_that_misstates_the_chain_is_refused(tmp_path: Path, ident: DeviceIdentity,
                                                                        monkeypatch: pytest.MonkeyPatch,
                                                                        lie: str) -> None:
    """A checkpoint hashed, chained and signed by the device itself whose head or count is not the record before it
    (a writer bug, or a device hiding history behind it) fails the audit as no_checkpoint: chain and signature
    alone do not catch it."""
    def lying_checkpoint(self: AuditLog) -> None:
        fields = {"head": self._head.hex(), "count": self._next, "prev_first": self._checkpoint_pending,
                  "prev_t": self._t_last}
        fields[lie] = bytes(32).hex() if lie == "head" else self._next + 1
        self._write("checkpoint", fields)
        self._checkpoint_pending = None

    monkeypatch.setattr(AuditLog, "_checkpoint", lying_checkpoint)
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG) as log:
        fill(log, 60)
    second = closed_segments(path)[1]
    assert lines(second[1])[0]["kind"] == "checkpoint"
    r = verify(path, ident.verify_key)
    assert (r.ok, r.reason, r.first_bad) == (False, "no_checkpoint", second[0]), r


def test_every_append_is_fsynced_before_it_returns(tmp_path: Path, ident: DeviceIdentity,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Each append (rotations included) fsyncs the active segment with the new record in it before returning: a
    record the caller was told about survives a power cut. Counted through os.fsync, the log's disk seam."""
    calls: list[tuple[int, int]] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append((fd, os.fstat(fd).st_size))
        real_fsync(fd)

    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG) as log:
        monkeypatch.setattr(os, "fsync", counting_fsync)
        for i in range(60):
            del calls[:]
            log.append("event", n=i, pad="x" * 100)
            assert (log._fd, path.stat().st_size) in calls, (i, calls)
    assert len(closed_segments(path)) >= 2  # rotations were among the appends


# ------------------------------------------------------------------------------------------------ crashes


def test_crash_between_rename_and_new_segment(tmp_path: Path, ident: DeviceIdentity) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG) as log:
        fill(log, 5)
        head = log.head()
    os.replace(path, path.with_name("audit.log.000000000000"))  # rotation interrupted right after the rename
    with AuditLog.open(path, ident, segment_bytes=SEG) as log:
        assert lines(path)[0]["kind"] == "checkpoint" and lines(path)[0]["f"]["head"] == head
        log.append("boot")
    assert verify(path, ident.verify_key, expect_head=head).ok


def test_torn_checkpoint_is_repaired(tmp_path: Path, ident: DeviceIdentity) -> None:
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=SEG) as log:
        fill(log, 5)
    os.replace(path, path.with_name("audit.log.000000000000"))
    path.write_bytes(b'{"f":{"count":5,"he')  # the checkpoint itself torn by the crash
    AuditLog.open(path, ident, segment_bytes=SEG).close()
    kinds = [x["kind"] for x in lines(path)]
    assert kinds == ["checkpoint", "audit_repair"]
    assert verify(path, ident.verify_key).ok


def test_damaged_tail_is_kept_not_cut(tmp_path: Path, ident: DeviceIdentity) -> None:
    """A complete last line that does not parse is not a crash artifact: it is kept (evidence) in a closed
    segment, the chain continues in a new one, and verify reports the damage honestly."""
    path = tmp_path / "audit.log"
    with AuditLog.open(path, ident, segment_bytes=1 << 20) as log:
        fill(log, 6)
    data = path.read_bytes()
    garbage = b"#" * (len(data.splitlines()[-1]))
    damaged = data[: data.rstrip(b"\n").rfind(b"\n") + 1] + garbage + b"\n"
    path.write_bytes(damaged)
    with AuditLog.open(path, ident, segment_bytes=1 << 20) as log:
        log.append("boot")
    ((_, kept),) = closed_segments(path)
    assert kept.read_bytes() == damaged  # nothing destroyed
    assert [x["kind"] for x in lines(path)][:2] == ["checkpoint", "audit_repair"]
    r = verify(path, ident.verify_key)
    assert (r.ok, r.reason, r.first_bad) == (False, "malformed", 5), r


# ------------------------------------------------------------------------------------------ short writes


def test_short_write_is_completed(tmp_path: Path, ident: DeviceIdentity, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog.open(path, ident)
    log.append("boot")
    real = os.write
    calls = []

    def short(fd: int, data) -> int:  # the kernel may write less than asked (signals, pipes, full disks)
        calls.append(len(data))
        return real(fd, bytes(data)[: max(1, len(data) // 3)])

    monkeypatch.setattr(os, "write", short)
    rec = log.append("event", n=1)
    monkeypatch.setattr(os, "write", real)
    assert len(calls) > 1 and log.head() == rec.hash
    log.append("event", n=2)
    log.close()
    assert verify(path, ident.verify_key, expect_head=rec.hash).ok


def test_failed_append_is_cut_back(tmp_path: Path, ident: DeviceIdentity, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog.open(path, ident)
    good = log.append("boot")
    size = path.stat().st_size
    real = os.write
    state = {"n": 0}

    def half_then_enospc(fd: int, data) -> int:
        state["n"] += 1
        if state["n"] == 1:
            return real(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_enospc)
    with pytest.raises(OSError) as ei:
        log.append("event", n=1, pad="y" * 500)
    monkeypatch.setattr(os, "write", real)
    assert ei.value.errno == errno.ENOSPC
    assert path.stat().st_size == size and log.head() == good.hash  # no partial record, head unchanged
    nxt = log.append("event", n=2)
    assert nxt.index == good.index + 1 and nxt.prev == good.hash
    log.close()
    assert verify(path, ident.verify_key).ok


def test_enospc_on_a_full_tmpfs(small_tmpfs, ident: DeviceIdentity) -> None:
    path = small_tmpfs(64) / "audit.log"
    log = AuditLog.open(path, ident)
    good = log.append("boot", pad="z" * 1000)  # the file's last page is partly free
    filler = path.parent / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    size = path.stat().st_size
    with pytest.raises(OSError) as ei:
        log.append("event", pad="w" * 20_000)  # fits partly in the last page, then the disk is full
    assert ei.value.errno == errno.ENOSPC
    assert path.stat().st_size == size and log.head() == good.hash
    filler.unlink()
    log.append("event", n="after")
    log.close()
    r = verify(path, ident.verify_key)
    assert r.ok and r.records == 2, r


@pytest.mark.parametrize("wipe", [False, True])
def test_factory_reset_keeps_or_shreds_every_segment(tmp_path: Path, wipe: bool) -> None:
    from doorkeep.provisioning.reset import factory_reset

    state = tmp_path / "state"
    ident = DeviceIdentity.load_or_create(state)
    log = AuditLog.open(state / "audit.log", ident, segment_bytes=SEG)
    fill(log, 80)
    assert len(closed_segments(state / "audit.log")) >= 2
    report = factory_reset(state, identity=ident, audit=log, wipe_audit=wipe)
    log.close()
    assert not (state / "audit.log").exists() and closed_segments(state / "audit.log") == []
    if wipe:
        assert report.audit_kept_as is None and not list(state.glob("audit*"))
    else:  # the archive is still one verifiable log, its last record the reset itself
        archived = state / str(report.audit_kept_as)
        r = verify(archived, ident.verify_key)
        assert r.ok and r.segments >= 3, r
        assert lines(archived)[-1]["kind"] == "factory_reset"
