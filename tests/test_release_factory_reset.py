"""Factory reset finds every vault the device ever used and removes the old identity from the broker (#14.12,
#11.9).

Before: the reset read only the local TOML, so a vault directory set by a signed configuration kept its clip key
headers ("0 clips destroyed"); and every identity change left its retained Home Assistant discovery config (and
availability, presence, stats) on the broker: a phantom device in Home Assistant."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doorkeep.device.config import Config, MqttSection
from doorkeep.device.publish.discovery import DiscoveryAnnouncer
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.topics import OFF, SPEC, Topics
from doorkeep.device.vault.clips import MAGIC
from doorkeep.device.vault.vault import build_vault
from doorkeep.provisioning.signed_config import SignedConfigStore, sign_config
from fixtures_broker import retained_messages
from provisioning_support import Device, new_device, owner_keys, write_clip

DOORKEEP = [sys.executable, "-m", "doorkeep.tools.cli"]


def doorkeep(*args: object, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*DOORKEEP, *map(str, args)], capture_output=True, text=True, timeout=180, check=False)
    if check:
        assert proc.returncode == 0, f"{args}\n{proc.stdout}\n{proc.stderr}"
    return proc


def clip_headers(*dirs: Path) -> list[Path]:
    """Files that still start with a clip's magic (their sealed key header is intact)."""
    return [p for d in dirs if d.exists() for p in d.rglob("*") if p.is_file() and p.read_bytes()[:8] == MAGIC]


def paired(tmp_path: Path) -> tuple[Device, object]:
    dev = new_device(tmp_path / "state")
    keys = owner_keys()
    dev.prov.pin(keys.public, replace=False)
    return dev, keys


def broker_config(tmp_path: Path, mosquitto: object) -> Path:
    toml = tmp_path / "doorkeep.toml"
    toml.write_text(f'[device]\nstate_dir = "{tmp_path / "state"}"\n'
                    f'[mqtt]\nhost = "{mosquitto.host}"\nport = {mosquitto.port}\n')  # type: ignore[attr-defined]
    return toml


def test_reset_shreds_every_vault_the_device_used(tmp_path: Path) -> None:
    dev, keys = paired(tmp_path)
    first, second, legacy = tmp_path / "usb-a", tmp_path / "usb-b", tmp_path / "nas"
    for d in (first, second):  # the service ran with [vault] dir = first, then second (each config since gone)
        cfg = Config.from_dict({"device": {"state_dir": str(dev.state)}, "vault": {"dir": str(d)}})
        build_vault(cfg, dev.identity).close()
        write_clip(d, keys.public, dev.identity.device_id, "c-" + d.name)
    # the signed configuration that is in force now moves the vault to a third place (a device older than the
    # vaults.used record recorded there too)
    doc = sign_config({"vault": {"dir": str(legacy)}}, device_id=dev.identity.device_id, counter=1, keys=keys)
    SignedConfigStore(dev.prov).apply(doc.to_bytes())
    write_clip(legacy, keys.public, dev.identity.device_id, "c-legacy")
    (legacy / "notes.clip").write_bytes(b"not a doorkeep clip, leave me")
    dev.audit.close()
    assert len(clip_headers(first, second, legacy)) == 3

    out = doorkeep("factory-reset", "--yes-destroy-everything", "--state-dir", dev.state).stdout
    assert re.search(r"3 clips destroyed in .*usb-a.*usb-b", out), out
    assert clip_headers(dev.state, first, second, legacy) == []
    assert (legacy / "notes.clip").read_bytes() == b"not a doorkeep clip, leave me"
    assert not (dev.state / "vaults.used").exists()


def test_the_service_records_each_vault_dir_it_opens(tmp_path: Path) -> None:
    dev, _keys = paired(tmp_path)
    for d in ("a", "b", "a"):
        cfg = Config.from_dict({"device": {"state_dir": str(dev.state)}, "vault": {"dir": str(tmp_path / d)}})
        build_vault(cfg, dev.identity).close()
    assert (dev.state / "vaults.used").read_text().splitlines() == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert (dev.state / "vaults.used").stat().st_mode & 0o777 == 0o600


def retained_for(mosquitto: object, device_id: str) -> list[tuple[str, bytes]]:
    """Every retained message about ``device_id`` on the broker."""
    return [item for flt in (f"doorkeep/{device_id}/#", f"homeassistant/device/{device_id}/#")
            for item in retained_messages(mosquitto, flt).items()]  # type: ignore[arg-type]


def announce_like_the_device(mosquitto: object, device_id: str) -> None:
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port)  # type: ignore[attr-defined]
    topics = Topics(device_id)
    client = MqttClient(settings, client_id=device_id, availability_topic=topics.availability)
    client.start()
    client.wait_connected(10)
    DiscoveryAnnouncer(client, topics, device_name="Front door").announce()
    client.publish_raw(topics.person, OFF, qos=1, retain=SPEC["person"].retain).wait(10)
    client.publish_raw(topics.stats, b'{"fps":30}', qos=1, retain=SPEC["stats"].retain).wait(10)
    client.publish_raw(topics.availability, b"online", qos=1, retain=True).wait(10)
    client.stop()  # leaves "offline" retained, as the service does


@pytest.fixture
def announced(mosquitto, tmp_path: Path) -> tuple[str, Path]:
    """A paired device that has announced itself on the broker: (its id, a config naming that broker)."""
    dev, _keys = paired(tmp_path)
    dev.audit.close()
    announce_like_the_device(mosquitto, dev.identity.device_id)
    return dev.identity.device_id, broker_config(tmp_path, mosquitto)


@pytest.mark.broker
def test_reset_removes_the_old_identity_from_the_broker(mosquitto, announced) -> None:
    old, toml = announced
    assert {t for t, _ in retained_for(mosquitto, old)} == {
        f"homeassistant/device/{old}/config", f"doorkeep/{old}/availability", f"doorkeep/{old}/person",
        f"doorkeep/{old}/stats"}
    proc = doorkeep("factory-reset", "--yes-destroy-everything", "--config", toml)
    assert f"removed {old} from the broker" in proc.stdout, proc.stdout + proc.stderr
    assert retained_for(mosquitto, old) == []


@pytest.mark.broker
def test_reset_with_the_broker_down_says_how_to_forget_the_device_later(mosquitto, announced,
                                                                        tmp_path: Path) -> None:
    old, toml = announced
    mosquitto.stop()
    t0 = time.monotonic()
    proc = doorkeep("factory-reset", "--yes-destroy-everything", "--config", toml)
    assert time.monotonic() - t0 < 60
    assert f"doorkeep forget-device {old} --broker" in proc.stderr
    assert not (tmp_path / "state" / "device.key").exists()
    mosquitto.start()
    doorkeep("forget-device", old, "--broker", mosquitto.url)
    assert retained_for(mosquitto, old) == []


@pytest.mark.broker
@pytest.mark.slow
def test_the_demo_leaves_no_phantom_device(mosquitto, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    proc = subprocess.run([*DOORKEEP, "demo", "--seconds", "3", "--broker", mosquitto.url], capture_output=True,
                          text=True, timeout=300, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (device_id,) = set(re.findall(r"device (dk-[a-z0-9]+)", proc.stdout))
    assert retained_for(mosquitto, device_id) == []
