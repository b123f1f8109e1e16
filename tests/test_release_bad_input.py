"""Bad input and ordinary faults in the release commands end in one `doorkeep:` line, with nothing spent, half
written or wrongly audited (#14.15, #11.6).

Before: `export`/`decrypt` with a missing file or a directory ended in a traceback; `export GRANT --out DIR` spent
the grant, audited an `export` that never happened and left the whole bundle as a hidden temp file; an export onto
a full disk did the same with a byte count for a bundle that does not exist; `view`/`decrypt --out` onto a full
disk left a truncated MP4 under the final name; decrypted MP4s were created 0644; a read-only state directory made
`export` and `factory-reset` end in a traceback."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from doorkeep.device.vault.grants import issue_grant
from doorkeep.device.vault.keys import MIN
from doorkeep.tools.cli import main
from vault_support import Device, make_device, make_packets, sealed_keys, write_clip


def one_line(err: str) -> str:
    assert err.startswith("doorkeep: ") and err.count("\n") == 1, err
    return err


def records(dev: Device) -> list[str]:
    return [json.loads(line)["kind"] for line in (dev.state / "audit.log").read_text().splitlines()]


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Device:
    monkeypatch.setenv("DOORKEEP_PASSPHRASE", "pw")
    d = make_device(tmp_path)
    write_clip(d, "c1", make_packets(60))  # ~100 KB: more than the small disks below hold
    d.vault.close()
    d.owner.save(tmp_path / "owner.key", b"pw", limits=MIN)
    d.recipient.save(tmp_path / "rec.key", b"pw", limits=MIN)
    (tmp_path / "owner.pub").write_bytes(d.owner.public.to_bytes())
    grant = issue_grant(d.owner, device_id=d.identity.device_id, sealed_keys=sealed_keys(d, "c1"),
                        recipient=d.recipient.public, recipient_name="Det. Y", purpose="case 17", requester="PD")
    (tmp_path / "g.json").write_bytes(grant.to_bytes())
    return d


def export(dev: Device, out: Path, grant: Path | None = None) -> int:
    return main(["export", str(grant or dev.state.parent / "g.json"), "--out", str(out),
                 "--state-dir", str(dev.state)])


def unspent(dev: Device) -> bool:
    used = dev.state / "grants.used"
    return not used.exists() or used.read_text().strip() == ""


# ------------------------------------------------------------------------------------------------ export

def test_export_of_a_missing_or_directory_grant(dev, tmp_path, capsys) -> None:
    for bad in (tmp_path / "nope.json", tmp_path):
        assert export(dev, tmp_path / "b.bundle", grant=bad) == 1
        assert str(bad) in one_line(capsys.readouterr().err)
    assert unspent(dev) and not (tmp_path / "b.bundle").exists()


def test_export_to_a_directory_is_refused_before_the_grant_is_spent(dev, tmp_path, capsys) -> None:
    out = tmp_path / "bundles"
    out.mkdir()
    before = records(dev)
    assert export(dev, out) == 1
    assert "is a directory" in one_line(capsys.readouterr().err)
    assert unspent(dev) and list(out.iterdir()) == []
    assert "export" not in records(dev)[len(before):] and "grant_accepted" not in records(dev)[len(before):]
    assert export(dev, out / "b.bundle") == 0  # the grant is still good


def test_export_onto_a_full_disk_spends_nothing_and_leaves_nothing(dev, tmp_path, capsys, small_tmpfs) -> None:
    full = small_tmpfs(32)
    before = records(dev)
    assert export(dev, full / "b.bundle") == 1
    assert "No space left on device" in one_line(capsys.readouterr().err)
    assert unspent(dev) and list(full.iterdir()) == []
    new = records(dev)[len(before):]
    assert "export" not in new and "grant_accepted" not in new and "export_failed" in new
    failed = [json.loads(line)["f"] for line in (dev.state / "audit.log").read_text().splitlines()
              if json.loads(line)["kind"] == "export_failed"][-1]
    assert failed["spent"] is False
    assert export(dev, tmp_path / "b.bundle") == 0


# ------------------------------------------------------------------------------------------------ decrypt / view

def test_decrypt_of_a_missing_or_directory_bundle_before_the_passphrase(dev, tmp_path, capsys,
                                                                       monkeypatch) -> None:
    monkeypatch.delenv("DOORKEEP_PASSPHRASE")  # a prompt would fail the test: it must not get that far
    for bad in (tmp_path / "nope.bundle", tmp_path):
        assert main(["decrypt", str(bad), "--key", str(tmp_path / "rec.key"), "--out", str(tmp_path / "o")]) == 1
        assert str(bad) in one_line(capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_decrypt_out_must_be_a_directory(dev, tmp_path, capsys) -> None:
    assert export(dev, tmp_path / "b.bundle") == 0
    (tmp_path / "file").write_text("x")
    assert main(["decrypt", str(tmp_path / "b.bundle"), "--key", str(tmp_path / "rec.key"), "--out",
                 str(tmp_path / "file"), "--owner", str(tmp_path / "owner.pub")]) == 1
    assert "file" in one_line(capsys.readouterr().err)


def test_decrypted_mp4s_are_private_and_a_full_disk_leaves_none(dev, tmp_path, capsys, small_tmpfs) -> None:
    assert export(dev, tmp_path / "b.bundle") == 0
    args = ["decrypt", str(tmp_path / "b.bundle"), "--key", str(tmp_path / "rec.key"),
            "--owner", str(tmp_path / "owner.pub"), "--out"]
    full = small_tmpfs(32)
    capsys.readouterr()
    assert main([*args, str(full)]) == 1
    assert "No space left on device" in one_line(capsys.readouterr().err)
    assert list(full.iterdir()) == []  # neither a truncated MP4 under its name nor a temporary file
    assert main([*args, str(tmp_path / "mp4")]) == 0
    (mp4,) = (tmp_path / "mp4").iterdir()
    assert stat.S_IMODE(mp4.stat().st_mode) == 0o600


def test_view_onto_a_full_disk_leaves_nothing_and_writes_0600(dev, tmp_path, capsys, small_tmpfs) -> None:
    view = ["view", "c1", "--key", str(tmp_path / "owner.key"), "--state-dir", str(dev.state), "--out"]
    full = small_tmpfs(32)
    assert main([*view, str(full / "c1.mp4")]) == 1
    assert "No space left on device" in one_line(capsys.readouterr().err)
    assert list(full.iterdir()) == []
    assert main([*view, str(tmp_path / "c1.mp4")]) == 0
    assert stat.S_IMODE((tmp_path / "c1.mp4").stat().st_mode) == 0o600


# ------------------------------------------------------------------------------------------------ read-only state

@pytest.fixture
def read_only_state(dev: Device, small_tmpfs: Callable[[int], Path]) -> Device:
    """The device's state directory on a file system mounted read-only (a full or failing SD card)."""
    ro = small_tmpfs(4096)
    shutil.copytree(dev.state, ro / "state")
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    return Device(ro / "state", dev.identity, dev.owner, dev.recipient, dev.vault)


def test_export_and_factory_reset_on_a_read_only_state_dir(read_only_state, tmp_path, capsys) -> None:
    dev = read_only_state
    before = sorted(p.name for p in dev.state.iterdir())
    assert export(dev, tmp_path / "b.bundle", grant=tmp_path / "g.json") == 1
    assert "Read-only file system" in one_line(capsys.readouterr().err)
    assert main(["factory-reset", "--yes-destroy-everything", "--state-dir", str(dev.state)]) == 1
    assert "Read-only file system" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in dev.state.iterdir()) == before and not (tmp_path / "b.bundle").exists()


# ------------------------------------------------------------------------------------------------ arguments first

def test_export_checks_its_arguments_before_it_opens_the_vault(dev, tmp_path, capsys) -> None:
    """Before: `--out DIR` and `--out /missing/dir/b` wrote a `boot` record to the audit log before refusing, and a
    mistyped `--state-dir` got a brand-new device identity, vault and audit log of its own."""
    log = (dev.state / "audit.log").read_bytes()
    (tmp_path / "outdir").mkdir()
    for out in (tmp_path / "outdir", tmp_path / "missing" / "b.bundle"):
        assert export(dev, out) == 1
        assert str(out) in one_line(capsys.readouterr().err)
    assert (dev.state / "audit.log").read_bytes() == log and unspent(dev)
    typo = tmp_path / "stat"
    assert main(["export", str(tmp_path / "g.json"), "--out", str(tmp_path / "b.bundle"),
                 "--state-dir", str(typo)]) == 1
    assert "no device at" in one_line(capsys.readouterr().err)
    assert not typo.exists() and not (tmp_path / "b.bundle").exists()


@pytest.fixture
def no_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """No $DOORKEEP_PASSPHRASE and no terminal (a script, cron, CI): a prompt cannot be answered."""
    monkeypatch.delenv("DOORKEEP_PASSPHRASE", raising=False)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))


def test_no_terminal_to_ask_for_the_passphrase_on(dev, tmp_path, capsys, no_passphrase) -> None:
    """Before: getpass fell back to reading stdin and ended in an EOFError traceback ("internal error")."""
    view = ["view", "c1", "--key", str(tmp_path / "owner.key"), "--state-dir", str(dev.state), "--out",
            str(tmp_path / "c1.mp4")]
    assert main(view) == 1
    assert "--passphrase-file" in one_line(capsys.readouterr().err)
    assert main([*view, "--passphrase-file", str(tmp_path / "nope")]) == 1
    assert "passphrase file" in one_line(capsys.readouterr().err)
    (tmp_path / "pw").write_text("pw\n")
    assert main([*view, "--passphrase-file", str(tmp_path / "pw")]) == 0


def test_a_wrong_key_file_is_refused_before_the_passphrase_prompt(dev, tmp_path, capsys, no_passphrase) -> None:
    assert export(dev, tmp_path / "b.bundle") == 0
    for key, says in ((tmp_path / "owner.key", "is an owner key, expected recipient"),
                      (tmp_path / "nope.key", "cannot read secret key")):
        assert main(["decrypt", str(tmp_path / "b.bundle"), "--key", str(key), "--out", str(tmp_path / "o"),
                     "--owner", str(tmp_path / "owner.pub")]) == 1
        assert says in one_line(capsys.readouterr().err)


@pytest.mark.parametrize(("extra", "says"), [(["--send", "localhost:99999", "--device", "dk-x"], "port"),
                                             (["--send", "localhost", "--device", "a/b"], "device id"),
                                             (["--send", "localhost", "--device", "dk-x", "--ack-timeout", "-1"],
                                              "--ack-timeout"),
                                             (["--send", "localhost", "--device", "dk-x", "--ack-timeout", "nan"],
                                              "--ack-timeout")])
def test_request_send_arguments_are_checked_before_the_passphrase(dev, tmp_path, capsys, no_passphrase, extra,
                                                                  says) -> None:
    """Before: `--send HOST:99999` ended in an ArgumentTypeError traceback after the request was signed."""
    assert main(["request", "--key", str(tmp_path / "rec.key"), "--requester", "PD", "--incident", "i",
                 "--purpose", "p", "--from", "0", "--to", "1", *extra]) == 1
    assert says in one_line(capsys.readouterr().err)


def test_grant_prints_the_recipient_name_inert(dev, tmp_path, capsys) -> None:
    assert main(["grant", "--key", str(tmp_path / "owner.key"), "--recipient", str(tmp_path / "owner.pub"),
                 "--recipient-name", "x", "--purpose", "p", "--requester", "PD", "--clip", "c1",
                 "--out", str(tmp_path / "g2.json"), "--state-dir", str(dev.state)]) == 1
    assert "is an owner key, expected recipient" in one_line(capsys.readouterr().err)
    (tmp_path / "rec.pub").write_bytes(dev.recipient.public.to_bytes())
    assert main(["grant", "--key", str(tmp_path / "owner.key"), "--recipient", str(tmp_path / "rec.pub"),
                 "--recipient-name", "Det. \x1b[2J\x07Y", "--purpose", "p", "--requester", "PD", "--clip", "c1",
                 "--out", str(tmp_path / "g2.json"), "--state-dir", str(dev.state)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "Det." in out


@pytest.mark.parametrize("key", ["zz", "abcd", "state/device.key"])
def test_audit_verify_with_a_bad_device_key(dev, tmp_path, capsys, monkeypatch, key) -> None:
    """Before: `--device-key zz` ended in a ValueError traceback, and the secret device.key was not told apart."""
    monkeypatch.chdir(tmp_path)
    assert main(["audit", "verify", "--state-dir", str(dev.state), "--device-key", key]) == 1
    assert "--device-key" in one_line(capsys.readouterr().err)
    assert main(["audit", "verify", "--state-dir", str(dev.state), "--device-key",
                 dev.identity.public_bytes.hex()]) == 0


def test_a_damaged_bundle_is_refused_in_one_doorkeep_line(dev, tmp_path, capsys) -> None:
    assert export(dev, tmp_path / "b.bundle") == 0
    data = (tmp_path / "b.bundle").read_bytes()
    (tmp_path / "cut.bundle").write_bytes(data[:500])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1
    (tmp_path / "flip.bundle").write_bytes(bytes(flipped))
    capsys.readouterr()
    for bad in ("cut.bundle", "flip.bundle", "g.json"):
        assert main(["decrypt", str(tmp_path / bad), "--key", str(tmp_path / "rec.key"), "--owner",
                     str(tmp_path / "owner.pub"), "--out", str(tmp_path / "o")]) == 1
        assert one_line(capsys.readouterr().err).startswith("doorkeep: bundle REFUSED: ")
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_view_refuses_a_wrong_clip_or_output_before_the_passphrase(dev, tmp_path, capsys, no_passphrase) -> None:
    """Before: a mistyped clip id or --out directory was reported only after the passphrase prompt."""
    (tmp_path / "outdir").mkdir()
    for clip, out, says in (("nope", tmp_path / "x.mp4", "nope"), ("c1", tmp_path / "outdir", "is a directory"),
                            ("c1", tmp_path / "missing" / "c1.mp4", "no directory")):
        assert main(["view", clip, "--key", str(tmp_path / "owner.key"), "--state-dir", str(dev.state),
                     "--out", str(out)]) == 1
        assert says in one_line(capsys.readouterr().err)
    assert list((tmp_path / "outdir").iterdir()) == []


def test_grant_and_request_refuse_a_directory_as_output_before_the_passphrase(dev, tmp_path, capsys,
                                                                              no_passphrase) -> None:
    (tmp_path / "outdir").mkdir()
    (tmp_path / "rec.pub").write_bytes(dev.recipient.public.to_bytes())
    for argv in (["grant", "--key", str(tmp_path / "owner.key"), "--recipient", str(tmp_path / "rec.pub"),
                  "--recipient-name", "x", "--purpose", "p", "--requester", "PD", "--clip", "c1",
                  "--state-dir", str(dev.state)],
                 ["request", "--key", str(tmp_path / "rec.key"), "--requester", "PD", "--incident", "i",
                  "--purpose", "p", "--from", "0", "--to", "1"]):
        assert main([*argv, "--out", str(tmp_path / "outdir")]) == 1
        assert "is a directory" in one_line(capsys.readouterr().err)
