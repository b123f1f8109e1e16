"""The owner channel over a real mosquitto: owner-signed commands in, device-signed ciphertext out.

The owner lists clips, fetches one (resumably) and decrypts it on their side; fetches its thumbnail and a live
snapshot (sealed to the owner); fetches and checks audit records; applies a config; sends a grant (the device
exports to the recipient over MQTT); declines a request. The device never opens a clip.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from channel_support import audit_records, device_rig, owner_link, wait_for
from doorkeep.device.errors import ChannelError, CommandRefused
from doorkeep.device.vault.clips import decrypt_clip, open_clip_key, parse_header
from doorkeep.device.vault.grants import issue_grant
from vault_support import make_packets, sealed_keys, write_clip

pytestmark = pytest.mark.broker


def test_list_fetch_and_decrypt_as_the_owner(tmp_path: Path, mosquitto) -> None:
    packets = make_packets(40)
    with device_rig(tmp_path, mosquitto) as rig:
        for i in range(3):
            write_clip(rig.dev, f"20261128T00000{i}Z-0000000{i}", packets, event_id=f"ev{i}")
        with owner_link(rig, mosquitto) as link:
            clips = link.list_clips()
            assert [c.clip_id for c in clips] == [f"20261128T00000{i}Z-0000000{i}" for i in range(3)]
            assert clips[0].event_ids == ("ev0",) and clips[0].complete
            out = tmp_path / "got.clip"
            seen: list[tuple[int, int]] = []
            m = link.fetch_clip(clips[1].clip_id, out, progress=lambda d, t: seen.append((d, t)))
    stored = rig.dev.vault.store.clip_path(clips[1].clip_id).read_bytes()
    assert out.read_bytes() == stored, "the device sends the clip file exactly as stored"
    assert seen[-1] == (m.size, m.size)
    data = out.read_bytes()
    _h, got = decrypt_clip(data, open_clip_key(parse_header(data), rig.dev.owner))
    assert [p.data for p in got] == [p.data for p in packets]
    kinds = [r["kind"] for r in audit_records(rig.dev.state)]
    assert "owner_fetch" in kinds


def test_fetch_resumes_from_a_partial_file(tmp_path: Path, mosquitto) -> None:
    packets = make_packets(60)
    with device_rig(tmp_path, mosquitto) as rig:
        clip_id = "20261128T000000Z-00000001"
        write_clip(rig.dev, clip_id, packets)
        stored = rig.dev.vault.store.clip_path(clip_id).read_bytes()
        out = tmp_path / "c.clip"
        (tmp_path / "c.clip.part").write_bytes(stored[:1000])
        starts: list[int] = []
        with owner_link(rig, mosquitto) as link:
            link.fetch_clip(clip_id, out, progress=lambda d, t: starts.append(d))
    assert out.read_bytes() == stored
    assert starts[0] > 1000 and min(starts) > 1000, "resumed from the partial file, not from 0"


def test_snapshots_are_sealed_to_the_owner(tmp_path: Path, mosquitto) -> None:
    with device_rig(tmp_path, mosquitto) as rig:
        with owner_link(rig, mosquitto) as link:
            snap = link.live_snapshot()
            clip_id = "20261128T000000Z-00000001"
            write_clip(rig.dev, clip_id, make_packets(10))
            with pytest.raises(CommandRefused) as exc:
                link.fetch_snapshot(clip_id)
            assert exc.value.reason == "no_snapshot"
            rig.channel.snapshots.for_clip(clip_id, rig.dev.vault.store.snapshot_path(clip_id))
            assert wait_for(lambda: rig.dev.vault.store.snapshot_path(clip_id).exists())
            thumb = link.fetch_snapshot(clip_id)
    assert snap.jpeg[:3] == b"\xff\xd8\xff" and (snap.width, snap.height) == (320, 240)
    assert thumb.clip_id == clip_id and thumb.jpeg[:3] == b"\xff\xd8\xff"
    stored = rig.dev.vault.store.snapshot_path(clip_id).read_bytes()
    assert b"\xff\xd8\xff" not in stored, "the stored thumbnail is sealed, not a JPEG"


def test_audit_records_fetched_and_checked(tmp_path: Path, mosquitto) -> None:
    with device_rig(tmp_path, mosquitto) as rig:
        for i in range(50):
            rig.dev.vault.audit.append("test", i=i, pad="x" * 2000)  # > one 60 kB message
        with owner_link(rig, mosquitto) as link:
            recs = link.fetch_audit(0)
            tail = link.fetch_audit(10, prev_head=recs[9].hash)
    assert [r.index for r in recs] == list(range(len(recs))) and len(recs) >= 51
    assert recs[-1].kind == "test" and recs[-1].fields["i"] == 49
    assert tail[0].index == 10 and [r.hash for r in tail[:41]] == [r.hash for r in recs[10:51]]


def test_grant_over_the_channel_reaches_the_recipient(tmp_path: Path, mosquitto) -> None:
    from doorkeep.device.vault.bundle_chunks import BundleAssembler
    from doorkeep.device.vault.bundle_open import open_bundle
    from doorkeep.device.vault.vault import recipient_topic_id
    from fixtures_broker import Subscriber

    packets = make_packets(20)
    with device_rig(tmp_path, mosquitto) as rig:
        clip_id = "20261128T000000Z-00000001"
        write_clip(rig.dev, clip_id, packets)
        grant = issue_grant(rig.dev.owner, device_id=rig.device_id, sealed_keys=sealed_keys(rig.dev, clip_id),
                            recipient=rig.dev.recipient.public, recipient_name="Det. X", purpose="p", requester="PD")
        topic = rig.topics.recipient(recipient_topic_id(rig.dev.recipient.public))
        with Subscriber(mosquitto, topic) as sub, owner_link(rig, mosquitto) as link:
            verdict = link.send_grant(grant.to_bytes())
            assert verdict.ok and verdict.result["grant_id"] == grant.grant_id
            asm = BundleAssembler(tmp_path / "got.bundle")
            bundle = None
            while bundle is None:
                bundle = asm.add(sub.get(timeout=10)[1])
            again = link.send_grant(grant.to_bytes())  # a grant is spent once
    opened = open_bundle(bundle, rig.dev.recipient, owner=rig.dev.owner.public)
    assert [p.data for p in opened.clips[0].packets] == [p.data for p in packets]
    assert not again.ok and again.reason == "replayed"


def test_decline_is_audited(tmp_path: Path, mosquitto) -> None:
    with device_rig(tmp_path, mosquitto) as rig, owner_link(rig, mosquitto) as link:
        v = link.decline_request("ab" * 16, "not our street")
    assert v.ok
    last = [r for r in audit_records(rig.dev.state) if r["kind"] == "request_declined"]
    assert last and last[0]["f"] == {"request_id": "ab" * 16, "reason": "not our street"}


def test_config_command_uses_the_injected_handler(tmp_path: Path, mosquitto) -> None:
    got: list[bytes] = []
    applied: list[dict] = []

    def apply(doc: bytes) -> dict:
        got.append(doc)
        return {"ok": doc == b"good", "reason": "applied" if doc == b"good" else "bad-signature", "detail": "",
                "counter": 7, "changed": ["motion.hold_s"]}

    with device_rig(tmp_path, mosquitto, apply_config=apply, on_applied=applied.append) as rig, \
            owner_link(rig, mosquitto) as link:
        ok = link.apply_config(b"good")
        bad = link.apply_config(b"evil")
    assert ok.ok and ok.result == {"counter": 7, "changed": ["motion.hold_s"]}
    assert not bad.ok and bad.reason == "bad-signature"
    assert got == [b"good", b"evil"] and len(applied) == 1


def test_unknown_clip_is_a_signed_refusal(tmp_path: Path, mosquitto) -> None:
    with device_rig(tmp_path, mosquitto) as rig, owner_link(rig, mosquitto) as link:
        with pytest.raises(CommandRefused) as exc:
            link.fetch_clip("20261128T000000Z-00000009", tmp_path / "x")
    assert exc.value.reason == "unknown_clip"
    assert isinstance(exc.value, ChannelError)
    assert not (tmp_path / "x").exists() and time.time() > 0


def test_a_clip_gets_its_sealed_thumbnail_when_it_opens(tmp_path: Path, mosquitto) -> None:
    """The device cannot open a closed clip, so its thumbnail is made as the clip opens — from the newest lores
    frame, which the privacy mask has already blacked out — and sealed to the owner; it is shredded with the clip."""
    import numpy as np
    from doorkeep.device.events import Event
    from doorkeep.device.masks import PrivacyMask
    from doorkeep.device.preroll import PacketRing

    with device_rig(tmp_path, mosquitto) as rig:
        mask = PrivacyMask([[(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)]], width=320, height=240)
        rig.ring.lores_filters = (mask,)
        frame = np.full((360, 320), 200, dtype=np.uint8)
        rig.ring.push(frame, time.monotonic())
        ring = PacketRing(seconds=1.0)
        rig.dev.vault.start(ring)
        packets = make_packets(20)
        for i, p in enumerate(packets):
            if i == 5:
                rig.dev.vault.on_event(Event("ev1", "person", "start", p.t_wall, p.t_wall))
            ring.on_packet(p)
        clip_id = rig.dev.vault.recorder.recording
        assert clip_id is not None
        snap_path = rig.dev.vault.store.snapshot_path(clip_id)
        assert wait_for(lambda: snap_path.exists())
        rig.dev.vault.stop()
        with owner_link(rig, mosquitto) as link:
            snap = link.fetch_snapshot(clip_id)
        import av

        with av.open(__import__("io").BytesIO(snap.jpeg)) as c:
            y = next(c.decode(video=0)).to_ndarray(format="gray")
        assert y[:100, :140].mean() < 40 and y[140:, 180:].mean() > 150, "masked region black, the rest not"
        rig.dev.vault.store.shred(clip_id)
        assert not snap_path.exists()


def test_recipient_receive_then_decrypt(tmp_path: Path, mosquitto) -> None:
    """The recipient's commands end to end: `doorkeep recipient receive` assembles the bundle the device exports
    over MQTT (after `doorkeep owner send-grant`), and `doorkeep decrypt` opens it."""
    import subprocess
    import sys

    from doorkeep.device.vault.keys import MIN

    packets = make_packets(20)
    with device_rig(tmp_path, mosquitto) as rig:
        clip_id = "20261128T000000Z-00000001"
        write_clip(rig.dev, clip_id, packets)
        (tmp_path / "pass").write_text("pw\n")
        rig.dev.recipient.save(tmp_path / "r.key", b"pw", limits=MIN)
        (tmp_path / "r.key.pub").write_bytes(rig.dev.recipient.public.to_bytes())
        rig.dev.owner.save(tmp_path / "o.key", b"pw", limits=MIN)
        (tmp_path / "o.pub").write_bytes(rig.dev.owner.public.to_bytes())
        grant = issue_grant(rig.dev.owner, device_id=rig.device_id, sealed_keys=sealed_keys(rig.dev, clip_id),
                            recipient=rig.dev.recipient.public, recipient_name="Det. X", purpose="p", requester="PD")
        (tmp_path / "grant.json").write_bytes(grant.to_bytes())
        cli = [sys.executable, "-m", "doorkeep.tools.cli"]
        rx = subprocess.Popen([*cli, "recipient", "receive", "--broker", mosquitto.url, "--pub",
                               str(tmp_path / "r.key.pub"), "--device-id", rig.device_id, "--out",
                               str(tmp_path / "in.bundle"), "--seconds", "60"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert rx.stderr is not None and "waiting on" in rx.stderr.readline()
        sent = subprocess.run([*cli, "owner", "send-grant", str(tmp_path / "grant.json"), "--broker", mosquitto.url,
                               "--key", str(tmp_path / "o.key"), "--passphrase-file", str(tmp_path / "pass"),
                               "--device-key", rig.dev.identity.public_bytes.hex()],
                              capture_output=True, text=True, timeout=120, check=False)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        out, err = rx.communicate(timeout=60)
        assert rx.returncode == 0, out + err
    dec = subprocess.run([*cli, "decrypt", str(tmp_path / "in.bundle"), "--key", str(tmp_path / "r.key"),
                          "--passphrase-file", str(tmp_path / "pass"), "--owner", str(tmp_path / "o.pub"),
                          "--out", str(tmp_path / "mp4")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert dec.returncode == 0, dec.stdout + dec.stderr
    assert (tmp_path / "mp4" / f"{clip_id}.mp4").stat().st_size > 0
