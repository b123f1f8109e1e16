"""`doorkeep export` beside the service, and the used-grant set shared by every process (#14.11).

Before: export took no state lock, so beside the running service the audit chain forked, and two open vaults each
accepted the same grant once (each kept its own in-memory copy of ``grants.used``); a torn last line in
``grants.used`` swallowed the next id."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from doorkeep.device.config import Config
from doorkeep.device.errors import ReleaseError
from doorkeep.device.vault import grants as grants_mod
from doorkeep.device.vault.audit import verify
from doorkeep.device.vault.grants import ReplaySet, issue_grant
from doorkeep.device.vault.vault import build_vault
from doorkeep.provisioning.state_lock import StateLock
from doorkeep.tools.cli import main
from vault_support import Device, make_device, make_packets, sealed_keys, write_clip


@pytest.fixture
def dev(tmp_path: Path) -> Device:
    d = make_device(tmp_path)
    write_clip(d, "c1", make_packets(8))
    d.vault.close()
    return d


def grant_file(dev: Device, path: Path) -> str:
    g = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "c1"),
                    recipient=dev.recipient.public, recipient_name="Det. Y", purpose="case 17", requester="PD")
    path.write_bytes(g.to_bytes())
    return g.grant_id


def kinds(dev: Device) -> list[str]:
    return [json.loads(line)["kind"] for line in (dev.state / "audit.log").read_text().splitlines()]


def test_export_beside_the_running_service_is_refused_in_one_line(dev, tmp_path, capsys):
    grant_file(dev, tmp_path / "g.json")
    before = (dev.state / "audit.log").read_bytes()
    with StateLock(dev.state, holder="doorkeep run"):
        rc = main(["export", str(tmp_path / "g.json"), "--out", str(tmp_path / "b.bundle"),
                   "--state-dir", str(dev.state)])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and err.startswith("doorkeep: "), err
    assert "doorkeep run" in err and "systemctl stop doorkeep" in err
    assert (dev.state / "audit.log").read_bytes() == before  # the service's chain is untouched
    assert not (dev.state / "grants.used").exists() and not (tmp_path / "b.bundle").exists()
    # with the service stopped the same grant exports
    assert main(["export", str(tmp_path / "g.json"), "--out", str(tmp_path / "b.bundle"),
                 "--state-dir", str(dev.state)]) == 0


def test_two_open_vaults_accept_a_grant_only_once(dev, tmp_path):
    cfg = Config.from_dict({"device": {"state_dir": str(dev.state)}})
    one, two = build_vault(cfg, dev.identity), build_vault(cfg, dev.identity)  # both read grants.used now
    grant_file(dev, tmp_path / "g.json")
    data = (tmp_path / "g.json").read_bytes()
    try:
        one.export_to_file(data, tmp_path / "one.bundle")
        with pytest.raises(ReleaseError) as exc:
            two.export_to_file(data, tmp_path / "two.bundle")
    finally:
        one.close()
        two.close()
    assert exc.value.reason == "replayed" and not (tmp_path / "two.bundle").exists()


def test_two_export_processes_racing_release_once(dev, tmp_path):
    gid = grant_file(dev, tmp_path / "g.json")
    cmd = [sys.executable, "-m", "doorkeep.tools.cli", "export", str(tmp_path / "g.json"),
           "--state-dir", str(dev.state), "--out"]
    procs = [subprocess.Popen([*cmd, str(tmp_path / f"{i}.bundle")], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    results = [(p.wait(120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert sorted(rc for rc, _ in results) == [0, 1], results
    (loser,) = [err for rc, err in results if rc]
    assert loser.startswith("doorkeep: ") and ("in use by doorkeep export" in loser or "replayed" in loser), loser
    assert (dev.state / "grants.used").read_text().split() == [gid]
    assert len([b for b in tmp_path.glob("*.bundle")]) == 1
    assert kinds(dev).count("grant_accepted") == 1 and kinds(dev).count("export") == 1
    assert verify(dev.state / "audit.log", dev.identity.public_bytes).ok


def test_a_torn_tail_does_not_swallow_the_next_id(tmp_path):
    path = tmp_path / "grants.used"
    first, torn, nxt = "a" * 32, "0123456789abcdef0123", "b" * 32
    path.write_bytes(f"{first}\n{torn}".encode())  # power cut in the middle of an append
    replay = ReplaySet(path)
    assert first in replay and torn not in replay
    replay.add(nxt)
    assert nxt in ReplaySet(path)
    with pytest.raises(ReleaseError, match="replayed"):
        ReplaySet(path).add(nxt)
    assert path.read_text().splitlines() == [first, torn, nxt]


def test_add_holds_a_lock_on_the_file_and_fsyncs_the_directory(tmp_path, monkeypatch):
    synced: list[str] = []
    monkeypatch.setattr(grants_mod, "fsync_dir", lambda p: synced.append(str(p)))
    path = tmp_path / "grants.used"
    path.touch()
    fd = os.open(path, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process in the middle of its add()
    done = threading.Event()
    t = threading.Thread(target=lambda: (ReplaySet(path).add("c" * 32), done.set()), daemon=True)
    t.start()
    try:
        assert not done.wait(0.5), "add() went ahead while another process held grants.used"
    finally:
        os.close(fd)
    assert done.wait(10)
    assert synced == [str(tmp_path)] and path.read_text() == "c" * 32 + "\n"
