"""Export over a real mosquitto: bundle chunks to the recipient topic, reassembled and verified by the recipient."""

from __future__ import annotations

from pathlib import Path

from doorkeep.device.config import MqttSection
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.topics import Topics
from doorkeep.device.vault.bundle_chunks import BundleAssembler
from doorkeep.device.vault.bundle_open import open_bundle
from doorkeep.device.vault.grants import issue_grant
from doorkeep.device.vault.vault import recipient_topic_id
from fixtures_broker import Mosquitto, Subscriber
from vault_support import make_device, make_packets, sealed_keys, write_clip


def test_export_over_mqtt(tmp_path: Path, mosquitto: Mosquitto) -> None:
    dev = make_device(tmp_path)
    write_clip(dev, "c1", make_packets(40))
    grant = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "c1"),
                        recipient=dev.recipient.public, recipient_name="R", purpose="p", requester="q")
    topics = Topics(dev.identity.device_id)
    client = MqttClient(MqttSection(host=mosquitto.host, port=mosquitto.port), client_id=dev.identity.device_id)
    client.start()
    try:
        client.wait_connected(10)
        topic = topics.recipient(recipient_topic_id(dev.recipient.public))
        with Subscriber(mosquitto, topic) as sub:
            n = dev.vault.export_mqtt(grant.to_bytes(), client.publish_raw, topics.recipient, chunk_size=2000)
            asm = BundleAssembler(tmp_path / "in.bundle")
            bundle = None
            for t, payload, retain in sub.wait_for(n, timeout=20):
                assert t == topic and not retain and len(payload) <= topics.spec_for(t).max_bytes  # type: ignore[union-attr]
                bundle = asm.add(payload) or bundle
    finally:
        client.stop()
    assert n > 2 and bundle is not None
    opened = open_bundle(bundle, dev.recipient, owner=dev.owner.public)
    assert [c.clip_id for c in opened.clips] == ["c1"]
