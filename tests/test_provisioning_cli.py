"""The provisioning commands as a user runs them, against a real mosquitto: owner keygen, `pair` on both sides
(the same code printed on both), `config sign` / `config apply`, a refused replay, `config rotate-owner`,
`factory-reset`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from doorkeep.device.config import MqttSection
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.vault.audit import AuditLog
from doorkeep.provisioning.device_state import DeviceProvisioning
from doorkeep.provisioning.remote import RemoteDocuments
from doorkeep.provisioning.state_lock import StateLock

pytestmark = pytest.mark.broker

DOORKEEP = str(Path(sys.executable).with_name("doorkeep"))


def run(*args: str, env: dict[str, str], check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([DOORKEEP, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    if check and proc.returncode:
        raise AssertionError(f"doorkeep {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def code_in(text: str) -> str:
    m = re.search(r"pairing code:\s+(\d{3}) (\d{3})", text)
    assert m, text
    return m.group(1) + m.group(2)


def test_cli_pair_sign_apply_rotate_reset(mosquitto, tmp_path):
    env = {**os.environ, "DOORKEEP_PASSPHRASE": "correct horse", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    state, owner = tmp_path / "state", tmp_path / "owner"
    owner.mkdir()
    run("owner", "keygen", "--out", str(owner / "owner.key"), "--kdf", "min", env=env)
    run("owner", "keygen", "--out", str(owner / "new.key"), "--kdf", "min", env=env)
    for cmd in (["pair"], ["config", "sign"], ["config", "apply"], ["config", "push"], ["config", "rotate-owner"],
                ["factory-reset"]):
        assert "usage:" in run(*cmd, "--help", env=env).stdout

    device = subprocess.Popen([DOORKEEP, "pair", "--device", "--state-dir", str(state), "--broker", mosquitto.url,
                               "--window", "60", "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    try:
        own = run("pair", "--owner", "--key", str(owner / "owner.key"), "--broker", mosquitto.url, "--yes",
                  "--timeout", "60", env=env)
        out, err = device.communicate(timeout=60)
    finally:
        if device.poll() is None:
            device.kill()
            device.communicate()
    assert device.returncode == 0, out + err
    assert code_in(own.stdout) == code_in(out)  # both screens showed the same code
    assert (state / "owner.pub").exists() and (tmp_path / "xdg" / "doorkeep" / "devices.json").exists()

    (tmp_path / "policy.toml").write_text("[motion]\nhold_s = 9.0\n")
    run("config", "sign", str(tmp_path / "policy.toml"), "--key", str(owner / "owner.key"),
        "--out", str(tmp_path / "c1.json"), env=env)
    applied = run("config", "apply", str(tmp_path / "c1.json"), "--state-dir", str(state), env=env)
    assert "motion.hold_s" in applied.stdout
    replay = run("config", "apply", str(tmp_path / "c1.json"), "--state-dir", str(state), env=env, check=False)
    assert replay.returncode == 1 and "stale-counter" in replay.stderr

    # push the next one to the running device over MQTT (the service's listener, run here in-process)
    (tmp_path / "policy2.toml").write_text("[motion]\nhold_s = 11.0\n")
    run("config", "sign", str(tmp_path / "policy2.toml"), "--key", str(owner / "owner.key"),
        "--out", str(tmp_path / "c2.json"), env=env)
    ident = DeviceIdentity.load_or_create(state)
    dev_client = MqttClient(MqttSection(host=mosquitto.host, port=mosquitto.port), client_id="device-under-test")
    dev_client.start()
    dev_client.wait_connected(10)
    with AuditLog.open(state / "audit.log", ident) as audit:
        remote = RemoteDocuments(dev_client, DeviceProvisioning(state, identity=ident, audit=audit))
        remote.start()
        dev_client.wait_subscribed(10)
        try:
            pushed = run("config", "push", str(tmp_path / "c2.json"), "--broker", mosquitto.url, env=env)
            again = run("config", "push", str(tmp_path / "c2.json"), "--broker", mosquitto.url, env=env, check=False)
        finally:
            remote.stop()
            dev_client.stop()
    assert "applied document #2" in pushed.stdout
    assert again.returncode == 1 and "stale-counter" in again.stderr

    (tmp_path / "bad.toml").write_text("[motion]\nhold_s = -1\n")
    bad = run("config", "sign", str(tmp_path / "bad.toml"), "--key", str(owner / "owner.key"),
              "--out", str(tmp_path / "bad.json"), env=env, check=False)
    assert bad.returncode == 1 and "motion.hold_s" in bad.stderr and not (tmp_path / "bad.json").exists()

    run("config", "rotate-owner", "--key", str(owner / "owner.key"), "--new-public", str(owner / "new.key.pub"),
        "--out", str(tmp_path / "rot.json"), env=env)
    assert "rotated" in run("config", "apply", str(tmp_path / "rot.json"), "--state-dir", str(state), env=env).stdout

    refused = run("factory-reset", "--state-dir", str(state), env=env, check=False)
    assert refused.returncode == 2  # the confirmation flag is required
    run("factory-reset", "--state-dir", str(state), "--yes-destroy-everything", env=env)
    assert not (state / "device.key").exists() and not (state / "owner.pub").exists()


def test_cli_boot_file_pairing_and_receipt(tmp_path):
    env = {**os.environ, "DOORKEEP_PASSPHRASE": "pw", "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    state, key, boot = tmp_path / "state", tmp_path / "owner.key", tmp_path / "bootfs" / "doorkeep-pair.json"
    boot.parent.mkdir()
    run("owner", "keygen", "--out", str(key), "--kdf", "min", env=env)
    wrote = run("pair", "--owner", "--key", str(key), "--boot-file", str(boot), env=env)
    code = re.search(r"PAIRING CODE (\d{6})", wrote.stdout).group(1)
    device = run("pair", "--device", "--state-dir", str(state), "--boot-file", str(boot), env=env)
    assert f"code {code}" in device.stdout and not boot.exists()
    pinned = run("pair", "--owner", "--key", str(key), "--receipt", str(state / "pair-receipt.json"), env=env)
    assert "pinned device dk-" in pinned.stdout
    again = run("pair", "--owner", "--key", str(key), "--receipt", str(state / "pair-receipt.json"), env=env,
                check=False)  # the pending nonce was used up: a receipt cannot be replayed into the book
    assert again.returncode == 1 and "proof" in again.stderr
    # while the service holds the state directory, device-side commands are refused (one audit-log writer)
    with StateLock(state, holder="doorkeep run"):
        busy = run("factory-reset", "--state-dir", str(state), "--yes-destroy-everything", env=env, check=False)
    assert busy.returncode == 1 and "state-busy" in busy.stderr and "doorkeep run" in busy.stderr
    assert (state / "device.key").exists()
