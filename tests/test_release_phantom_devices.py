"""No phantom Home Assistant devices (#11.9): what a device left retained on the broker under an earlier identity,
discovery prefix or with discovery since turned off is cleared when it next connects — on a real mosquitto.

Before: changing `mqtt.discovery_prefix`, setting `mqtt.discovery = false`, or an identity change whose clean-up
never reached the broker (a factory reset with the broker down, a restored state directory) left the old retained
discovery config on the broker for good; Home Assistant kept the old device, its entities "unavailable"."""

from __future__ import annotations

import json
from pathlib import Path

import nacl.signing
import pytest
from channel_support import wait_for
from doorkeep.device.config import MqttSection
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.publish.retained_ledger import LEDGER_FILE
from doorkeep.device.publish.topics import Topics
from fixtures_broker import Subscriber, retained_messages

pytestmark = pytest.mark.broker


def identity(seed: int) -> DeviceIdentity:
    return DeviceIdentity(nacl.signing.SigningKey(bytes([seed]) * 32))


def retained(mosquitto: object, topic: str) -> dict[str, bytes]:
    """The broker's retained messages on ``topic`` (or under it, for ``…/#``)."""
    found = retained_messages(mosquitto, topic.rsplit("/", 1)[0] + "/#")  # type: ignore[arg-type]
    return {t: p for t, p in found.items() if t == topic or topic.endswith("/#")}


def run_once(mosquitto: object, ident: DeviceIdentity, state: Path, *, wait_for: str, **mqtt: object) -> None:
    """Start the device's publisher with these ``[mqtt]`` settings until ``wait_for`` shows on the broker."""
    settings = MqttSection(host=mosquitto.host, port=mosquitto.port, heartbeat_s=3600, **mqtt)  # type: ignore
    with Subscriber(mosquitto, wait_for) as seen, MqttPublisher(settings, ident, state_dir=state):  # type: ignore
        seen.get()


def ledger(state: Path) -> set[str]:
    return set(json.loads((state / LEDGER_FILE).read_bytes())["topics"])


def test_a_new_discovery_prefix_removes_the_config_under_the_old_one(mosquitto, tmp_path: Path) -> None:
    ident = identity(21)
    old, new = Topics(ident.device_id).discovery, Topics(ident.device_id, prefix="ha2").discovery
    run_once(mosquitto, ident, tmp_path, wait_for=old)
    assert old in retained(mosquitto, old)
    run_once(mosquitto, ident, tmp_path, wait_for=new, discovery_prefix="ha2")
    assert retained(mosquitto, old) == {}
    assert new in retained(mosquitto, new)
    assert wait_for(lambda: old not in ledger(tmp_path)) and new in ledger(tmp_path)
    assert (tmp_path / LEDGER_FILE).stat().st_mode & 0o777 == 0o600


def test_discovery_turned_off_removes_the_device_from_home_assistant(mosquitto, tmp_path: Path) -> None:
    ident = identity(22)
    topics = Topics(ident.device_id)
    run_once(mosquitto, ident, tmp_path, wait_for=topics.discovery)
    run_once(mosquitto, ident, tmp_path, wait_for=topics.availability, discovery=False)
    assert wait_for(lambda: retained(mosquitto, topics.discovery) == {})
    assert retained(mosquitto, topics.availability)  # the rest of the device's state is still published


def test_discovery_off_on_a_device_older_than_the_ledger(mosquitto, tmp_path: Path) -> None:
    """No ledger yet (announced by an older version): turning discovery off still clears the current config."""
    ident = identity(23)
    topics = Topics(ident.device_id)
    run_once(mosquitto, ident, tmp_path, wait_for=topics.discovery)
    (tmp_path / LEDGER_FILE).unlink()
    run_once(mosquitto, ident, tmp_path, wait_for=topics.availability, discovery=False)
    assert wait_for(lambda: retained(mosquitto, topics.discovery) == {})
    assert wait_for(lambda: ledger(tmp_path) == set(topics.retained()) - {topics.discovery})


def test_a_new_identity_clears_what_the_old_one_left(mosquitto, tmp_path: Path) -> None:
    """A reset whose broker clean-up never happened (or a state directory restored from a backup): the next
    identity to connect from this state directory clears the old one's retained messages."""
    old, new = identity(24), identity(25)
    run_once(mosquitto, old, tmp_path, wait_for=Topics(old.device_id).discovery)
    assert len(retained(mosquitto, f"doorkeep/{old.device_id}/#")) >= 1
    run_once(mosquitto, new, tmp_path, wait_for=Topics(new.device_id).discovery)
    assert wait_for(lambda: retained(mosquitto, f"homeassistant/device/{old.device_id}/#") == {}
                      and retained(mosquitto, f"doorkeep/{old.device_id}/#") == {})
    assert Topics(new.device_id).discovery in retained(mosquitto, f"homeassistant/device/{new.device_id}/#")
    assert wait_for(lambda: not any(old.device_id in t for t in ledger(tmp_path)))


def test_an_unwritable_ledger_does_not_stop_the_device(mosquitto, tmp_path: Path) -> None:
    ident = identity(26)
    (tmp_path / LEDGER_FILE).mkdir()  # cannot be replaced by a file: every write fails with an OSError
    run_once(mosquitto, ident, tmp_path, wait_for=Topics(ident.device_id).discovery)


def test_factory_reset_clears_configs_under_every_prefix_the_device_used(mosquitto, tmp_path: Path) -> None:
    """The reset clears the retained messages of the prefix in force and those recorded under earlier ones."""
    from provisioning_support import new_device
    from test_release_factory_reset import broker_config, doorkeep

    dev = new_device(tmp_path / "state")
    dev.audit.close()
    earlier = Topics(dev.identity.device_id, prefix="ha-old").discovery
    run_once(mosquitto, dev.identity, dev.state, wait_for=earlier, discovery_prefix="ha-old", discovery=True)
    proc = doorkeep("factory-reset", "--yes-destroy-everything", "--config", broker_config(tmp_path, mosquitto))
    assert f"removed {dev.identity.device_id} from the broker" in proc.stdout, proc.stdout + proc.stderr
    assert retained(mosquitto, earlier) == {}


@pytest.mark.parametrize("content", [b"", b"{", b"[1]", b'{"v": 2, "topics": []}', b'{"v": 1, "topics": [1]}',
                                     b'{"v": 1}'])
def test_a_damaged_ledger_reads_as_empty_and_is_rewritten(tmp_path: Path, content: bytes) -> None:
    """Never a crash on the network thread, never a topic cleared that the ledger does not name."""
    from doorkeep.device.publish.retained_ledger import RetainedLedger

    (tmp_path / LEDGER_FILE).write_bytes(content)
    led = RetainedLedger(tmp_path / LEDGER_FILE)
    assert led.topics() == []
    led.record(["a/b"])
    assert led.topics() == ["a/b"]
