"""Egress: a subscriber on ``#`` sees only documented topics, no imagery, nothing over the documented bounds."""

from __future__ import annotations

import time

import nacl.signing
import pytest
from doorkeep.device.button import SoftwareButton
from doorkeep.device.config import MqttSection
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.publish.topics import Topics
from fixtures_broker import Subscriber

pytestmark = pytest.mark.broker

#: JPEG, PNG and H.264 Annex B start codes: none may appear in anything the device publishes.
IMAGE_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"\x00\x00\x00\x01": "H.264 start code",
               b"\x00\x00\x01": "H.264 start code"}


#: Topics documented to carry ciphertext only (random bytes may contain a short magic by chance; these are checked
#: for plaintext by :func:`plaintext_leaks` instead).
CIPHERTEXT = {"recipient", "owner_reply"}


def egress_violations(messages: list[tuple[str, bytes, bool]], device_id: str) -> list[str]:
    """Every way the captured traffic breaks docs/mqtt.md (empty list: clean)."""
    topics = Topics(device_id)
    bad = []
    for topic, payload, _retain in messages:
        spec = topics.spec_for(topic)
        if spec is None:
            bad.append(f"undocumented topic {topic!r}")
            continue
        if len(payload) > spec.max_bytes:
            bad.append(f"{topic}: {len(payload)} bytes > documented {spec.max_bytes}")
        if spec.name in CIPHERTEXT:
            continue
        for magic, what in IMAGE_MAGIC.items():
            if magic in payload:
                bad.append(f"{topic}: payload contains {what} bytes")
    return bad


def plaintext_leaks(messages: list[tuple[str, bytes, bool]], secrets: dict[str, bytes]) -> list[str]:
    """Which plaintext media (name → bytes: H.264 packets, JPEGs) appear, by any 24-byte window, in the traffic."""
    bad = []
    for name, data in secrets.items():
        windows = {data[i:i + 24] for i in range(0, max(len(data) - 24, 1), 12)}
        for topic, payload, _r in messages:
            if any(w in payload for w in windows):
                bad.append(f"{name} appears on {topic}")
                break
    return bad


def test_egress_checker_catches_violations() -> None:
    did = "dk-aaaaaaaaaaaaaaaa"
    assert egress_violations([(f"doorkeep/{did}/snapshot", b"x", False)], did)
    assert egress_violations([(f"doorkeep/{did}/event", b"\xff\xd8\xff\xe0", False)], did)
    assert egress_violations([(f"doorkeep/{did}/event", b"x" * 257, False)], did)
    assert egress_violations([("doorkeep/dk-bbbbbbbbbbbbbbbb/event", b"x", False)], did)
    assert not egress_violations([(f"doorkeep/{did}/availability", b"online", True)], did)


def test_device_run_egress_is_clean(mosquitto, tmp_path) -> None:
    ident = DeviceIdentity(nacl.signing.SigningKey(bytes([41]) * 32))
    snap = {"uptime_s": 1.0, "fps": 30.0, "counters": {f"c{i}": i for i in range(60)},
            "gauges": {f"g{i}": float(i) for i in range(60)}, "latency_ms": {}}
    with Subscriber(mosquitto, "#") as sniff:
        with MqttPublisher(MqttSection(host=mosquitto.host, port=mosquitto.port, heartbeat_s=1), ident,
                           state_dir=tmp_path, stats=lambda: snap, audit_head=lambda: "0" * 64) as pub:
            button = SoftwareButton(sinks=[pub], holdoff_s=0)
            for i in range(5):
                pub.on_event(Event(f"e{i}", "person", "start", 1.7e9 + i, 1.7e9 + i, None, 0.9, "porch", True))
                button.press()
                pub.on_event(Event(f"e{i}", "person", "end", 1.7e9 + i + 1, 1.7e9 + i, 1.7e9 + i + 1, 0.9,
                                   "porch", True))
            sniff.wait_for(5, topic=Topics(ident.device_id).doorbell)
            assert pub.drain(10)
        seen = {t for t, _p, _r in sniff.all}
    assert egress_violations(sniff.all, ident.device_id) == []
    t = Topics(ident.device_id)
    assert {t.availability, t.event, t.person, t.doorbell, t.stats, t.discovery} <= seen


@pytest.mark.slow
def test_demo_run_egress_is_clean(mosquitto) -> None:
    """A whole ``doorkeep demo`` run against a real broker: documented topics only, signed events, no imagery."""
    import re
    import subprocess
    import sys

    from doorkeep.device.identity import device_id_for
    from doorkeep.device.publish.payload import verify

    with Subscriber(mosquitto, "#") as sniff:
        proc = subprocess.run([sys.executable, "-m", "doorkeep.tools.cli", "demo", "--seconds", "18", "--broker",
                               mosquitto.url], capture_output=True, text=True, timeout=240, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        key_hex = re.search(r"public key ([0-9a-f]{64})", proc.stdout)
        assert key_hex, proc.stdout[-3000:]
        key = bytes.fromhex(key_hex.group(1))
        device_id = device_id_for(key)
        topics = Topics(device_id)
        # the demo's last message is ``offline`` (acknowledged before it exited); everything before it is here
        while (topics.availability, b"offline") not in {(t, p) for t, p, _r in sniff.all}:
            sniff.get(timeout=30)
    assert sniff.all, "the demo published nothing"
    assert egress_violations(sniff.all, device_id) == []
    seen = {t for t, _p, _r in sniff.all}
    assert {topics.availability, topics.discovery, topics.stats} <= seen
    events = [verify(p, key) for t, p, _r in sniff.all if t == topics.event]
    assert all(e.device_id == device_id for e in events)
    # the demo's person is in view from 1.5 s to 10.5 s: its start and end were published (and passed the checks)
    assert [e.phase for e in events if e.kind == "person"][:2] == ["start", "end"], proc.stdout[-2000:]


def test_owner_channel_sends_only_ciphertext(mosquitto, tmp_path) -> None:
    """Everything the owner channel can make the device send — a listing, a clip fetched whole, its manifest and
    thumbnail, the live view, the audit log, a grant's export — crosses the broker without one plaintext H.264
    packet or JPEG, on documented topics within their bounds; the owner opens all of it on their side."""
    from channel_support import device_rig, owner_link, wait_for
    from doorkeep.device.vault.grants import issue_grant
    from vault_support import make_packets, sealed_keys, write_clip

    packets = make_packets(30)
    with device_rig(tmp_path, mosquitto) as rig, Subscriber(mosquitto, "#") as sniff:
        clip_id = "20261128T000000Z-00000001"
        write_clip(rig.dev, clip_id, packets)
        rig.channel.snapshots.for_clip(clip_id, rig.dev.vault.store.snapshot_path(clip_id))
        assert wait_for(lambda: rig.dev.vault.store.snapshot_path(clip_id).exists())
        grant = issue_grant(rig.dev.owner, device_id=rig.device_id, sealed_keys=sealed_keys(rig.dev, clip_id),
                            recipient=rig.dev.recipient.public, recipient_name="R", purpose="p", requester="q")
        with owner_link(rig, mosquitto) as link:
            assert [c.clip_id for c in link.list_clips()] == [clip_id]
            link.fetch_clip(clip_id, tmp_path / "c.clip")
            thumb = link.fetch_snapshot(clip_id)
            live = link.live_snapshot()
            link.fetch_audit(0)
            assert link.send_grant(grant.to_bytes()).ok
        time.sleep(0.5)
    sent = [(t, p, r) for t, p, r in sniff.all if not t.endswith("/owner/cmd")]
    assert any("/owner/reply/" in t for t, _p, _r in sent) and any("/recipient/" in t for t, _p, _r in sent)
    assert egress_violations(sent, rig.device_id) == []
    media = {f"packet {i}": p.data for i, p in enumerate(packets) if len(p.data) >= 48}
    media |= {"clip thumbnail JPEG": thumb.jpeg, "live view JPEG": live.jpeg}
    assert plaintext_leaks(sent, media) == []
    assert plaintext_leaks([("t", b"xx" + packets[0].data + b"yy", False)], {"p": packets[0].data}) != []
