"""`doorkeep config check FILE` (#11 item 10): validate a settings file or a signed document and say what it would
change on this device — values, zones and privacy masks added or removed — without applying, storing or auditing
anything."""

from __future__ import annotations

import json
from pathlib import Path

from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.keys import SecretKeys, pin_owner_public
from doorkeep.provisioning.config_diff import diff_configs
from doorkeep.provisioning.signed_config import APPLIED_FILE, sign_config
from ux_support import doorkeep, one_error_line

SQUARE = [[0.0, 0.0], [0.3, 0.0], [0.3, 0.4]]


def _device(tmp_path: Path, local: str = "") -> tuple[Path, Path]:
    state = tmp_path / "state"
    DeviceIdentity.load_or_create(state)
    cfg = tmp_path / "doorkeep.toml"
    cfg.write_text(f'[device]\nstate_dir = "{state}"\n{local}')
    return state, cfg


def test_settings_file_is_validated_and_its_changes_listed(tmp_path: Path) -> None:
    state, cfg = _device(tmp_path, "[capture]\nfps = 30\n")
    settings = tmp_path / "settings.toml"
    settings.write_text(f'[capture]\nfps = 10\n[[zones]]\nname = "Vordertür"\npolygon = {SQUARE}\n'
                        f'[[masks]]\nname = "neighbour\'s window"\npolygon = {SQUARE}\n')
    proc = doorkeep("config", "check", str(settings), "--config", str(cfg))
    assert proc.returncode == 0, proc.stderr
    assert f"{settings}: valid settings" in proc.stdout
    assert "change capture.fps: 30.0 -> 10.0" in proc.stdout
    assert "this adds 1 zone: Vordertür" in proc.stdout
    assert "this adds 1 privacy mask: neighbour's window" in proc.stdout
    report = json.loads(doorkeep("config", "check", str(settings), "--config", str(cfg), "--json").stdout)
    assert report["valid"] and {"action": "change", "key": "capture.fps", "old": 30.0, "new": 10.0} in report["changes"]
    assert sorted(p.name for p in state.iterdir()) == ["device.key"]  # nothing applied, stored or audited

    same = tmp_path / "same.toml"
    same.write_text("[capture]\nfps = 30\n")
    assert "no change on this device" in doorkeep("config", "check", str(same), "--config", str(cfg)).stdout


def test_bad_settings_are_one_line_naming_the_key(tmp_path: Path) -> None:
    _state, cfg = _device(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text("[capture]\nfps = 500\n")
    one_error_line(doorkeep("config", "check", str(bad), "--config", str(cfg)), contains="capture.fps = 500")
    one_error_line(doorkeep("config", "check", str(tmp_path / "nope.toml"), "--config", str(cfg)),
                   contains="no such file")


def test_signed_document_is_checked_as_apply_would_and_removals_are_named(tmp_path: Path) -> None:
    state, cfg = _device(tmp_path)
    ident = DeviceIdentity.load_or_create(state)
    owner = SecretKeys.generate("owner")
    pin_owner_public(state, owner.public)
    first = sign_config({"masks": [{"name": "hedge", "polygon": SQUARE}]}, device_id=ident.device_id, counter=1,
                        keys=owner)
    (tmp_path / "c1.json").write_bytes(first.to_bytes())
    ok = doorkeep("config", "check", str(tmp_path / "c1.json"), "--config", str(cfg))
    assert ok.returncode == 0, ok.stderr
    assert "counter #1 (last applied #0): `config apply` would accept it" in ok.stdout
    assert "this adds 1 privacy mask: hedge" in ok.stdout
    assert not (state / APPLIED_FILE).exists() and not (state / "audit.log").exists()

    assert doorkeep("config", "apply", str(tmp_path / "c1.json"), "--config", str(cfg)).returncode == 0
    second = sign_config({"capture": {"fps": 10}}, device_id=ident.device_id, counter=2, keys=owner)
    (tmp_path / "c2.json").write_bytes(second.to_bytes())
    # a signed document is the whole policy: one that drops the mask without --allow-mask-removal is refused
    one_error_line(doorkeep("config", "check", str(tmp_path / "c2.json"), "--config", str(cfg)),
                   contains="mask-removal: this removes 1 privacy mask: hedge")
    audit = (state / "audit.log").read_bytes()
    one_error_line(doorkeep("config", "check", str(tmp_path / "c1.json"), "--config", str(cfg)),
                   contains="stale-counter")  # a replay is refused like `config apply` would ...
    assert (state / "audit.log").read_bytes() == audit  # ... but nothing is written to the audit log


def test_diff_never_prints_a_password() -> None:
    old = Config()
    new = Config.from_dict({"mqtt": {"password": "hunter2", "host": "hub"}})
    lines = [c.describe() for c in diff_configs(old, new)]
    assert "change mqtt.password (not shown)" in lines and "change mqtt.host: 'localhost' -> 'hub'" in lines
    assert "hunter2" not in repr([c.to_json() for c in diff_configs(old, new)])
    assert "hunter2" not in repr(diff_configs(old, new))
