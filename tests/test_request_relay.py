"""Footage requests over a real mosquitto: `doorkeep request --send` → the device's inbox → verified, audited,
forwarded to the owner's hub; forged requests go nowhere; the notice never depends on the footage."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doorkeep.device.config import MqttSection
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.topics import Topics
from doorkeep.device.request_relay import RequestRelay
from doorkeep.device.vault.audit import verify as verify_audit
from doorkeep.device.vault.keys import MIN, SecretKeys
from doorkeep.device.vault.requests import make_request
from doorkeep.device.vault.vault import AUDIT_FILE
from fixtures_broker import Subscriber
from vault_support import make_device, make_packets, write_clip

pytestmark = pytest.mark.broker


def _relay(dev, broker) -> tuple[MqttClient, RequestRelay]:
    client = MqttClient(MqttSection(host=broker.host, port=broker.port, discovery=False),
                        client_id=dev.identity.device_id)
    relay = RequestRelay(client, Topics(dev.identity.device_id), dev.vault)
    relay.attach()
    client.start()
    client.wait_connected(10)
    client.wait_subscribed(10)
    return client, relay


def _audit_kinds(dev) -> list[str]:
    path = dev.state / AUDIT_FILE
    assert verify_audit(path, dev.identity.public_bytes).ok
    return [json.loads(line)["kind"] for line in path.read_text().splitlines()]


def test_request_sent_by_the_cli_reaches_the_hub_verified_and_audited(tmp_path: Path, mosquitto) -> None:
    dev = make_device(tmp_path)
    topics = Topics(dev.identity.device_id)
    requester = SecretKeys.generate("recipient")
    (tmp_path / "pass").write_text("pw\n")
    requester.save(tmp_path / "pd.key", b"pw", limits=MIN)
    client, relay = _relay(dev, mosquitto)
    try:
        with Subscriber(mosquitto, topics.request) as hub:
            subprocess.run([sys.executable, "-m", "doorkeep.tools.cli", "request", "--key", str(tmp_path / "pd.key"),
                            "--passphrase-file", str(tmp_path / "pass"), "--requester", "Springfield PD",
                            "--incident", "2026-1142", "--purpose", "burglary on Elm St",
                            "--from", str(time.time() - 3600), "--to", str(time.time()),
                            "--send", mosquitto.url, "--device", dev.identity.device_id],
                           check=True, capture_output=True, timeout=60)
            _topic, payload, retained = hub.get(timeout=10)
    finally:
        client.stop()
    notice = json.loads(payload)
    assert not retained and notice["device_id"] == dev.identity.device_id
    assert notice["request"]["requester"] == "Springfield PD"
    assert "clips" not in payload.decode() and relay.forwarded == 1
    assert "request_received" in _audit_kinds(dev)


def test_forged_request_is_refused_audited_and_not_forwarded(tmp_path: Path, mosquitto) -> None:
    dev = make_device(tmp_path)
    topics = Topics(dev.identity.device_id)
    good = make_request(SecretKeys.generate("recipient"), requester="PD", incident="1", purpose="x",
                        window=(time.time() - 60, time.time())).to_bytes()
    forged = good.replace(b'"PD"', b'"FBI"')
    client, relay = _relay(dev, mosquitto)
    try:
        with Subscriber(mosquitto, topics.request) as hub:
            client.publish_raw(topics.request_in, forged).wait(10)
            client.publish_raw(topics.request_in, b"\x00" * 9000).wait(10)
            deadline = time.monotonic() + 10
            while relay.refused < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            with pytest.raises(queue.Empty):
                hub.get(timeout=1.0)
    finally:
        client.stop()
    assert relay.refused == 2 and relay.forwarded == 0
    assert _audit_kinds(dev).count("request_refused") == 2


def test_notice_is_the_same_whether_or_not_footage_exists(tmp_path: Path, mosquitto) -> None:
    """The relay looks at no clip: the notice's fields are identical for a device with and without clips."""
    req = make_request(SecretKeys.generate("recipient"), requester="PD", incident="1", purpose="x",
                       window=(time.time() - 3600, time.time()))
    notices = []
    for name, clips in (("empty", 0), ("full", 3)):
        dev = make_device(tmp_path / name)
        for i in range(clips):
            write_clip(dev, f"20261128T0000{i:02d}Z-0000000{i}", make_packets(4))
        topics = Topics(dev.identity.device_id)
        client, _ = _relay(dev, mosquitto)
        try:
            with Subscriber(mosquitto, topics.request) as hub:
                client.publish_raw(topics.request_in, req.to_bytes()).wait(10)
                notices.append(json.loads(hub.get(timeout=10)[1]))
        finally:
            client.stop()
    a, b = ({k: v for k, v in n.items() if k not in ("device_id", "received_at")} for n in notices)
    assert a == b
