"""Owner-channel refusals over a real mosquitto: a command not signed by the pinned owner, a replayed command, a
command for another device, a stale or future one, a flood of commands — each refused, counted into one audit
record per interval, and answered with nothing (the device publishes no byte for them)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from channel_support import audit_records, device_rig, wait_for
from doorkeep.device.channel.protocol import parse_reply, sign_command
from doorkeep.device.vault.keys import SecretKeys
from fixtures_broker import Subscriber

pytestmark = pytest.mark.broker

QUIET = {"refusal_audit_s": 3600}  # one counted record, written when the channel closes


def _sent_by_device(sniff, rig) -> list[tuple[str, bytes]]:
    return [(t, p) for t, p, _r in sniff.all if t.startswith(f"doorkeep/{rig.device_id}/")
            and t != rig.topics.owner_cmd]


def _refused(rig) -> list[dict]:
    return [r["f"] for r in audit_records(rig.dev.state) if r["kind"] == "owner_cmd_refused"]


def test_each_kind_of_bad_command_is_refused_silently_and_counted_once(tmp_path: Path, mosquitto) -> None:
    with device_rig(tmp_path, mosquitto, channel_cfg=QUIET) as rig, Subscriber(mosquitto, "doorkeep/#") as sniff:
        owner, did = rig.dev.owner, rig.device_id
        stranger = sign_command(SecretKeys.generate("owner"), device_id=did, cmd="list_clips",
                                args={"after": "", "limit": 10}, reply_to="o-x")
        other_device = sign_command(owner, device_id="dk-aaaaaaaaaaaaaaaa", cmd="live_snapshot", reply_to="o-x")
        stale = sign_command(owner, device_id=did, cmd="live_snapshot", reply_to="o-x",
                             issued_at=int(time.time()) - 3600)
        future = sign_command(owner, device_id=did, cmd="live_snapshot", reply_to="o-x",
                              issued_at=int(time.time()) + 3600)
        tampered = bytearray(sign_command(owner, device_id=did, cmd="decline_request",
                                          args={"request_id": "ab" * 16, "reason": "no"}, reply_to="o-x"))
        tampered[tampered.index(b'"no"') + 1] = ord("y")
        for msg in (stranger, other_device, stale, future, bytes(tampered), b"garbage", b"{}\n"):
            rig.client.publish_raw(rig.topics.owner_cmd, msg).wait(10)
        assert wait_for(lambda: rig.channel.owner.refused.pending == 7)
        time.sleep(0.5)
        assert _sent_by_device(sniff, rig) == [], "a refused command makes the device publish nothing"
    refused = _refused(rig)
    assert len(refused) == 1 and refused[0]["count"] == 7
    assert refused[0]["reasons"] == {"not_owner": 1, "wrong_device": 1, "stale": 1, "future": 1,
                                     "bad_signature": 1, "malformed": 2}
    assert "request_declined" not in [r["kind"] for r in audit_records(rig.dev.state)]


def test_a_replayed_command_is_refused_and_answered_once(tmp_path: Path, mosquitto) -> None:
    with device_rig(tmp_path, mosquitto, channel_cfg=QUIET) as rig, \
            Subscriber(mosquitto, rig.topics.owner_reply("o-replay")) as replies:
        cmd = sign_command(rig.dev.owner, device_id=rig.device_id, cmd="decline_request",
                           args={"request_id": "cd" * 16, "reason": "once"}, reply_to="o-replay")
        for _ in range(5):
            rig.client.publish_raw(rig.topics.owner_cmd, cmd).wait(10)
        first = parse_reply(replies.get(timeout=10)[1], rig.dev.identity.public_bytes, rig.dev.owner)
        assert wait_for(lambda: rig.channel.owner.refused.pending == 4)
        time.sleep(0.3)
        assert len(replies.all) == 1
    assert first.ok
    declined = [r for r in audit_records(rig.dev.state) if r["kind"] == "request_declined"]
    assert len(declined) == 1
    assert _refused(rig)[0]["reasons"] == {"replayed": 4}


def test_a_replay_after_a_restart_is_still_refused(tmp_path: Path, mosquitto) -> None:
    cmd = None
    owner = SecretKeys.generate("owner")
    for round_ in range(2):
        with device_rig(tmp_path, mosquitto, channel_cfg=QUIET, owner=owner) as rig, \
                Subscriber(mosquitto, rig.topics.owner_reply("o-r")) as replies:
            cmd = cmd or sign_command(rig.dev.owner, device_id=rig.device_id, cmd="decline_request",
                                      args={"request_id": "ef" * 16, "reason": "x"}, reply_to="o-r")
            rig.client.publish_raw(rig.topics.owner_cmd, cmd).wait(10)
            if round_ == 0:
                replies.get(timeout=10)
            else:
                assert wait_for(lambda: rig.channel.owner.refused.pending == 1)
                assert not replies.all


def test_a_flood_of_owner_commands_is_rate_limited(tmp_path: Path, mosquitto) -> None:
    cfg = QUIET | {"command_burst": 10, "command_rate": 0.1}
    with device_rig(tmp_path, mosquitto, channel_cfg=cfg) as rig, \
            Subscriber(mosquitto, rig.topics.owner_reply("o-flood")) as replies:
        cmds = [sign_command(rig.dev.owner, device_id=rig.device_id, cmd="list_clips",
                             args={"after": "", "limit": 1}, reply_to="o-flood") for _ in range(200)]
        for c in cmds:
            rig.client.publish_raw(rig.topics.owner_cmd, c)
        owner = rig.channel.owner
        assert wait_for(lambda: owner.refused.pending + owner.accepted.pending == 200, timeout=30)
        assert wait_for(lambda: len(replies.all) >= owner.accepted.pending)
        time.sleep(0.3)
        answered = len(replies.all)
    assert 10 <= answered <= 12, "the burst, plus what the sustained rate refilled"
    refused = _refused(rig)
    assert len(refused) == 1 and refused[0]["reasons"] == {"rate": 200 - answered}
    handled = [r["f"] for r in audit_records(rig.dev.state) if r["kind"] == "owner_commands"]
    assert handled == [handled[0]] and handled[0]["count"] == answered


def test_counted_records_follow_the_interval_not_the_messages(tmp_path: Path, mosquitto) -> None:
    with device_rig(tmp_path, mosquitto, channel_cfg={"refusal_audit_s": 1}) as rig:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.5:
            for _ in range(50):
                rig.client.publish_raw(rig.topics.owner_cmd, b"garbage")
            time.sleep(0.1)
        assert wait_for(lambda: rig.channel.owner.refused.pending == 0 or rig.channel.owner.refused.total >= 1000)
    refused = _refused(rig)
    assert 2 <= len(refused) <= 5, f"{len(refused)} records for {sum(r['count'] for r in refused)} refusals"
    assert sum(r["count"] for r in refused) == rig.channel.owner.refused.total
