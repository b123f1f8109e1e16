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


def test_attach_demo_mqtt_to_a_doorbell() -> None:
    pytest.importorskip("amqtt", reason="amqtt (extra 'demo') not installed")
    from doorkeep.device.app import Doorbell
    from doorkeep.device.config import CaptureSection, Config
    from doorkeep.device.sources.synthetic import SyntheticSource
    from doorkeep.tools.embedded_broker import attach_demo_mqtt

    config = Config().replace(capture=CaptureSection(source="synthetic", main_width=320, main_height=240,
                                                     lores_width=160, lores_height=120))
    bell = Doorbell.from_config(config, source=SyntheticSource(width=320, height=240, lores_width=160,
                                                               lores_height=120, encode=False))
    out = io.StringIO()
    mqtt = attach_demo_mqtt(bell, identity=IDENT, out=out)
    try:
        with bell:
            assert mqtt.publisher in bell.loop.event_sinks
            mqtt.button.press()
            mqtt.watcher.wait(count=1, seconds=20)
    finally:
        mqtt.close()
    assert mqtt.watcher.verified == 1 and "doorbell" in out.getvalue()
