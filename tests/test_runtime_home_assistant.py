"""Home Assistant details (#10.8), over the real mosquitto: the retained person state is the truth (OFF) after a
start and a clean stop, *Storage used* reads the vault's bytes, *Dropped frames* is a running total, and every
discovery component carries its own ``qos``."""

from __future__ import annotations

import json
import queue
import time

import pytest
from doorkeep.device.config import Config, MqttSection
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.discovery import discovery_config
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.publish.topics import OFF, ON, Topics
from fixtures_broker import Subscriber
from worker_faults import wait_until

pytestmark = pytest.mark.broker


def _settings(mosquitto, **kw: object) -> MqttSection:
    return MqttSection(host=mosquitto.host, port=mosquitto.port, reconnect_max_s=1, **kw)  # type: ignore[arg-type]


def _retained(mosquitto, topic: str) -> bytes | None:
    """What a client connecting now (Home Assistant after a restart) gets for ``topic``."""
    with Subscriber(mosquitto, topic) as sub:
        try:
            t, payload, retain = sub.get(timeout=2)
        except queue.Empty:
            return None
        assert t == topic and retain
        return payload


def _person(kind: str, phase: str, eid: str = "a" * 16) -> Event:
    return Event(event_id=eid, kind=kind, phase=phase, t=time.time(), t_start=time.time(), score=0.9)


def test_a_person_left_on_by_a_crash_is_cleared_on_start_and_clean_stop_publishes_off(tmp_path, mosquitto) -> None:
    identity = DeviceIdentity.generate()
    topics = Topics(identity.device_id)
    # the device crashed with a person present: the broker still holds ON
    crashed = MqttPublisher(_settings(mosquitto), identity, state_dir=tmp_path)
    crashed.start()
    crashed.on_event(_person("person", "start"))
    assert crashed.drain(10)
    crashed.client.stop()  # no clean close: the retained ON stays
    crashed.heartbeat.stop()
    crashed._sender.stop()
    crashed.outbox.close()
    assert _retained(mosquitto, topics.person) == ON
    pub = MqttPublisher(_settings(mosquitto), identity, state_dir=tmp_path)
    with pub:
        wait_until(lambda: _retained(mosquitto, topics.person) == OFF, what="OFF after the restart")
        pub.on_event(_person("person", "start", "b" * 16))
        assert pub.drain(10) and _retained(mosquitto, topics.person) == ON
    # a clean stop while a person is present: the device no longer knows, so the retained state is OFF
    assert _retained(mosquitto, topics.person) == OFF


def test_storage_used_reads_the_vault_bytes_and_discovery_is_complete(tmp_path, mosquitto, model_path) -> None:
    from doorkeep.device.assembly import assemble
    from doorkeep.device.sources.synthetic import SyntheticSource
    from doorkeep.device.vault.keys import SecretKeys, pin_owner_public

    state = tmp_path / "state"
    identity = DeviceIdentity.load_or_create(state)
    pin_owner_public(state, SecretKeys.generate("owner").public)
    config = Config.from_dict({"device": {"state_dir": str(state)},
                               "capture": {"main_width": 320, "main_height": 240},
                               "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "heartbeat_s": 1},
                               "vault": {"fsync_chunks": False, "postroll_s": 0.5}})
    device = assemble(config, identity=identity, source=SyntheticSource(width=320, height=240, fps=30))
    topics = Topics(identity.device_id)
    with device, Subscriber(mosquitto, topics.stats) as stats:
        device.button.press()  # a clip (#10.7) so there is something stored  # type: ignore[union-attr]
        assert device.vault is not None
        wait_until(lambda: device.vault.store.total_bytes() > 0, timeout=30, what="a stored clip")  # type: ignore[union-attr]
        stored = device.vault.store.total_bytes()
        deadline = time.monotonic() + 20
        while True:
            hb = json.loads(stats.get(timeout=10)[1])
            if hb["storage_mb"] >= round(stored / 1e6, 2) > 0 or time.monotonic() > deadline:
                break
        assert hb["storage_mb"] == pytest.approx(device.vault.store.total_bytes() / 1e6, abs=0.01)
        assert hb["storage_mb"] > 0


def test_discovery_sensors_have_the_right_state_classes_and_every_component_has_qos() -> None:
    cfg = discovery_config(Topics("dk-abcdefghijklmnop"), device_name="Front door")
    cmps = cfg["cmps"]
    assert all(c["qos"] == 1 for c in cmps.values())
    by_key = {k.removeprefix("dk-abcdefghijklmnop_"): c for k, c in cmps.items()}
    assert by_key["drops"]["state_class"] == "total_increasing"
    assert by_key["fps"]["state_class"] == "measurement"
    assert by_key["storage_mb"]["device_class"] == "data_size"


def test_storage_used_is_measured_after_each_clip_and_each_retention_pass(tmp_path) -> None:
    from test_vault_roundtrip import record_one

    dev, _ = record_one(tmp_path)  # a clip recorded through the recorder, then the vault stopped
    stored = dev.vault.store.total_bytes()
    assert stored > 0 and dev.vault.bytes_used == stored  # measured when the clip closed, not on read
    freed = dev.vault.enforce_retention(disk_full=True, free_target=1 << 60)  # every clip goes
    assert freed and dev.vault.store.total_bytes() == 0 and dev.vault.bytes_used == 0
