"""Streaming releases (#14.5): the windowed MQTT publisher, the file export's order (bundle fsynced before the grant
is spent), exports that stop on a clip changed on disk, retention that spares clips being released, and a
recipient that keeps no MP4 of a bundle that fails later on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from doorkeep.device.errors import InvalidArgument, ReleaseError
from doorkeep.device.publish.mqtt import PublishTimeout
from doorkeep.device.vault.bundle_chunks import BundleAssembler, publish_windowed
from doorkeep.device.vault.bundle_open import open_bundle, read_bundle
from doorkeep.device.vault.grants import issue_grant
from doorkeep.device.vault.keys import MIN
from vault_support import Device, make_device, make_packets, release, sealed_keys, write_clip


@pytest.fixture
def dev(tmp_path: Path) -> Device:
    d = make_device(tmp_path)
    write_clip(d, "clipA", make_packets(40))
    write_clip(d, "clipB", make_packets(40, seed=1), event_id="ev2")
    return d


def grant(dev: Device, *clips: str) -> bytes:
    return issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, *clips),
                       recipient=dev.recipient.public, recipient_name="R", purpose="p", requester="q").to_bytes()


def kinds(dev: Device) -> list[dict]:
    return [json.loads(x) for x in (dev.state / "audit.log").read_text().splitlines()]


class Broker:
    """A fake QoS 1 path: a message is acknowledged only when its handle is waited on; counts what is in flight."""

    def __init__(self, *, never_ack_after: int | None = None) -> None:
        self.payloads: list[bytes] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.never_ack_after = never_ack_after

    def publish_raw(self, topic: str, payload: bytes, *, qos: int = 1) -> Broker.Handle:
        assert qos == 1
        self.payloads.append(payload)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return Broker.Handle(self, len(self.payloads))

    class Handle:
        def __init__(self, broker: Broker, n: int) -> None:
            self.broker, self.n, self.acked = broker, n, False

        def wait(self, timeout: float | None = None) -> None:
            if self.broker.never_ack_after is not None and self.n > self.broker.never_ack_after:
                raise PublishTimeout(f"message {self.n} not acknowledged within {timeout} s")
            if not self.acked:
                self.acked = True
                self.broker.in_flight -= 1


def test_mqtt_export_keeps_a_window(dev: Device, tmp_path: Path) -> None:
    broker = Broker()
    n = dev.vault.export_mqtt(grant(dev, "clipA", "clipB"), broker.publish_raw, lambda rid: f"t/{rid}",
                              chunk_size=1000, window=4)
    assert n == len(broker.payloads) > 20
    assert broker.max_in_flight <= 4 and broker.in_flight == 0  # never more than the window; all acknowledged
    asm = BundleAssembler(tmp_path / "in.bundle")
    out = None
    for p in reversed(broker.payloads):
        out = asm.add(p) or out
    assert out is not None
    assert [c.clip_id for c in open_bundle(out, dev.recipient, owner=dev.owner.public).clips] == ["clipA", "clipB"]
    assert kinds(dev)[-1]["kind"] == "export" and kinds(dev)[-1]["f"]["destination"] == "mqtt"


def test_mqtt_export_stops_when_unacknowledged(dev: Device) -> None:
    broker = Broker(never_ack_after=3)
    with pytest.raises(ReleaseError) as ei:
        dev.vault.export_mqtt(grant(dev, "clipA"), broker.publish_raw, lambda rid: f"t/{rid}", chunk_size=500,
                              window=2, timeout_s=0.01)
    assert ei.value.reason == "export_failed"
    assert len(broker.payloads) <= 3 + 2  # stopped at the window, did not push the rest into memory
    last = kinds(dev)[-1]
    assert last["kind"] == "export_failed" and last["f"]["spent"] is True and last["f"]["reason"] == "publish_failed"


def test_publish_windowed_helper_bounds_in_flight() -> None:
    broker = Broker()
    n = publish_windowed((bytes([i]) for i in range(50)), lambda m: broker.publish_raw("t", m), window=3)
    assert n == 50 and broker.max_in_flight == 3 and broker.in_flight == 0


def test_file_export_spends_the_grant_only_after_the_bundle_is_on_disk(dev: Device, tmp_path: Path,
                                                                       small_tmpfs) -> None:
    g = grant(dev, "clipA", "clipB")
    full = small_tmpfs(64)  # smaller than the bundle: the disk fills up mid-export
    with pytest.raises(ReleaseError) as ei:
        dev.vault.export_to_file(g, full / "b.bundle")
    assert ei.value.reason == "export_failed"
    last = kinds(dev)[-1]
    assert last["kind"] == "export_failed" and last["f"]["spent"] is False and last["f"]["reason"] == "ENOSPC"
    assert not any(k["kind"] in ("grant_accepted", "export") for k in kinds(dev))
    assert list(full.iterdir()) == []  # no bundle, no temporary file
    n = len(kinds(dev))
    with pytest.raises(InvalidArgument):  # a directory as the output: refused before the grant is looked at
        dev.vault.export_to_file(g, tmp_path)
    assert len(kinds(dev)) == n
    out = dev.vault.export_to_file(g, tmp_path / "b.bundle")  # the same grant still works
    assert [c.clip_id for c in open_bundle(out, dev.recipient).clips] == ["clipA", "clipB"]
    assert not list(tmp_path.glob(".b.bundle.tmp*"))
    assert [k["kind"] for k in kinds(dev)[-2:]] == ["grant_accepted", "export"]


def test_export_stops_on_a_clip_changed_on_disk(dev: Device, tmp_path: Path) -> None:
    path = dev.vault.store.clip_path("clipB")
    data = bytearray(path.read_bytes())
    data[-10] ^= 1  # bit rot in the last chunk: the manifest no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(ReleaseError) as ei:
        dev.vault.export_to_file(grant(dev, "clipA", "clipB"), tmp_path / "b.bundle")
    assert ei.value.reason == "export_failed" and "clipB" in str(ei.value)
    assert not (tmp_path / "b.bundle").exists() and not list(tmp_path.glob(".b.bundle*"))
    assert kinds(dev)[-1]["f"]["reason"] == "clip_damaged"


def test_retention_spares_clips_being_released(tmp_path: Path) -> None:
    dev = make_device(tmp_path)
    write_clip(dev, "old", make_packets(40))
    write_clip(dev, "new", make_packets(700, seed=2))
    assert dev.vault.store.total_bytes() > 1 << 20
    dev.vault.section = dataclasses.replace(dev.vault.section, max_bytes=1 << 20)  # one of them must go
    shredded: list[str] = []

    def write(piece: bytes) -> None:  # retention runs while the export is under way
        if not shredded:
            shredded.extend(dev.vault.enforce_retention() or ["(none)"])
        out.append(piece)

    out: list[bytes] = []
    dev.vault.export_stream(grant(dev, "old"), write, destination="test")
    assert shredded == ["new"]  # only the clip not being released
    assert open_bundle(b"".join(out), dev.recipient).clips[0].clip_id == "old"


def test_recipient_keeps_no_mp4_of_a_bundle_failing_later(dev: Device, tmp_path: Path) -> None:
    from doorkeep.tools.cli import main

    bundle = bytearray(release(dev, grant(dev, "clipA", "clipB")))
    bundle[-30] ^= 1  # the second clip's last chunk
    (tmp_path / "b.bundle").write_bytes(bytes(bundle))
    dev.recipient.save(tmp_path / "r.key", b"pw", limits=MIN)
    (tmp_path / "pw").write_text("pw")
    out = tmp_path / "mp4"
    rc = main(["decrypt", str(tmp_path / "b.bundle"), "--key", str(tmp_path / "r.key"), "--passphrase-file",
               str(tmp_path / "pw"), "--out", str(out), "--allow-unverified-owner"])  # gets as far as decrypting
    assert rc == 1 and list(out.iterdir()) == []  # clipA was decrypted first, but is not kept


def test_reader_report_needs_every_clip_read(dev: Device) -> None:
    data = release(dev, grant(dev, "clipA", "clipB"))
    with read_bundle(data, dev.recipient) as b:
        first = next(b.clips())
        assert sum(1 for _ in first.packets()) > 0
        with pytest.raises(ReleaseError) as ei:
            b.report()
    assert ei.value.reason == "truncated"
    with read_bundle(data, dev.recipient) as b:
        for _ in b.clips():
            pass  # not reading the packets still verifies them on the way to the next clip
        assert all(c["packets"] > 0 for c in b.report()["clips"])


def test_grant_is_spent_only_after_the_bundle_is_durable(dev: Device, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync of the bundle fails (EIO): the grant must still be unspent — it is recorded only once the bundle is on
    disk for good."""
    import errno
    import os

    real = os.fsync

    def fsync(fd: int) -> None:
        if ".b.bundle." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        real(fd)

    g = grant(dev, "clipA")
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(ReleaseError):
        dev.vault.export_to_file(g, tmp_path / "b.bundle")
    monkeypatch.setattr(os, "fsync", real)
    last = kinds(dev)[-1]
    assert (last["kind"], last["f"]["reason"], last["f"]["spent"]) == ("export_failed", "EIO", False)
    assert not (tmp_path / "b.bundle").exists() and not list(tmp_path.glob(".b.bundle*"))
    dev.vault.export_to_file(g, tmp_path / "b.bundle")  # not spent: it still works
