"""The broker fixtures themselves: plain, restart on the same port, mutual TLS with the per-device ACL."""

from __future__ import annotations

import queue
import ssl

import paho.mqtt.client as mqtt
import pytest

pytestmark = pytest.mark.broker


def _client(broker, *, cert=None, proto=mqtt.MQTTv311) -> tuple[mqtt.Client, queue.Queue]:
    inbox: queue.Queue = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=proto)
    if cert is not None:
        c.tls_set(ca_certs=str(broker.certs.ca), certfile=str(cert.cert), keyfile=str(cert.key),
                  tls_version=ssl.PROTOCOL_TLS_CLIENT)
    c.on_message = lambda _c, _u, msg: inbox.put((msg.topic, msg.payload))
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c, inbox


def _sub(c: mqtt.Client, topic: str) -> None:
    done = queue.Queue()
    c.on_subscribe = lambda *a: done.put(a)
    c.subscribe(topic, qos=1)
    done.get(timeout=5)


def test_plain_broker_roundtrip_and_restart(mosquitto) -> None:
    port = mosquitto.port
    mosquitto.restart()
    assert mosquitto.port == port
    c, inbox = _client(mosquitto)
    try:
        _sub(c, "t/#")
        c.publish("t/x", b"hi", qos=1).wait_for_publish(5)
        assert inbox.get(timeout=5) == ("t/x", b"hi")
    finally:
        c.loop_stop()
        c.disconnect()


def test_tls_acl_confines_device(mosquitto_tls) -> None:
    dev = mosquitto_tls.certs.client("dk-aaaaaaaaaaaaaaaa")
    hub = mosquitto_tls.certs.client("hub")
    h, inbox = _client(mosquitto_tls, cert=hub)
    d, _ = _client(mosquitto_tls, cert=dev)
    try:
        _sub(h, "doorkeep/#")
        d.publish("doorkeep/dk-bbbbbbbbbbbbbbbb/event", b"forged", qos=1).wait_for_publish(5)
        d.publish("doorkeep/dk-aaaaaaaaaaaaaaaa/event", b"mine", qos=1).wait_for_publish(5)
        assert inbox.get(timeout=5) == ("doorkeep/dk-aaaaaaaaaaaaaaaa/event", b"mine")
        assert inbox.empty()
    finally:
        for c in (h, d):
            c.loop_stop()
            c.disconnect()
