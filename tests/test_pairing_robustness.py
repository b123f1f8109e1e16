"""Only authenticated messages change a pairing session (#14.13): junk, forged or unauthenticated aborts, a
stranger's offer and MQTT redeliveries leave it running, and the real owner still pairs."""

from __future__ import annotations

import json
import threading

import pytest
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault import codec
from doorkeep.provisioning.errors import (
    AlreadyPaired,
    PairingMismatch,
    ProvisionRefused,
)
from doorkeep.provisioning.pairing import DevicePairing, run_device
from doorkeep.provisioning.pairing_messages import seal
from doorkeep.provisioning.pairing_owner import OwnerPairing, run_owner
from provisioning_support import channel_pair, new_device, owner_keys, pair_in_memory


def _abort(session: bytes, sign, reason: str = "code-rejected", **extra: str) -> bytes:
    return seal({"type": "abort", "session": codec.b64e(session), "reason": reason, **extra}, sign)


def test_device_session_survives_junk_forgeries_and_redeliveries(tmp_path):
    dev = new_device(tmp_path / "dev")
    keys, mallory = owner_keys(), owner_keys()
    o, d = OwnerPairing(keys), DevicePairing(dev.prov)
    offer = o.start()
    junk = [b"", b"\xff\xfe", b"{}", b'{"format":"doorkeep/pair","v":1,"type":"offer","x":1e999}',
            offer.replace(b'"v":1', b'"v":1e999')]
    for j in junk:
        with pytest.raises(ProvisionRefused):
            d.handle(j)
        assert d.state == "offer"
    (accept,) = d.handle(offer)
    assert d.handle(offer) == []  # a QoS 1 redelivery of the offer is not a new step
    (reveal,) = o.handle(accept)
    hostile = [
        _abort(o._session, mallory.sign),  # an abort for this session, signed by someone else
        _abort(o._session, lambda m: bytes(64)),  # unsigned (zero signature)
        seal({"type": "reveal", "session": codec.b64e(o._session), "nonce": codec.b64e(bytes(32))}, mallory.sign),
        OwnerPairing(mallory).start(),  # a stranger's offer for another session
        accept,  # the device's own message reflected back
        reveal.replace(b'"nonce"', b'"x":1e999,"nonce"'),
    ]
    for h in hostile:
        with pytest.raises(ProvisionRefused):
            d.handle(h)
        assert d.state == "reveal"
    assert d.handle(reveal) == [] and d.handle(reveal) == []
    (confirm,) = o.decide(True)
    d.handle(confirm)
    (done,) = d.decide(True)
    o.handle(done)
    assert o.result is not None and d.result is not None and o.code == d.code
    (paired,) = dev.audit_records("paired")
    assert paired["ignored"] == len(junk) + len(hostile)
    assert dev.audit_records("pair_refused") == []  # nothing unauthenticated was audited one by one


def test_device_driver_keeps_listening_after_junk(tmp_path):
    """The driver used to die on the first bad message (a bare ValueError for ``1e999``, a refusal otherwise)."""
    dev = new_device(tmp_path / "dev")
    keys = owner_keys()
    dev_end, owner_end = channel_pair()
    result: dict[str, object] = {}

    def device() -> None:
        try:
            result["paired"] = run_device(DevicePairing(dev.prov), dev_end, confirm=lambda code: True)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            result["error"] = exc

    t = threading.Thread(target=device, daemon=True)
    t.start()
    owner_end.send(b'{"format":"doorkeep/pair","v":1,"type":"offer","session":"AAAA","n":1e999}')
    owner_end.send(_abort(bytes(16), owner_keys().sign))
    paired = run_owner(OwnerPairing(keys), owner_end, confirm=lambda code: True, timeout=20)
    t.join(20)
    assert "error" not in result, result
    assert paired.device_id == dev.identity.device_id


def test_stranger_offer_on_a_paired_device_is_refused_but_the_owner_can_still_repair(tmp_path):
    dev = new_device(tmp_path / "dev")
    keys = owner_keys()
    pair_in_memory(dev, keys)
    d = DevicePairing(dev.prov)
    stranger = OwnerPairing(owner_keys(), device_id=dev.identity.device_id)
    with pytest.raises(AlreadyPaired) as exc:
        d.handle(stranger.start())
    assert d.state == "offer"
    # the stranger is told why, by a device-signed abort naming the device key
    with pytest.raises(PairingMismatch, match="already-paired") as told:
        stranger.handle(exc.value.reply)
    assert told.value.reason == "aborted-by-device"
    owner_code, device_code, _ = pair_in_memory(dev, keys, machine=d)  # the same window, the real owner
    assert owner_code == device_code
    assert [r["reason"] for r in dev.audit_records("pair_refused")] == ["already-paired"]


def test_owner_session_ignores_unauthenticated_aborts(tmp_path):
    dev = new_device(tmp_path / "dev")
    other = DeviceIdentity.generate()
    o = OwnerPairing(owner_keys(), device_id=dev.identity.device_id)
    offer = o.start()
    for msg in (_abort(o._session, other.sign),  # no device key: cannot be checked
                _abort(o._session, other.sign, device=codec.b64e(other.public_bytes)),  # another device's key
                _abort(o._session, other.sign, device=codec.b64e(dev.identity.public_bytes)),  # forged signature
                b'{"format":"doorkeep/pair","v":1,"type":"abort","reason":"x","n":-1e999}'):
        with pytest.raises(ProvisionRefused):
            o.handle(msg)
        assert o.state == "accept"
    (accept,) = DevicePairing(dev.prov).handle(offer)
    o.handle(accept)
    assert o.state == "decide"


def test_owner_timeout_mentions_an_unverifiable_abort(tmp_path):
    o = OwnerPairing(owner_keys())
    owner_end, device_end = channel_pair()

    class Replies:
        def send(self, data: bytes) -> None:
            owner_end.send(data)
            offer = json.loads(data)
            if offer["type"] == "offer":
                device_end.send(_abort(codec.b64d(offer["session"], what="s"), owner_keys().sign,
                                       reason="\x1b[2Kbusy"))

        def recv(self, timeout: float) -> bytes | None:
            return owner_end.recv(timeout)

    with pytest.raises(PairingMismatch, match="unauthenticated abort said") as exc:
        run_owner(o, Replies(), confirm=lambda c: True, timeout=1.5)
    assert "\x1b" not in str(exc.value) and "\\x1b[2Kbusy" in str(exc.value)
