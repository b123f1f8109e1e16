"""The owner's and the requester's tools apply the device's own limits before they sign (#14.15, #11.7).

Before: `doorkeep grant --days 31` (or 0, -1, 90), a 5,000-character purpose or a 100,000-character recipient name
were signed and written, and the device then refused the grant; `doorkeep request --from` later than `--to` was
signed too."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from doorkeep.device.errors import DoorkeepError, FormatError, ReleaseError
from doorkeep.device.vault.grants import MAX_LIFETIME_S, MAX_NAME, MAX_PURPOSE, issue_grant
from doorkeep.device.vault.keys import MIN
from doorkeep.device.vault.requests import make_request
from doorkeep.tools.cli import main
from vault_support import Device, make_device, make_packets, sealed_keys, write_clip


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Device:
    d = make_device(tmp_path)
    write_clip(d, "c1", make_packets(6))
    d.vault.close()
    monkeypatch.setenv("DOORKEEP_PASSPHRASE", "owner pass")
    d.owner.save(tmp_path / "owner.key", b"owner pass", limits=MIN)
    (tmp_path / "rec.pub").write_bytes(d.recipient.public.to_bytes())
    return d


def grant(dev: Device, tmp_path: Path, *extra: str, name: str = "Det. Y", purpose: str = "case 17") -> int:
    return main(["grant", "--key", str(tmp_path / "owner.key"), "--recipient", str(tmp_path / "rec.pub"),
                 "--recipient-name", name, "--purpose", purpose, "--requester", "PD", "--clip", "c1",
                 "--out", str(tmp_path / "g.json"), "--state-dir", str(dev.state), *extra])


@pytest.mark.parametrize("days", ["31", "0", "-1", "90", "nan", "inf", "30.0001"])
def test_grant_validity_outside_what_the_device_accepts_is_not_signed(dev, tmp_path, capsys, days):
    assert grant(dev, tmp_path, "--days", days) == 1
    err = capsys.readouterr().err
    assert err.startswith("doorkeep: --days") and err.count("\n") == 1 and "30 days" in err, err
    assert not (tmp_path / "g.json").exists()


def test_a_thirty_day_grant_is_signed_and_accepted(dev, tmp_path):
    assert grant(dev, tmp_path, "--days", "30") == 0
    g = json.loads((tmp_path / "g.json").read_text())
    assert g["expires_at"] - g["issued_at"] == MAX_LIFETIME_S


@pytest.mark.parametrize(("field", "kw", "size"), [("purpose", "purpose", MAX_PURPOSE + 1),
                                                   ("purpose", "purpose", 5000),
                                                   ("recipient name", "name", 100_000),
                                                   ("recipient name", "name", MAX_NAME + 1)])
def test_texts_longer_than_the_device_accepts_are_not_signed(dev, tmp_path, capsys, field, kw, size):
    assert grant(dev, tmp_path, **{kw: "x" * size}) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"doorkeep: the {field} is {size} characters") and err.count("\n") == 1, err
    assert not (tmp_path / "g.json").exists()


def test_issue_grant_refuses_what_check_grant_would_refuse(dev):
    args = {"device_id": dev.identity.device_id, "sealed_keys": sealed_keys(dev, "c1"),
            "recipient": dev.recipient.public, "recipient_name": "Det. Y", "purpose": "p", "requester": "PD"}
    for bad in ({"lifetime_s": MAX_LIFETIME_S + 1}, {"lifetime_s": 0}, {"purpose": ""},
                {"requester": "r" * (MAX_NAME + 1)}, {"request_id": "9" * 65}, {"device_id": "d" * 65}):
        with pytest.raises((FormatError, ReleaseError)):
            issue_grant(dev.owner, **{**args, **bad})
    assert issue_grant(dev.owner, **args, lifetime_s=MAX_LIFETIME_S).clip_ids == ("c1",)


def test_grant_window_from_after_to_is_refused(dev, tmp_path, capsys):
    now = time.time()
    assert grant(dev, tmp_path, "--from", str(now), "--to", str(now - 60)) == 1
    assert "is later than --to" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()


def test_request_from_after_to_is_refused_before_the_passphrase(dev, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DOORKEEP_PASSPHRASE")  # a prompt here would fail the test (no terminal)
    rc = main(["request", "--key", str(tmp_path / "nokey"), "--requester", "PD", "--incident", "1",
               "--purpose", "p", "--from", "2025-01-02T00:00", "--to", "2025-01-01T00:00",
               "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("doorkeep: --from") and "later than --to" in err, err
    assert not (tmp_path / "r.json").exists()


def test_make_request_refuses_what_the_device_would(dev):
    for bad in ({"window": (2.0, 1.0)}, {"purpose": "p" * 5000}, {"requester": ""},
                {"window": (float("nan"), 1.0)},
                {"incident": "\x01" * 1024, "purpose": "\x01" * 1024}):  # each within 1024, together > 8 KiB
        kw = {"requester": "PD", "incident": "1", "purpose": "p", "window": (1.0, 2.0), **bad}
        with pytest.raises(DoorkeepError, match="the device would refuse"):
            make_request(dev.recipient, **kw)  # type: ignore[arg-type]
