"""The demo's embedded broker (amqtt): signed events reach the verifying subscriber; clean stop."""

from __future__ import annotations

import io

import nacl.signing
import pytest
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.tools.embedded_broker import DemoMqtt

IDENT = DeviceIdentity(nacl.signing.SigningKey(bytes([31]) * 32))


def test_demo_mqtt_on_embedded_broker_prints_verified_events() -> None:
    pytest.importorskip("amqtt", reason="amqtt (extra 'demo') not installed")
    out = io.StringIO()
    demo = DemoMqtt.start(IDENT, out=out)
    try:
        demo.publisher.on_event(Event("e1", "person", "start", 1.7e9, 1.7e9, None, 0.8, "porch", True))
        demo.publisher.on_event(Event("b1", "doorbell", "press", 1.7e9 + 1, 1.7e9 + 1))
        demo.watcher.wait(count=2, seconds=20)
        assert demo.watcher.verified == 2 and not demo.watcher.rejected
    finally:
        demo.close()
        demo.close()  # idempotent
    text = out.getvalue()
    assert IDENT.device_id in text and "porch" in text and "doorbell" in text
