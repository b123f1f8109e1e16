"""The demo's embedded broker (amqtt): the real publisher's signed events reach a verifying subscriber; clean stop."""

from __future__ import annotations

import io
import socket

import nacl.signing
import pytest
from doorkeep.device.config import MqttSection
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.tools.embedded_broker import EmbeddedBroker
from doorkeep.tools.hub import EventWatcher

IDENT = DeviceIdentity(nacl.signing.SigningKey(bytes([31]) * 32))


def test_signed_events_through_the_embedded_broker(tmp_path) -> None:
    pytest.importorskip("amqtt", reason="amqtt (extra 'demo') not installed")
    broker = EmbeddedBroker()
    broker.start()
    out = io.StringIO()
    watcher = EventWatcher(IDENT.public_bytes, out=out, err=io.StringIO())
    try:
        watcher.connect(MqttSection(host=broker.host, port=broker.port, discovery=False))
        watcher.wait_subscribed(10)
        with MqttPublisher(MqttSection(host=broker.host, port=broker.port, heartbeat_s=3600), IDENT,
                           state_dir=tmp_path) as pub:
            pub.on_event(Event("e1", "person", "start", 1.7e9, 1.7e9, None, 0.8, "porch", True))
            pub.on_event(Event("b1", "doorbell", "press", 1.7e9 + 1, 1.7e9 + 1))
            watcher.wait(count=2, seconds=20)
            assert pub.drain(10)
    finally:
        watcher.close()
        broker.stop()
        broker.stop()  # idempotent
    assert watcher.verified == 2 and not watcher.rejected
    assert "porch" in out.getvalue() and "doorbell" in out.getvalue()
    with pytest.raises(OSError), socket.create_connection((broker.host, broker.port), timeout=1):
        pass  # stopped: the port no longer accepts connections
