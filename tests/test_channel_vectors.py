"""Owner channel and signed heartbeat: the documented test vectors, and every mutation of a signed message refused."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import nacl.signing
import pytest
from doorkeep.device.channel.limits import FreshnessWindow
from doorkeep.device.channel.protocol import (
    MAX_REPLY_BYTES,
    PAD,
    parse_command,
    parse_reply,
    sign_command,
    sign_reply,
)
from doorkeep.device.errors import ChannelError, PayloadError, ReplyInvalid
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.heartbeat import heartbeat_payload, verify_heartbeat
from doorkeep.device.vault.codec import canonical
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.tools.hub import HeartbeatCheck
from hypothesis import given, settings
from hypothesis import strategies as st

DOCS = Path(__file__).resolve().parents[1] / "docs"
VECTORS = Path(__file__).resolve().parent / "channel_vectors.json"
OWNER = SecretKeys.from_seeds("owner", bytes(range(32)), bytes(range(32, 64)))
DEVICE = DeviceIdentity(nacl.signing.SigningKey(bytes([7]) * 32))
NONCE = "00112233445566778899aabbccddeeff"


def doc_vector(doc: str, name: str) -> bytes:
    text = (DOCS / doc).read_text()
    m = re.search(rf"<!-- vector:{name} -->\n```\n(.*?)\n```", text, re.DOTALL)
    assert m, f"vector {name} missing from docs/{doc}"
    return m.group(1).encode()


def vector_command() -> bytes:
    return sign_command(OWNER, device_id=DEVICE.device_id, cmd="list_clips", args={"after": "", "limit": 100},
                        reply_to="o-0123456789ab", nonce=NONCE, issued_at=1700000000)


def vector_reply() -> bytes:
    """The stored sample reply (tests/channel_vectors.json): its content is sealed to the owner, so no two
    replies are equal; the sample must verify and open to the documented content."""
    return base64.b64decode(json.loads(VECTORS.read_text())["owner_reply"])


def fresh_reply(**kw: object) -> bytes:
    args: dict = {"cmd": "list_clips", "nonce": NONCE, "result": {"count": 0, "next": ""},
                  "body": canonical({"clips": [], "next": ""}), "now": 1700000000.5} | kw
    return sign_reply(DEVICE.sign, device_id=DEVICE.device_id, owner=OWNER.public, **args)


def test_docs_carry_the_channel_vectors() -> None:
    assert vector_command() == doc_vector("formats.md", "owner-cmd") + b"\n"
    reply = vector_reply()
    header, content = doc_vector("formats.md", "owner-reply").split(b"\n", 1)
    assert len(reply) == PAD and reply.split(b"\n", 1)[0] == header
    r = parse_reply(reply, DEVICE.public_bytes, OWNER)
    inner = {"cmd": r.cmd, "ok": r.ok, "reason": r.reason, "detail": r.detail, "result": r.result}
    assert canonical(inner) + r.body == content.replace(b"\n", b"")
    hb = heartbeat_payload({"uptime_s": 12.0, "fps": 30.0, "counters": {}, "gauges": {}, "latency_ms": {}},
                           identity=DEVICE, audit_head=(3, "ab" * 32), now=1700000000.0)
    assert hb == doc_vector("mqtt.md", "heartbeat")


def test_vectors_verify() -> None:
    cmd = parse_command(vector_command()).verify(OWNER.public)
    assert (cmd.cmd, cmd.nonce, cmd.args) == ("list_clips", NONCE, {"after": "", "limit": 100})
    r = parse_reply(vector_reply(), DEVICE.public_bytes, OWNER)
    assert r.ok and r.final and json.loads(r.body) == {"clips": [], "next": ""}
    assert parse_reply(fresh_reply(), DEVICE.public_bytes, OWNER) == r
    with pytest.raises(ReplyInvalid):  # sealed to the owner: another key cannot open it
        parse_reply(vector_reply(), DEVICE.public_bytes, SecretKeys.generate("owner"))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_changed_byte_of_a_command_is_refused(data: st.DataObject) -> None:
    msg = bytearray(vector_command())
    i = data.draw(st.integers(0, len(msg) - 1))
    v = data.draw(st.integers(0, 255).filter(lambda b: b != msg[i]))
    msg[i] = v
    with pytest.raises(ChannelError):
        cmd = parse_command(bytes(msg))
        cmd.verify(OWNER.public)
        if cmd.nonce != NONCE or cmd.device_id != DEVICE.device_id:
            raise ChannelError("changed", "")  # a changed nonce/device still fails the signature above


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_changed_byte_of_a_reply_is_refused(data: st.DataObject) -> None:
    msg = bytearray(vector_reply())
    end = msg.index(b"\n") + 1 + 161  # header, newline, the 161-byte sealed body (the rest is padding)
    i = data.draw(st.integers(0, end - 1))
    msg[i] = data.draw(st.integers(0, 255).filter(lambda b: b != msg[i]))
    with pytest.raises(ReplyInvalid):
        parse_reply(bytes(msg), DEVICE.public_bytes, OWNER)


def test_base64_spelling_is_strict() -> None:
    """Flipping the spare low bits of the last base64 character decodes to the same signature: still refused."""
    msg = vector_command()
    i = msg.index(b'==","signer"') - 1
    alt = bytes([b for b in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                 if b != msg[i] and (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".index(b)
                                     >> 4) == (b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                                               .index(msg[i]) >> 4)][:1])
    with pytest.raises(ChannelError):
        parse_command(msg[:i] + alt + msg[i + 1:]).verify(OWNER.public)


def test_reply_padding_and_bounds() -> None:
    with pytest.raises(ReplyInvalid):
        parse_reply(vector_reply()[:-1] + b"x", DEVICE.public_bytes, OWNER)  # padding must be zeros
    big = fresh_reply(cmd="fetch", result={"clip_id": "c" * 64, "part": "snapshot", "offset": 1 << 40,
                                           "total": 1 << 40}, body=b"x" * 60_000)
    assert len(big) <= MAX_REPLY_BYTES and len(big) % PAD == 0
    refused = fresh_reply(cmd="send_grant", ok=False, reason="bad_signature",
                          detail="grant x is not signed by the pinned owner", result={}, body=b"")
    accepted = fresh_reply(cmd="send_grant", result={"grant_id": "00" * 16, "bytes": 123456, "chunks": 3},
                           body=b"")
    assert len(refused) == len(accepted), "the broker cannot tell a refusal from a success by its size"
    for clear in (b"send_grant", b"bad_signature", b"grant_id", b"123456"):
        assert clear not in refused and clear not in accepted, "the verdict is sealed to the owner"


def test_signed_by_another_key_or_for_another_device() -> None:
    other = SecretKeys.generate("owner")
    msg = sign_command(other, device_id=DEVICE.device_id, cmd="live_snapshot", reply_to="o-1")
    with pytest.raises(ChannelError) as exc:
        parse_command(msg).verify(OWNER.public)
    assert exc.value.reason == "not_owner"
    forged = msg.replace(b'"signer":"' + msg.split(b'"signer":"')[1][:44], b'"signer":"'
                         + __import__("base64").b64encode(OWNER.public.sign))
    with pytest.raises(ChannelError) as exc:
        parse_command(forged).verify(OWNER.public)
    assert exc.value.reason == "bad_signature"
    with pytest.raises(ChannelError) as exc:
        sign_command(OWNER, device_id="dk-x", cmd="fetch", args={"clip_id": "../etc", "part": "clip",
                                                                  "offset": 0, "length": 1}, reply_to="o-1")
    assert exc.value.reason == "bad_args"


def test_freshness_window_persists_and_forgets(tmp_path: Path) -> None:
    now = [1_000_000.0]
    w = FreshnessWindow(tmp_path / "seen", skew_s=600, clock=lambda: now[0])
    assert w.check("a", 1_000_000) is None
    w.add("a", 1_000_000)
    assert w.check("a", 1_000_000) == "replayed"
    assert w.check("b", 1_000_000 - 601) == "stale" and w.check("b", 1_000_000 + 601) == "future"
    again = FreshnessWindow(tmp_path / "seen", skew_s=600, clock=lambda: now[0])
    assert again.check("a", 1_000_000) == "replayed", "a restart does not reopen the window"
    now[0] += 700
    later = FreshnessWindow(tmp_path / "seen", skew_s=600, clock=lambda: now[0])
    assert len(later) == 0 and later.check("a", 1_000_000) == "stale"


# --------------------------------------------------------------------------------------------- heartbeat

def _hb(records: int, head: str, t: float = 1700000000.0) -> bytes:
    return heartbeat_payload({"uptime_s": 1.0}, identity=DEVICE, audit_head=(records, head), now=t)


def test_heartbeat_is_signed_and_a_substituted_head_is_refused() -> None:
    good = _hb(5, "aa" * 32)
    assert verify_heartbeat(good, DEVICE.public_bytes)["audit_head"] == "aa" * 32
    substituted = good.replace(b"aa" * 32, b"bb" * 32)
    with pytest.raises(PayloadError) as exc:
        verify_heartbeat(substituted, DEVICE.public_bytes)
    assert exc.value.reason == "bad-signature"  # type: ignore[attr-defined]
    unsigned = good[: good.index(b',"sig"')] + b"}"
    with pytest.raises(PayloadError) as exc:
        verify_heartbeat(unsigned, DEVICE.public_bytes)
    assert exc.value.reason == "unsigned"  # type: ignore[attr-defined]
    with pytest.raises(PayloadError):
        verify_heartbeat(good, DeviceIdentity.generate().public_bytes)


def test_heartbeat_check_warns_when_the_head_goes_back() -> None:
    check = HeartbeatCheck(DEVICE.public_bytes)
    check.check(_hb(10, "aa" * 32))
    assert check.last_warning == ""
    check.check(_hb(12, "cc" * 32))
    assert check.last_warning == "" and check.seen is not None and check.seen.records == 12
    check.check(_hb(10, "aa" * 32))  # an old signed heartbeat replayed, or the log rolled back
    assert "went back" in check.last_warning and check.seen.records == 12
    check.check(_hb(12, "dd" * 32))
    assert "fork" in check.last_warning


def test_heartbeat_with_full_details_stays_within_its_bound() -> None:
    snap = {"uptime_s": 1e9, "fps": 30.0, "counters": {f"counter_{i}": 10**12 for i in range(80)},
            "gauges": {f"gauge_{i}": 1e12 for i in range(80)}, "latency_ms": {"detect": {"p50": 1e6}}}
    hb = heartbeat_payload(snap, identity=DEVICE, audit_head=(10**15, "ff" * 32), outbox=10**9,
                           outbox_dropped=10**9)
    assert len(hb) <= 1024
    verify_heartbeat(hb, DEVICE.public_bytes)
