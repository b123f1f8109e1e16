"""The hub checks the signed heartbeat over a real mosquitto: `doorkeep events` flags a heartbeat the broker
substituted (unsigned, or another head under the device's old signature) and a signed one whose audit head went
back, with exit status 3; the real publisher's heartbeat carries the vault's audit position and verifies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nacl.signing
import pytest
from doorkeep.device.config import MqttSection
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.heartbeat import heartbeat_payload, verify_heartbeat
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.publish.topics import Topics
from fixtures_broker import Subscriber

pytestmark = pytest.mark.broker

IDENT = DeviceIdentity(nacl.signing.SigningKey(bytes([9]) * 32))


def _events(broker, *messages: bytes, seconds: float = 3.0) -> subprocess.CompletedProcess[str]:
    """Publish ``messages`` on the stats topic while ``doorkeep events`` listens."""
    proc = subprocess.Popen([sys.executable, "-m", "doorkeep.tools.cli", "events", "--broker", broker.url,
                             "--device-key", IDENT.public_bytes.hex(), "--seconds", str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = MqttClient(MqttSection(host=broker.host, port=broker.port, discovery=False), client_id="fake-broker")
    client.start()
    try:
        client.wait_connected(10)
        topic = Topics(IDENT.device_id).stats
        assert proc.stderr is not None
        while "listening" not in proc.stderr.readline():
            pass
        for m in messages:
            client.publish_raw(topic, m, qos=1).wait(10)
        out, err = proc.communicate(timeout=60)
    finally:
        client.stop()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _hb(records: int, head: str) -> bytes:
    return heartbeat_payload({"uptime_s": 1.0}, identity=IDENT, audit_head=(records, head))


def test_substituted_heartbeats_are_flagged(mosquitto) -> None:
    good = _hb(10, "aa" * 32)
    unsigned = good[: good.index(b',"sig"')] + b"}"
    swapped = good.replace(b"aa" * 32, b"bb" * 32)
    r = _events(mosquitto, good, unsigned, swapped)
    assert r.returncode == 3, r.stderr
    assert "REJECTED (heartbeat unsigned)" in r.stderr and "REJECTED (heartbeat bad-signature)" in r.stderr


def test_an_audit_head_going_back_is_flagged(mosquitto) -> None:
    r = _events(mosquitto, _hb(10, "aa" * 32), _hb(12, "cc" * 32), _hb(10, "aa" * 32))
    assert r.returncode == 3, r.stderr
    assert "audit head went back: 10 records" in r.stderr


def test_good_heartbeats_pass(mosquitto) -> None:
    r = _events(mosquitto, _hb(10, "aa" * 32), _hb(11, "ab" * 32), seconds=2.0)
    assert r.returncode == 0, r.stderr
    assert "!! REJECTED" not in r.stderr and "heartbeat:" not in r.stderr


def test_the_publisher_signs_the_vault_position(mosquitto, tmp_path: Path) -> None:
    pos = (42, "cd" * 32)
    with Subscriber(mosquitto, Topics(IDENT.device_id).stats) as sub, \
            MqttPublisher(MqttSection(host=mosquitto.host, port=mosquitto.port, discovery=False), IDENT,
                          state_dir=tmp_path, audit_head=lambda: pos):
        payload = sub.get(timeout=10)[1]
    hb = verify_heartbeat(payload, IDENT.public_bytes)
    assert (hb["audit_records"], hb["audit_head"]) == pos and len(payload) <= 1024
