"""`doorkeep decrypt` says VERIFIED only for an owner the recipient knows (#14.8).

Before: without ``--owner`` the grant was checked against the owner key carried in the bundle itself, so a bundle
fabricated from a fresh device key and a fresh owner key printed VERIFIED. Now the owner (and so the device) is
verified only by an owner key given out of band (``--owner``) or pinned by the recipient (``doorkeep recipient
trust``); otherwise the report says so and the command exits 1 without writing footage, unless
``--allow-unverified-owner``. ``--expect-device ID`` checks the device id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from doorkeep.device.vault.grants import issue_grant
from doorkeep.device.vault.keys import MIN, SecretKeys
from doorkeep.tools.cli import main
from vault_support import Device, make_device, make_packets, sealed_keys, write_clip


@pytest.fixture
def fabricated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Device, Path]:
    """A bundle from a brand-new device key and a brand-new owner key (anyone can make one), for our recipient."""
    monkeypatch.setenv("DOORKEEP_PASSPHRASE", "rec pass")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    dev = make_device(tmp_path)
    write_clip(dev, "c1", make_packets(8))
    dev.recipient.save(tmp_path / "rec.key", b"rec pass", limits=MIN)
    (tmp_path / "fake-owner.pub").write_bytes(dev.owner.public.to_bytes())
    (tmp_path / "real-owner.pub").write_bytes(SecretKeys.generate("owner").public.to_bytes())
    grant = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "c1"),
                        recipient=dev.recipient.public, recipient_name="Det. Y", purpose="case 17", requester="PD")
    dev.vault.export_to_file(grant.to_bytes(), tmp_path / "b.bundle")
    dev.vault.close()
    return dev, tmp_path / "b.bundle"


def decrypt(bundle: Path, *extra: str) -> int:
    return main(["decrypt", str(bundle), "--key", str(bundle.parent / "rec.key"), "--out",
                 str(bundle.parent / "mp4"), *extra])


def mp4s(bundle: Path) -> list[Path]:
    d = bundle.parent / "mp4"
    return sorted(d.iterdir()) if d.exists() else []


def test_a_bundle_carrying_its_own_owner_key_is_not_verified(fabricated, capsys) -> None:
    _dev, bundle = fabricated
    assert decrypt(bundle) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "VERIFIED" not in text.replace("NOT VERIFIED", "")
    assert "NOT VERIFIED" in text and "--owner" in text
    assert mp4s(bundle) == []  # no footage written for an unverified release


def test_json_carries_what_was_verified(fabricated, capsys) -> None:
    dev, bundle = fabricated
    capsys.readouterr()
    assert decrypt(bundle, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["reason"] == "unverified_owner"
    assert report["owner_verified"] is False and report["device_verified"] is False
    assert report["device_id"] == dev.identity.device_id and report["owner_key"] == dev.owner.public.sign.hex()


def test_allow_unverified_owner_decrypts_and_says_so(fabricated, capsys) -> None:
    _dev, bundle = fabricated
    capsys.readouterr()
    assert decrypt(bundle, "--json", "--allow-unverified-owner") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["owner_verified"] is False and report["device_verified"] is False
    assert len(mp4s(bundle)) == 1
    assert decrypt(bundle, "--allow-unverified-owner") == 0
    text = capsys.readouterr().out
    assert "NOT VERIFIED" in text and ": VERIFIED" not in text


def test_an_owner_key_given_out_of_band_verifies_owner_and_device(fabricated, capsys) -> None:
    _dev, bundle = fabricated
    capsys.readouterr()
    assert decrypt(bundle, "--json", "--owner", str(bundle.parent / "real-owner.pub")) == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "wrong_owner"
    assert decrypt(bundle, "--json", "--owner", str(bundle.parent / "fake-owner.pub")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["owner_verified"] is True and report["device_verified"] is True


def test_a_pinned_owner_verifies_without_owner(fabricated, capsys) -> None:
    _dev, bundle = fabricated
    assert main(["recipient", "trust", str(bundle.parent / "fake-owner.pub")]) == 0
    capsys.readouterr()
    assert decrypt(bundle, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["owner_verified"] is True and report["owner_source"] == "trusted"


def test_expect_device_checks_the_device_id(fabricated, capsys) -> None:
    dev, bundle = fabricated
    capsys.readouterr()
    assert decrypt(bundle, "--json", "--expect-device", "dk-aaaaaaaaaaaaaaaa", "--allow-unverified-owner") == 1
    assert json.loads(capsys.readouterr().out)["reason"] == "wrong_device"
    assert mp4s(bundle) == []
    assert decrypt(bundle, "--json", "--expect-device", dev.identity.device_id) == 1  # owner still unknown
    report = json.loads(capsys.readouterr().out)
    assert report["device_verified"] is True and report["owner_verified"] is False
    assert decrypt(bundle, "--json", "--expect-device", dev.identity.device_id, "--allow-unverified-owner") == 0
    assert json.loads(capsys.readouterr().out)["device_verified"] is True


def test_attacker_written_terms_are_printed_inert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("DOORKEEP_PASSPHRASE", "rec pass")
    dev = make_device(tmp_path)
    write_clip(dev, "c1", make_packets(6))
    dev.recipient.save(tmp_path / "rec.key", b"rec pass", limits=MIN)
    (tmp_path / "owner.pub").write_bytes(dev.owner.public.to_bytes())
    grant = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "c1"),
                        recipient=dev.recipient.public, recipient_name="Det.\x1b[2K\rVERIFIED",
                        purpose="x\x1b]52;c;ZXZpbA==\x07", requester="PD\u202e")
    dev.vault.export_to_file(grant.to_bytes(), tmp_path / "b.bundle")
    dev.vault.close()
    capsys.readouterr()
    assert decrypt(tmp_path / "b.bundle", "--owner", str(tmp_path / "owner.pub")) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out
    assert "\\x1b[2K" in out
