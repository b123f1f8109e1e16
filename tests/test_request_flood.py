"""A flood on the request inbox over a real mosquitto: 10,000 replays of a captured request and 10,000 garbage
messages grow the audit log by less than 64 KiB, and every event published during the flood is delivered.

(Before: every message was audited with an fsync, a replay was accepted again and again, and handling ran on the
MQTT network thread that also sends the events.) The latency figure is measured by ``doorkeep bench --only
channel`` (``request_flood_event_latency_p95_ms``), not asserted here."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from channel_support import audit_records, wait_for
from doorkeep.device.channel.wiring import build_channel
from doorkeep.device.config import Config, MqttSection
from doorkeep.device.events import Event
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.payload import verify
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.vault.vault import AUDIT_FILE
from doorkeep.tools.bench_channel import flood_messages
from fixtures_broker import Subscriber
from vault_support import make_device

pytestmark = [pytest.mark.broker, pytest.mark.slow]

N = 10_000


def test_flood_of_replays_and_garbage(tmp_path: Path, mosquitto) -> None:
    dev = make_device(tmp_path)
    audit = dev.state / AUDIT_FILE
    config = Config.from_dict({"device": {"state_dir": str(dev.state)},
                               "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "discovery": False}})
    pub = MqttPublisher(config.mqtt, dev.identity, state_dir=dev.state)
    channel = build_channel(config, dev.identity, pub.client, pub.topics, vault=dev.vault)
    flooder = MqttClient(MqttSection(host=mosquitto.host, port=mosquitto.port, discovery=False),
                         client_id="flooder")
    replay, garbage = flood_messages(N)
    received: list[str] = []
    with Subscriber(mosquitto, pub.topics.event) as sub:
        channel.start()
        pub.start()
        flooder.start()
        try:
            pub.client.wait_subscribed(10)
            flooder.wait_connected(10)
            before = audit.stat().st_size
            done = threading.Event()

            def flood() -> None:
                for i in range(N):
                    flooder.publish_raw(pub.topics.request_in, replay, qos=1)
                    flooder.publish_raw(pub.topics.request_in, garbage[i % len(garbage)], qos=1)
                done.set()

            t = threading.Thread(target=flood, name="test-flood")
            t.start()
            sent = 0
            while not done.is_set() or sent < 10:  # events keep happening while the flood arrives
                now = time.time()
                pub.on_event(Event(f"f{sent}", "doorbell", "press", now, now))
                sent += 1
                time.sleep(0.05)
            t.join()
            gate = channel.gate
            assert wait_for(lambda: gate.forwarded + gate.refused.total >= 2 * N, timeout=180), (
                gate.forwarded, gate.refused.total)
            for _ in range(sent):
                received.append(verify(sub.get(timeout=30)[1], dev.identity.public_bytes).event_id)
        finally:
            flooder.stop()
            channel.close()  # writes the counted refusal record
            pub.close()
    grown = audit.stat().st_size - before
    assert grown < 64 * 1024, f"the audit log grew by {grown} bytes"
    assert received == [f"f{i}" for i in range(sent)], "every event of the flood period was delivered, in order"
    assert gate.forwarded == 1, "the captured request was accepted once, never again"
    kinds = [r["kind"] for r in audit_records(dev.state)]
    assert kinds.count("request_received") == 1
    counted = [r["f"] for r in audit_records(dev.state) if r["kind"] == "request_refused"]
    assert sum(c["count"] for c in counted) == 2 * N - 1
    assert os.path.getsize(dev.state / "requests.seen") < 1024
