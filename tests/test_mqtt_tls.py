"""Mutual TLS with client certificates and an ACL confining each device to its own topics (real mosquitto)."""

from __future__ import annotations

import ssl

import nacl.signing
import paho.mqtt.client as paho
import pytest
from doorkeep.device.config import MqttSection
from doorkeep.device.errors import PublishError
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.mqtt import MqttClient, PublishRefused
from doorkeep.device.publish.payload import verify
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.publish.topics import Topics
from fixtures_broker import Subscriber

pytestmark = pytest.mark.broker

IDENT = DeviceIdentity(nacl.signing.SigningKey(bytes([3]) * 32))
VICTIM = DeviceIdentity(nacl.signing.SigningKey(bytes([4]) * 32))


def tls_settings(broker, cn: str, **kw) -> MqttSection:
    cert = broker.certs.client(cn)
    return MqttSection(host=broker.host, port=broker.port, ca=str(broker.certs.ca), cert=str(cert.cert),
                       key=str(cert.key), heartbeat_s=3600, **kw)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_signed_events_over_mutual_tls(mosquitto_tls, tmp_path, protocol) -> None:
    topics = Topics(IDENT.device_id)
    with Subscriber(mosquitto_tls, "doorkeep/#", cert=mosquitto_tls.certs.client("hub")) as hub, \
            MqttPublisher(tls_settings(mosquitto_tls, IDENT.device_id, protocol=protocol), IDENT,
                          state_dir=tmp_path) as pub:
        pub.on_event(Event("tls1", "person", "start", 1.0e9, 1.0e9, None, 0.8))
        _t, payload, _r = hub.wait_for(1, topic=topics.event)[0]
        assert verify(payload, IDENT.public_bytes).event_id == "tls1"
        assert pub.drain(10)


def test_acl_refuses_other_devices_topics_mqtt5(mosquitto_tls) -> None:
    """With MQTT 5 the broker answers a denied publish with "Not authorized" in the PUBACK."""
    client = MqttClient(tls_settings(mosquitto_tls, IDENT.device_id, protocol="5"), client_id=IDENT.device_id)
    client.start()
    try:
        client.wait_connected(10)
        with pytest.raises(PublishRefused, match="Not authorized"):
            client.publish_raw(Topics(VICTIM.device_id).event, b"forged", qos=1).wait(10)
        with pytest.raises(PublishRefused):
            client.publish_raw("homeassistant/device/" + VICTIM.device_id + "/config", b"{}", qos=1).wait(10)
        client.publish_raw(Topics(IDENT.device_id).event, b"own topic", qos=1).wait(10)  # allowed
    finally:
        client.stop()


def test_acl_refused_publish_never_reaches_subscriber_mqtt311(mosquitto_tls) -> None:
    """MQTT 3.1.1 cannot report the refusal; show the message never reaches a subscriber."""
    own, victim = Topics(IDENT.device_id), Topics(VICTIM.device_id)
    with Subscriber(mosquitto_tls, "doorkeep/#", cert=mosquitto_tls.certs.client("hub")) as hub:
        client = MqttClient(tls_settings(mosquitto_tls, IDENT.device_id), client_id=IDENT.device_id)
        client.start()
        try:
            client.wait_connected(10)
            client.publish_raw(victim.event, b"forged", qos=1).wait(10)
            client.publish_raw(victim.availability, b"offline", qos=1, retain=True).wait(10)
            client.publish_raw(own.event, b"marker", qos=1).wait(10)
            # one connection's messages arrive in order: once the marker is here, the denied ones would be too
            hub.wait_for(1, topic=own.event)
        finally:
            client.stop()
    assert not [m for m in hub.all if m[0].startswith(f"doorkeep/{VICTIM.device_id}/")]


def test_client_without_certificate_is_refused(mosquitto_tls) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.tls_set(ca_certs=str(mosquitto_tls.certs.ca), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    accepted: list[object] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: accepted.append(rc) if int(rc.value) == 0 else None
    try:
        c.connect(mosquitto_tls.host, mosquitto_tls.port)
        for _ in range(100):  # TLS 1.3: the broker's refusal arrives after the handshake; run until it drops us
            if c.loop(timeout=0.2) != paho.MQTT_ERR_SUCCESS:
                break
    except (ssl.SSLError, OSError):
        pass  # refused during the handshake
    finally:
        c.socket() and c.socket().close()
    assert not accepted, "the broker accepted a client without a certificate"


def test_missing_tls_file_names_the_key(tmp_path) -> None:
    with pytest.raises(PublishError, match=r"mqtt\.ca"):
        MqttClient(MqttSection(ca=str(tmp_path / "nope.pem")), client_id="x")
