"""Footage requests over a real mosquitto: `doorkeep request --send` → the device's inbox (off the network thread)
→ freshness, replay and rate checks → a bounded audit record, a device-signed notice to the hub and a constant
acknowledgement to the requester. Refusals are counted, never audited one by one, and answered with nothing."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from channel_support import audit_records, device_rig, utf8_request, wait_for
from doorkeep.device.publish.topics import SPEC
from doorkeep.device.vault.audit import verify as verify_audit
from doorkeep.device.vault.keys import MIN, SecretKeys
from doorkeep.device.vault.requests import make_request, parse_notice
from doorkeep.device.vault.vault import AUDIT_FILE
from fixtures_broker import Subscriber
from vault_support import make_packets, write_clip

pytestmark = pytest.mark.broker


def _request(key: SecretKeys | None = None, *, issued_at: int | None = None, **text: str) -> bytes:
    fields = {"requester": "PD", "incident": "1", "purpose": "x"} | text
    return make_request(key or SecretKeys.generate("recipient"), window=(time.time() - 60, time.time()),
                        issued_at=issued_at, **fields).to_bytes()


def _kinds(state: Path) -> list[str]:
    assert verify_audit(state / AUDIT_FILE, _key(state)).ok
    return [r["kind"] for r in audit_records(state)]


def _key(state: Path) -> bytes:
    from doorkeep.device.identity import DeviceIdentity

    return DeviceIdentity.load_or_create(state).public_bytes


def _cli_request(tmp_path: Path, broker, device_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    requester = SecretKeys.generate("recipient")
    (tmp_path / "pass").write_text("pw\n")
    requester.save(tmp_path / "pd.key", b"pw", limits=MIN, overwrite=True)
    return subprocess.run([sys.executable, "-m", "doorkeep.tools.cli", "request", "--key", str(tmp_path / "pd.key"),
                           "--passphrase-file", str(tmp_path / "pass"), "--requester", "Springfield PD",
                           "--incident", "2026-1142", "--purpose", "burglary on Elm St",
                           "--from", str(time.time() - 3600), "--to", str(time.time()),
                           "--send", broker.url, "--device", device_id, *extra],
                          capture_output=True, text=True, timeout=60, check=False)


def test_cli_request_reaches_the_hub_signed_audited_and_acknowledged(tmp_path: Path, mosquitto) -> None:
    with device_rig(tmp_path, mosquitto) as rig, Subscriber(mosquitto, rig.topics.request) as hub:
        proc = _cli_request(tmp_path, mosquitto, rig.device_id)
        _topic, payload, retained = hub.get(timeout=10)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "acknowledged by" in proc.stdout
    notice = parse_notice(payload, rig.dev.identity.public_bytes)
    assert not retained and notice.device_id == rig.device_id and notice.request.requester == "Springfield PD"
    assert b"clip" not in payload and rig.channel.gate.forwarded == 1
    assert "request_received" in _kinds(rig.dev.state)


def test_cli_says_unacknowledged_when_the_device_is_offline(tmp_path: Path, mosquitto) -> None:
    proc = _cli_request(tmp_path, mosquitto, "dk-aaaaaaaaaaaaaaaa", "--ack-timeout", "1")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert "published; the device has not acknowledged it" in proc.stdout


def test_refused_requests_are_counted_once_and_answered_with_nothing(tmp_path: Path, mosquitto) -> None:
    good = _request()
    forged = good.replace(b'"PD"', b'"FBI"')
    stale = _request(issued_at=int(time.time()) - 3600)
    future = _request(issued_at=int(time.time()) + 3600)
    with device_rig(tmp_path, mosquitto, channel_cfg={"refusal_audit_s": 3600}) as rig, \
            Subscriber(mosquitto, "doorkeep/#") as sniff:
        for msg in (forged, b"\x00" * 9000, b"{}", stale, future):
            rig.client.publish_raw(rig.topics.request_in, msg).wait(10)
        assert wait_for(lambda: rig.channel.gate.refused.pending == 5)
        time.sleep(0.3)
        sent = [t for t, _p, _r in sniff.all if t != rig.topics.request_in]
    assert sent == [], "a refused request makes the device publish nothing"
    refused = [r for r in audit_records(rig.dev.state) if r["kind"] == "request_refused"]
    assert len(refused) == 1, "one counted record, written at stop"
    assert refused[0]["f"]["count"] == 5
    assert refused[0]["f"]["reasons"] == {"bad_signature": 1, "too_big": 1, "malformed": 1, "stale": 1, "future": 1}


def test_replay_is_refused_and_a_new_key_still_gets_through(tmp_path: Path, mosquitto) -> None:
    pd = SecretKeys.generate("recipient")
    first = _request(pd)
    with device_rig(tmp_path, mosquitto) as rig, Subscriber(mosquitto, rig.topics.request) as hub:
        for _ in range(50):
            rig.client.publish_raw(rig.topics.request_in, first)
        second = _request(pd)  # the same requester's next fresh request is not eaten by its replays
        other = _request()
        rig.client.publish_raw(rig.topics.request_in, second).wait(10)
        rig.client.publish_raw(rig.topics.request_in, other).wait(10)
        got = [hub.get(timeout=10)[1] for _ in range(3)]
        assert wait_for(lambda: rig.channel.gate.refused.pending >= 49)
    ids = [parse_notice(p, rig.dev.identity.public_bytes).request.request_id for p in got]
    assert sorted(ids) == sorted(json.loads(m)["request_id"] for m in (first, second, other))
    assert rig.channel.gate.refused.total >= 49


def test_rate_limits_per_key_and_overall(tmp_path: Path, mosquitto) -> None:
    cfg = {"request_per_key_burst": 2, "request_per_key_per_hour": 0.01, "request_burst": 3,
           "request_per_hour": 0.01}
    pd = SecretKeys.generate("recipient")
    with device_rig(tmp_path, mosquitto, channel_cfg=cfg) as rig:
        for _ in range(4):
            rig.client.publish_raw(rig.topics.request_in, _request(pd)).wait(10)
        for _ in range(3):
            rig.client.publish_raw(rig.topics.request_in, _request()).wait(10)
        assert wait_for(lambda: rig.channel.gate.forwarded + rig.channel.gate.refused.pending == 7)
        reasons = dict(rig.channel.gate.refused._reasons)
    assert rig.channel.gate.forwarded == 3
    assert reasons == {"rate_key": 2, "rate_overall": 2}


def test_notice_stays_within_the_documented_bound(tmp_path: Path, mosquitto) -> None:
    """An 8 KiB request of non-ASCII text: the notice carries its bytes as received, so it stays ≤ 9216 B
    (re-serialised with \\u escapes it was 13,113 B)."""
    compact = utf8_request(SecretKeys.generate("recipient"), purpose="漢" * 1024, incident="漢" * 1024,
                           requester="é" * 256)
    assert 7000 < len(compact) <= SPEC["request_in"].max_bytes
    with device_rig(tmp_path, mosquitto) as rig, Subscriber(mosquitto, rig.topics.request) as hub:
        rig.client.publish_raw(rig.topics.request_in, compact).wait(10)
        payload = hub.get(timeout=10)[1]
    assert len(payload) <= SPEC["request"].max_bytes
    assert parse_notice(payload, rig.dev.identity.public_bytes).raw == compact


def test_notice_is_the_same_whether_or_not_footage_exists(tmp_path: Path, mosquitto) -> None:
    req = _request()
    got = []
    for name, clips in (("empty", 0), ("full", 3)):
        with device_rig(tmp_path / name, mosquitto) as rig, Subscriber(mosquitto, rig.topics.request) as hub, \
                Subscriber(mosquitto, rig.topics.request + "/ack/+") as ackq:
            for i in range(clips):
                write_clip(rig.dev, f"20261128T0000{i:02d}Z-0000000{i}", make_packets(4))
            rig.client.publish_raw(rig.topics.request_in, req).wait(10)
            got.append((hub.get(timeout=10)[1], ackq.get(timeout=10)[1]))
    (na, aa), (nb, ab) = got
    assert na.split(b"\n", 1)[1] == nb.split(b"\n", 1)[1] == req and len(na) == len(nb)
    assert len(aa) == len(ab)


def test_request_handling_never_holds_up_events(tmp_path: Path, mosquitto) -> None:
    """Requests are handled on the inbox worker: with that worker stuck, the network thread still delivers
    events (before, a slow request handler on paho's thread stalled every publish)."""
    with device_rig(tmp_path, mosquitto) as rig, Subscriber(mosquitto, rig.topics.event) as sub:
        stuck = threading.Event()
        gate = rig.channel.gate
        real = gate.handle

        def slow(data: bytes) -> None:
            stuck.wait(30)
            real(data)

        gate.handle = slow  # type: ignore[method-assign]
        try:
            rig.client.publish_raw(rig.topics.request_in, _request()).wait(10)
            time.sleep(0.2)
            for i in range(5):
                rig.client.publish_raw(rig.topics.event, f"e{i}".encode()).wait(10)
            assert [sub.get(timeout=5)[1] for _ in range(5)] == [f"e{i}".encode() for i in range(5)]
        finally:
            stuck.set()
        assert threading.current_thread().name not in ("doorkeep-inbox",)
        with pytest.raises(queue.Empty):
            sub.get(timeout=0.1)
