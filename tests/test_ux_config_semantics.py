"""#11 item 2: a signed configuration is the device's whole policy, and nothing it takes away is silent.

Signing `[capture] fps = 10` alone used to remove every privacy mask, zone and the broker address without a word.
Now the owner sees, before signing (`config sign`), before applying (`config check`, `config push`) and when it is
applied (`config apply`, the device's activity log), in plain words what the document adds, changes and removes;
a document that removes a privacy mask is refused on both sides unless it was signed with --allow-mask-removal."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from doorkeep.device.activity import NAME as ACTIVITY
from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.audit import AuditLog
from doorkeep.device.vault.keys import SecretKeys, pin_owner_public
from doorkeep.provisioning.config_diff import check_mask_removal, diff_configs, report
from doorkeep.provisioning.device_state import DeviceProvisioning
from doorkeep.provisioning.errors import MaskRemoval
from doorkeep.provisioning.owner_state import DeviceBook
from doorkeep.provisioning.signed_config import APPLIED_FILE, SignedConfigStore, sign_config
from ux_support import doorkeep, one_error_line

WINDOW = [[0.85, 0.0], [1.0, 0.0], [1.0, 0.35]]
PORCH = [[0.2, 0.5], [0.8, 0.5], [0.8, 1.0]]
POLICY = {"mqtt": {"host": "hub.local"}, "zones": [{"name": "porch", "polygon": PORCH}],
          "masks": [{"name": "neighbour's window", "polygon": WINDOW}]}
POLICY_TOML = f"""[mqtt]
host = "hub.local"
[[zones]]
name = "porch"
polygon = {PORCH}
[[masks]]
name = "neighbour's window"
polygon = {WINDOW}
"""


def test_report_says_in_plain_words_what_a_whole_policy_takes_away() -> None:
    changes = diff_configs(Config.from_dict(POLICY), Config.from_dict({"capture": {"fps": 10}}),
                           new_table={"capture": {"fps": 10}})
    lines = report(changes)
    assert lines[:2] == ["this removes 1 privacy mask: neighbour's window", "this removes 1 zone: porch"]
    assert "change capture.fps: 30.0 -> 10.0" in lines
    assert "change mqtt.host: 'hub.local' -> 'localhost' (the document does not set it: back to the default)" in lines
    with pytest.raises(MaskRemoval, match="this removes 1 privacy mask: neighbour's window"):
        check_mask_removal(changes, allowed=False)
    check_mask_removal(changes, allowed=True)
    added = report(diff_configs(Config.from_dict({}), Config.from_dict(POLICY)))
    assert added[:2] == ["this adds 1 privacy mask: neighbour's window", "this adds 1 zone: porch"]


def _device(tmp_path: Path) -> tuple[Path, DeviceIdentity, SecretKeys]:
    state = tmp_path / "state"
    ident = DeviceIdentity.load_or_create(state)
    owner = SecretKeys.generate("owner")
    pin_owner_public(state, owner.public)
    return state, ident, owner


def test_device_refuses_a_document_that_silently_removes_a_mask(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    state, ident, owner = _device(tmp_path)
    audit = AuditLog.open(state / "audit.log", ident)
    try:
        store = SignedConfigStore(DeviceProvisioning(state, identity=ident, audit=audit))
        store.apply(sign_config(POLICY, device_id=ident.device_id, counter=1, keys=owner).to_bytes())
        before = (state / APPLIED_FILE).read_bytes()
        fps_only = sign_config({"capture": {"fps": 10}}, device_id=ident.device_id, counter=2, keys=owner)
        with caplog.at_level(logging.INFO, logger=ACTIVITY), pytest.raises(MaskRemoval) as refused:
            store.check(fps_only.to_bytes())  # what `config check` says is what `apply` does
        with caplog.at_level(logging.INFO, logger=ACTIVITY), pytest.raises(MaskRemoval):
            store.apply(fps_only.to_bytes())
        assert "neighbour's window" in str(refused.value)
        assert (state / APPLIED_FILE).read_bytes() == before  # the policy in force is untouched
        assert "refused owner configuration #2: mask-removal: this removes 1 privacy mask" in caplog.text

        allowed = sign_config({"capture": {"fps": 10}}, device_id=ident.device_id, counter=3, keys=owner,
                              allow_mask_removal=True)
        with caplog.at_level(logging.INFO, logger=ACTIVITY):
            applied = store.apply(allowed.to_bytes())
        assert "this removes 1 privacy mask: neighbour's window" in report(list(applied.changes))
        assert applied.config.masks == () and applied.config.mqtt.host == "localhost"
        assert "applied owner configuration #3: this removes 1 privacy mask: neighbour's window; this removes " \
               "1 zone: porch" in caplog.text
    finally:
        audit.close()
    records = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    kinds = [(r["kind"], r["f"].get("reason"), r["f"].get("removed_masks")) for r in records]
    assert ("config_refused", "mask-removal", None) in kinds
    assert ("config_applied", None, ["neighbour's window"]) in kinds


def test_owner_sees_the_change_before_signing_and_a_mask_removal_needs_the_flag(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ident = DeviceIdentity.load_or_create(state)
    env = {"DOORKEEP_PASSPHRASE": "correct horse", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    key = tmp_path / "owner.key"
    assert doorkeep("owner", "keygen", "--out", str(key), "--kdf", "min", env=env).returncode == 0
    pin_owner_public(state, SecretKeys.load(key, passphrase=b"correct horse", role="owner").public)
    book = DeviceBook.load(tmp_path / "xdg" / "doorkeep" / "devices.json")
    book.pin(ident.device_id, ident.public_bytes)
    cfg = tmp_path / "doorkeep.toml"
    cfg.write_text(f'[device]\nstate_dir = "{state}"\n')

    (tmp_path / "policy.toml").write_text(POLICY_TOML)
    first = doorkeep("config", "sign", str(tmp_path / "policy.toml"), "--key", str(key), "--out",
                     str(tmp_path / "c1.json"), env=env)
    assert first.returncode == 0, first.stderr
    assert "this adds 1 privacy mask: neighbour's window" in first.stdout
    applied = doorkeep("config", "apply", str(tmp_path / "c1.json"), "--config", str(cfg))
    assert applied.returncode == 0, applied.stderr
    assert "applied configuration #1" in applied.stdout and "this adds 1 zone: porch" in applied.stdout

    (tmp_path / "fps.toml").write_text("[capture]\nfps = 10\n")
    sign = ["config", "sign", str(tmp_path / "fps.toml"), "--key", str(key), "--out", str(tmp_path / "c2.json")]
    refused = doorkeep(*sign, env=env)
    one_error_line(refused, contains="mask-removal: this removes 1 privacy mask: neighbour's window")
    assert "compared with configuration #1" in refused.stdout
    assert "this removes 1 zone: porch" in refused.stdout and "change mqtt.host: 'hub.local' -> 'localhost'" \
        in refused.stdout
    assert not (tmp_path / "c2.json").exists()
    assert DeviceBook.load(book.path).get(ident.device_id).counter == 1  # no counter spent on a refusal

    # a settings file is checked on the device in the same words
    check = doorkeep("config", "check", str(tmp_path / "fps.toml"), "--config", str(cfg))
    assert "this removes 1 privacy mask: neighbour's window" in check.stdout
    assert "--allow-mask-removal" in check.stdout

    ok = doorkeep(*sign, "--allow-mask-removal", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "this removes 1 privacy mask: neighbour's window" in ok.stdout
    done = doorkeep("config", "apply", str(tmp_path / "c2.json"), "--config", str(cfg))
    assert done.returncode == 0, done.stderr
    assert "this removes 1 privacy mask: neighbour's window" in done.stdout
