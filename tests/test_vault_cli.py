"""The vault CLI for every role, in process: keygen, pin, clips, grant (by time window), export, decrypt, view,
request, audit verify."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.clips import decrypt_clip, open_clip_key, parse_header
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.device.vault.vault import build_vault
from doorkeep.tools.cli import main
from doorkeep.tools.vault_mp4 import decode_mp4
from vault_support import decode_packets, make_packets


def run(*argv: object) -> int:
    return main([str(a) for a in argv])


def test_cli_owner_grant_export_decrypt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DOORKEEP_PASSPHRASE", "owner pass")
    pw = tmp_path / "rpass"
    pw.write_text("recipient pass\n")
    state = tmp_path / "state"
    ok, rk = tmp_path / "owner.key", tmp_path / "police.key"
    assert run("owner", "keygen", "--out", ok, "--kdf", "min") == 0
    assert run("recipient", "keygen", "--out", rk, "--kdf", "min", "--passphrase-file", pw) == 0
    assert run("owner", "pin", tmp_path / "owner.key.pub", "--state-dir", state) == 0

    # the device records one clip
    from doorkeep.device.events import Event
    from doorkeep.device.preroll import PacketRing
    ident = DeviceIdentity.load_or_create(state)
    vault = build_vault(Config.from_dict({"device": {"state_dir": str(state)}, "vault": {"postroll_s": 0.3}}), ident)
    ring = PacketRing(seconds=0.5)
    vault.start(ring)
    packets = make_packets(30)
    for i, p in enumerate(packets):
        if i == 8:
            vault.on_event(Event("e1", "person", "start", p.t_wall, p.t_wall))
        if i == 15:
            vault.on_event(Event("e1", "person", "end", p.t_wall, p.t_wall, p.t_wall, mono_end=p.t_capture))
        ring.on_packet(p)
    vault.close()

    capsys.readouterr()
    assert run("clips", "--state-dir", state, "--json") == 0
    (m,) = json.loads(capsys.readouterr().out)
    assert m["event_ids"] == ["e1"]

    # requester asks; owner grants the window; device exports; recipient decrypts
    req = tmp_path / "req.json"
    assert run("request", "--key", rk, "--passphrase-file", pw, "--requester", "PD", "--incident", "42",
               "--purpose", "burglary", "--from", time.time() - 60, "--to", time.time() + 60, "--out", req) == 0
    grant = tmp_path / "grant.json"
    assert run("grant", "--key", ok, "--state-dir", state, "--recipient", tmp_path / "police.key.pub",
               "--recipient-name", "Det. Y", "--purpose", "burglary", "--requester", "PD",
               "--from", time.time() - 60, "--to", time.time() + 60, "--out", grant) == 0
    bundle = tmp_path / "b.bundle"
    assert run("export", grant, "--out", bundle, "--state-dir", state) == 0
    assert run("export", grant, "--out", tmp_path / "again.bundle", "--state-dir", state) == 1  # replay refused
    assert not (tmp_path / "again.bundle").exists()
    capsys.readouterr()
    out = tmp_path / "mp4"
    assert run("decrypt", bundle, "--key", rk, "--passphrase-file", pw, "--owner", tmp_path / "owner.key.pub",
               "--out", out, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["purpose"] == "burglary"
    (clip,) = report["clips"]
    data = (state / "vault" / f"{clip['clip_id']}.clip").read_bytes()
    owner = SecretKeys.load(ok, b"owner pass")
    recorded = decrypt_clip(data, open_clip_key(parse_header(data), owner))[1]
    got, want = decode_mp4(clip["mp4"]), decode_packets(recorded)
    assert len(got) == len(want) and all((a == b).all() for a, b in zip(got, want, strict=True))

    # a recipient with another key is refused, with the reason
    other = tmp_path / "other.key"
    assert run("recipient", "keygen", "--out", other, "--kdf", "min", "--passphrase-file", pw) == 0
    capsys.readouterr()
    assert run("decrypt", bundle, "--key", other, "--passphrase-file", pw, "--json") == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "wrong_recipient"

    # owner views locally; audit verifies; a tampered log names its first bad record
    assert run("view", clip["clip_id"], "--key", ok, "--state-dir", state, "--out", tmp_path / "v.mp4") == 0
    assert len(decode_mp4(tmp_path / "v.mp4")) == len(want)
    capsys.readouterr()
    assert run("audit", "verify", "--state-dir", state, "--json") == 0
    head = json.loads(capsys.readouterr().out)["head"]
    log = state / "audit.log"
    lines = log.read_text().splitlines()
    log.write_text("\n".join(lines[:-1]) + "\n")
    assert run("audit", "verify", "--state-dir", state, "--expect-head", head) == 1
    assert "truncated" in capsys.readouterr().out
