"""The publisher against a real mosquitto: QoS1 delivery, last will, retained discovery + HA re-announce, heartbeat."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import nacl.signing
import pytest
from doorkeep.device.config import MqttSection
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.payload import verify
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.publish.topics import Topics
from fixtures_broker import Subscriber

pytestmark = pytest.mark.broker

T0 = 1_764_370_000.0


def identity(seed: int = 7) -> DeviceIdentity:
    return DeviceIdentity(nacl.signing.SigningKey(bytes([seed]) * 32))


def settings(broker, **kw) -> MqttSection:
    return MqttSection(host=broker.host, port=broker.port, heartbeat_s=3600, **kw)


def person(i: int, phase: str = "start") -> Event:
    return Event(f"ev{i}", "person", phase, T0 + i, T0 + i, T0 + i + 0.5 if phase == "end" else None, 0.9, "porch",
                 True)


def test_qos1_events_delivered_signed_in_order(mosquitto, tmp_path) -> None:
    ident = identity()
    topics = Topics(ident.device_id)
    with Subscriber(mosquitto, topics.event) as sub, \
            MqttPublisher(settings(mosquitto), ident, state_dir=tmp_path) as pub:
        for i in range(20):
            pub.on_event(person(i))
        got = sub.wait_for(20)
        assert pub.drain(10)
    events = [verify(p, ident.public_bytes) for _t, p, retain in got]
    assert [e.event_id for e in events] == [f"ev{i}" for i in range(20)]
    assert not any(retain for *_x, retain in got)


def test_person_state_and_doorbell_for_home_assistant(mosquitto, tmp_path) -> None:
    ident = identity()
    topics = Topics(ident.device_id)
    with Subscriber(mosquitto, f"doorkeep/{ident.device_id}/#") as sub, \
            MqttPublisher(settings(mosquitto), ident, state_dir=tmp_path) as pub:
        pub.on_event(person(1))
        pub.on_event(Event("bell1", "doorbell", "press", T0 + 2, T0 + 2))
        pub.on_event(person(1, "end"))
        person_states = [p for _t, p, _r in sub.wait_for(3, topic=topics.person)]
        assert person_states == [b"OFF", b"ON", b"OFF"]  # the true state (nobody yet) on start, then the event
    doorbell = [p for t, p, _r in sub.all if t == topics.doorbell]
    assert json.loads(doorbell[0]) == {"event_type": "press", "event_id": "bell1"}
    # the retained state survives for a late subscriber (Home Assistant restarting)
    with Subscriber(mosquitto, topics.person) as late:
        assert late.get() == (topics.person, b"OFF", True)


def test_discovery_retained_and_reannounced_on_ha_online(mosquitto, tmp_path) -> None:
    ident = identity()
    topics = Topics(ident.device_id)
    with Subscriber(mosquitto, topics.discovery) as live, \
            MqttPublisher(settings(mosquitto), ident, state_dir=tmp_path, device_name="Porch"):
        live.get()  # the announcement on connect; a newcomer now gets it from the retained store
        with Subscriber(mosquitto, topics.discovery) as ha:
            _topic, payload, retained = ha.get()
            assert retained, "discovery config must be retained"
            cfg = json.loads(payload)
            assert cfg["dev"]["ids"] == [ident.device_id] and cfg["dev"]["name"] == "Porch"
            comps = {c["p"]: c for c in cfg["cmps"].values()}
            assert comps["binary_sensor"]["device_class"] == "occupancy"
            assert comps["event"]["device_class"] == "doorbell" and comps["event"]["event_types"] == ["press"]
            assert cfg["availability"][0]["topic"] == topics.availability
            # Home Assistant restarts and announces itself: the device re-sends its config
            with Subscriber(mosquitto, "ha/unused") as home_assistant:
                home_assistant.client.publish(topics.ha_status, b"online", qos=1).wait_for_publish(5)
            topic2, payload2, retained2 = ha.get()
            assert (topic2, payload2, retained2) == (topics.discovery, payload, False)


def test_heartbeat_retained_with_audit_head(mosquitto, tmp_path) -> None:
    ident = identity()
    topics = Topics(ident.device_id)
    snap = {"uptime_s": 5.0, "fps": 29.97, "counters": {"frames": 150, "ring_drops": 2},
            "latency_ms": {"detect": {"n": 10, "p50": 12.5, "p95": 20.0, "max": 30.0}},
            "gauges": {"storage_bytes": 12_500_000.0}}
    with Subscriber(mosquitto, topics.stats) as live, \
            MqttPublisher(settings(mosquitto), ident, state_dir=tmp_path, stats=lambda: snap,
                          audit_head=lambda: "ab" * 32):
        live.get()  # the first beat, sent on connect
        with Subscriber(mosquitto, topics.stats) as late:
            _t, payload, retained = late.get()
    hb = json.loads(payload)
    assert retained
    assert hb["fps"] == 29.97 and hb["drops"] == 2 and hb["inference_ms"] == 12.5 and hb["storage_mb"] == 12.5
    assert hb["audit_head"] == "ab" * 32 and hb["outbox"] in (0, 1)  # at most the person OFF queued on start


DEVICE_SCRIPT = textwrap.dedent("""
    import sys, time, nacl.signing
    from doorkeep.device.config import MqttSection
    from doorkeep.device.identity import DeviceIdentity
    from doorkeep.device.publish.publisher import MqttPublisher
    ident = DeviceIdentity(nacl.signing.SigningKey(bytes([7]) * 32))
    pub = MqttPublisher(MqttSection(host="127.0.0.1", port=int(sys.argv[1]), keepalive=5), ident,
                        state_dir=sys.argv[2])
    pub.start()
    pub.client.wait_connected(10)
    print("connected", flush=True)
    time.sleep(600)
""")


def test_last_will_offline_on_abrupt_death(mosquitto, tmp_path) -> None:
    ident = identity()
    topics = Topics(ident.device_id)
    with Subscriber(mosquitto, topics.availability) as sub:
        dev = subprocess.Popen([sys.executable, "-c", DEVICE_SCRIPT, str(mosquitto.port), str(tmp_path)],
                               stdout=subprocess.PIPE, text=True)
        try:
            assert dev.stdout is not None and dev.stdout.readline().strip() == "connected"
            assert sub.get() == (topics.availability, b"online", False)
            os.kill(dev.pid, signal.SIGKILL)  # no DISCONNECT packet: the broker must publish the will
            dev.wait(10)
            assert sub.get(timeout=20) == (topics.availability, b"offline", False)
        finally:
            dev.kill()
            dev.wait()
    with Subscriber(mosquitto, topics.availability) as late:
        assert late.get() == (topics.availability, b"offline", True)


def test_retained_state_restored_after_broker_restart(mosquitto, tmp_path) -> None:
    """A broker without persistence forgets retained messages; the device re-sends them when it reconnects."""
    ident = identity()
    topics = Topics(ident.device_id)
    with MqttPublisher(settings(mosquitto, reconnect_max_s=1), ident, state_dir=tmp_path) as pub:
        pub.on_event(person(1))
        assert pub.drain(10)
        mosquitto.restart()
        with Subscriber(mosquitto, topics.availability) as avail:  # wait for the device to be back
            while avail.get(timeout=30)[1] != b"online":
                pass
        wanted = {topics.person, topics.availability, topics.discovery, topics.stats}
        with Subscriber(mosquitto, "#") as first:  # wait until the device has re-sent everything …
            while not wanted <= {t for t, _p, _r in first.all}:
                first.get(timeout=30)
        with Subscriber(mosquitto, "#") as late:  # … then a newcomer gets it all from the retained store
            got = {t: (p, r) for t, p, r in late.wait_for(4, timeout=30)}
    assert got[topics.person] == (b"ON", True)
    assert got[topics.availability] == (b"online", True)
    assert got[topics.discovery][1] is True and got[topics.stats][1] is True


def test_long_zone_name_does_not_block_the_event(mosquitto, tmp_path) -> None:
    ident = identity()
    with Subscriber(mosquitto, Topics(ident.device_id).event) as sub, \
            MqttPublisher(settings(mosquitto), ident, state_dir=tmp_path) as pub:
        pub.on_event(Event("z1", "person", "start", T0, T0, None, 0.9, "Front porch by the garage door", False))
        _t, payload, _r = sub.get()
    assert verify(payload, ident.public_bytes).zone == "Front porch by the g"
