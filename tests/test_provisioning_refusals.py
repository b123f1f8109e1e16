"""Every provisioning check refuses: bad signature, other device, stale counter, unsigned, malformed, not paired,
invalid config values (by key path), re-pair without the owner's signature, pairing outside the window, tampered
pairing messages — and every refusal is audited with its reason code."""

from __future__ import annotations

import json

import pytest
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import load_owner_public
from doorkeep.provisioning import documents
from doorkeep.provisioning.documents import (
    KIND_CONFIG,
    KIND_REPAIR,
    OwnerDocument,
    sign_document,
)
from doorkeep.provisioning.errors import (
    AlreadyPaired,
    BadSignature,
    InvalidConfig,
    MalformedDocument,
    NotPaired,
    PairingMismatch,
    StaleCounter,
    UnsignedDocument,
    WindowClosed,
    WrongDevice,
)
from doorkeep.provisioning.pairing import (
    DevicePairing,
    PairingWindow,
    pairing_code,
    run_device,
    seal,
)
from doorkeep.provisioning.pairing_owner import OwnerPairing
from doorkeep.provisioning.remote import DocResult, parse_result, sign_result
from doorkeep.provisioning.rotation import apply_rotation, sign_rotation
from doorkeep.provisioning.signed_config import (
    SignedConfigStore,
    effective_config,
    sign_config,
)
from provisioning_support import channel_pair, new_device, owner_keys, pair_in_memory


@pytest.fixture
def paired(tmp_path):
    dev = new_device(tmp_path / "state")
    keys = owner_keys()
    pair_in_memory(dev, keys)
    return dev, keys


def config_doc(dev, keys, counter, table=None, **kw):
    return sign_config(table if table is not None else {"motion": {"hold_s": 4.0}}, device_id=kw.pop(
        "device_id", dev.identity.device_id), counter=counter, keys=keys, **kw)


# ------------------------------------------------------------------------------------------------ documents
def test_config_refusals_name_their_reason_and_are_audited(paired):
    dev, keys = paired
    store = SignedConfigStore(dev.prov)
    good = config_doc(dev, keys, 5)

    tampered = json.loads(good.to_bytes())
    tampered["body"]["config"]["motion"]["hold_s"] = 60.0
    with pytest.raises(BadSignature, match="does not verify"):
        store.apply(codec.canonical(tampered))

    stranger = owner_keys()
    with pytest.raises(BadSignature, match="the device pins"):
        store.apply(config_doc(dev, stranger, 5).to_bytes())

    with pytest.raises(WrongDevice):
        store.apply(config_doc(dev, keys, 5, device_id="dk-aaaaaaaaaaaaaaaa").to_bytes())

    unsigned = json.loads(good.to_bytes())
    del unsigned["sig"]
    with pytest.raises(UnsignedDocument):
        store.apply(codec.canonical(unsigned))

    store.apply(good.to_bytes())
    with pytest.raises(StaleCounter):  # replay of the same document
        store.apply(good.to_bytes())
    with pytest.raises(StaleCounter):  # an older counter, validly signed
        store.apply(config_doc(dev, keys, 4).to_bytes())

    reasons = [r["reason"] for r in dev.audit_records("config_refused")]
    assert reasons == ["bad-signature", "bad-signature", "wrong-device", "unsigned", "stale-counter", "stale-counter"]
    assert len(dev.audit_records("config_applied")) == 1


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda d: d.update(v=2), "unsupported version"),
        (lambda d: d.update(format="doorkeep/other"), "format"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d.update(kind="launch-missiles"), "unknown kind"),
        (lambda d: d.update(counter=0), "counter"),
        (lambda d: d.update(counter=True), "counter"),
        (lambda d: d.update(sig="not base64!"), "base64"),
        (lambda d: d.update(body=[]), "body"),
    ],
)
def test_malformed_documents_refused(paired, mutate, match):
    dev, keys = paired
    d = json.loads(config_doc(dev, keys, 1).to_bytes())
    mutate(d)
    with pytest.raises(MalformedDocument, match=match):
        SignedConfigStore(dev.prov).apply(json.dumps(d).encode())
    with pytest.raises(MalformedDocument):
        SignedConfigStore(dev.prov).apply(b"\xff not json")


def test_invalid_config_refused_by_key_path(paired):
    dev, keys = paired
    store = SignedConfigStore(dev.prov)
    with pytest.raises(InvalidConfig) as exc:
        store.apply(sign_document(KIND_CONFIG, device_id=dev.identity.device_id, counter=1,
                                  body={"config": {"motion": {"min_changed": 7}}},
                                  owner=keys).to_bytes())
    assert exc.value.path == "motion.min_changed"
    with pytest.raises(InvalidConfig) as exc:
        store.apply(sign_document(KIND_CONFIG, device_id=dev.identity.device_id, counter=2,
                                  body={"config": {"device": {"state_dir": "/tmp/elsewhere"}}},
                                  owner=keys).to_bytes())
    assert exc.value.path == "device.state_dir"
    with pytest.raises(InvalidConfig):  # the owner's tool refuses before signing
        sign_config({"motion": {"typo_key": 1}}, device_id=dev.identity.device_id, counter=3, keys=keys)
    assert [r["path"] for r in dev.audit_records("config_refused")] == ["motion.min_changed", "device.state_dir"]
    # a refused document does not consume its counter
    store.apply(config_doc(dev, keys, 1).to_bytes())


def test_unpaired_device_refuses_owner_documents(tmp_path):
    dev = new_device(tmp_path / "s")
    with pytest.raises(NotPaired):
        SignedConfigStore(dev.prov).apply(config_doc(dev, owner_keys(), 1).to_bytes())


def test_paired_device_refuses_policy_from_its_local_file():
    with pytest.raises(Exception, match="owner-signed"):
        effective_config({"motion": {"hold_s": 1.0}}, None, paired=True)
    assert effective_config({"capture": {"fps": 10.0}}, None, paired=True).capture.fps == 10.0
    assert effective_config({"motion": {"hold_s": 1.0}}, None, paired=False).motion.hold_s == 1.0


def test_stored_config_tampered_at_rest_is_refused_on_load(paired):
    dev, keys = paired
    store = SignedConfigStore(dev.prov)
    store.apply(config_doc(dev, keys, 1).to_bytes())
    d = json.loads(store.path.read_bytes())
    d["body"]["config"]["motion"]["hold_s"] = 99.0
    store.path.write_bytes(codec.canonical(d))
    with pytest.raises(BadSignature):
        store.effective()


# ------------------------------------------------------------------------------------------------ rotation
def test_rotation_refusals(paired):
    dev, keys = paired
    new = owner_keys()
    with pytest.raises(BadSignature):  # signed by someone who is not the pinned owner
        apply_rotation(dev.prov, sign_rotation(new, new.public, device_id=dev.identity.device_id,
                                               counter=1).to_bytes())
    apply_rotation(dev.prov, sign_rotation(keys, new.public, device_id=dev.identity.device_id, counter=3).to_bytes())
    with pytest.raises(StaleCounter):
        apply_rotation(dev.prov, sign_rotation(new, keys.public, device_id=dev.identity.device_id,
                                               counter=3).to_bytes())
    with pytest.raises(MalformedDocument):  # a config document is not a rotation
        apply_rotation(dev.prov, config_doc(dev, new, 9).to_bytes())
    assert load_owner_public(dev.state / "owner.pub") == new.public
    assert [r["reason"] for r in dev.audit_records("owner_rotation_refused")] == [
        "bad-signature", "stale-counter", "malformed"]


# ------------------------------------------------------------------------------------------------ pairing
def test_repair_needs_the_current_owners_signature(paired):
    dev, keys = paired
    thief = owner_keys()
    with pytest.raises(AlreadyPaired):
        pair_in_memory(dev, thief)
    assert load_owner_public(dev.state / "owner.pub") == keys.public
    # an authorisation signed by the wrong key, or naming another new owner, is refused
    forged = sign_rotation(thief, thief.public, device_id=dev.identity.device_id, counter=1, kind=KIND_REPAIR)
    with pytest.raises(BadSignature):
        pair_in_memory(dev, thief, authorization=forged)
    other = sign_rotation(keys, owner_keys().public, device_id=dev.identity.device_id, counter=1, kind=KIND_REPAIR)
    with pytest.raises(BadSignature, match="another new owner"):
        pair_in_memory(dev, thief, authorization=other)
    # the current owner hands the device over
    heir = owner_keys()
    auth = sign_rotation(keys, heir.public, device_id=dev.identity.device_id, counter=1, kind=KIND_REPAIR)
    _, _, counter = pair_in_memory(dev, heir, authorization=auth)
    assert counter == 1 and load_owner_public(dev.state / "owner.pub") == heir.public
    with pytest.raises(BadSignature):  # the old owner's authorisation is worthless once the heir is pinned
        pair_in_memory(dev, thief, authorization=auth)
    buyer = owner_keys()
    replayed = sign_rotation(heir, buyer.public, device_id=dev.identity.device_id, counter=1, kind=KIND_REPAIR)
    with pytest.raises(StaleCounter):  # an authorisation with a used counter
        pair_in_memory(dev, buyer, authorization=replayed)
    reasons = [r["reason"] for r in dev.audit_records("pair_refused")]
    assert reasons == ["already-paired", "bad-signature", "bad-signature", "bad-signature", "stale-counter"]


def test_the_same_owner_may_pair_again(paired):
    """Its offer is signed by the pinned key itself (e.g. the owner's tool lost its device book)."""
    dev, keys = paired
    owner_code, device_code, _ = pair_in_memory(dev, keys)
    assert owner_code == device_code
    assert load_owner_public(dev.state / "owner.pub") == keys.public


def test_pairing_outside_the_window_is_refused(tmp_path):
    dev = new_device(tmp_path / "s")
    now = [1000.0]
    window = PairingWindow(60, clock=lambda: now[0])
    machine = DevicePairing(dev.prov, window=window)
    now[0] += 61
    with pytest.raises(WindowClosed):
        machine.handle(OwnerPairing(owner_keys()).start())
    assert not (dev.state / "owner.pub").exists()
    # the driver gives up when the window expires with nothing received
    now[0] = 0.0
    window2 = PairingWindow(5, clock=lambda: now[0])
    dev_end, _owner_end = channel_pair()

    class Ticking:
        def send(self, data: bytes) -> None:
            dev_end.send(data)

        def recv(self, timeout: float) -> bytes | None:
            now[0] += timeout
            return None

    with pytest.raises(WindowClosed):
        run_device(DevicePairing(dev.prov, window=window2), Ticking(), confirm=lambda c: True)
    assert [r["reason"] for r in dev.audit_records("pair_refused")] == ["window-closed", "window-closed"]


def test_tampered_offer_is_refused(tmp_path):
    dev = new_device(tmp_path / "s")
    offer = json.loads(OwnerPairing(owner_keys()).start())
    offer["owner"]["box"] = codec.b64e(bytes(32))  # swap the sealing key, keep the signature
    with pytest.raises(PairingMismatch, match="signature"):
        DevicePairing(dev.prov).handle(codec.canonical(offer))
    assert not (dev.state / "owner.pub").exists()


def test_owner_cannot_change_its_nonce_after_seeing_the_devices(tmp_path):
    dev = new_device(tmp_path / "s")
    keys = owner_keys()
    o, d = OwnerPairing(keys), DevicePairing(dev.prov)
    (accept,) = d.handle(o.start())
    o.handle(accept)
    cheat = seal({"type": "reveal", "session": codec.b64e(o._session), "nonce": codec.b64e(b"\x01" * 32)}, keys.sign)
    with pytest.raises(PairingMismatch, match="commitment"):
        d.handle(cheat)
    assert d.state == "failed" and not (dev.state / "owner.pub").exists()


def test_man_in_the_middle_gets_different_codes(tmp_path):
    """An attacker relays with its own keys both ways: the two codes differ, the humans say no, nothing is pinned."""
    dev = new_device(tmp_path / "s")
    mallory_dev = new_device(tmp_path / "mallory")  # plays "device" towards the owner
    owner = OwnerPairing(owner_keys())
    mallory_owner = OwnerPairing(owner_keys())  # plays "owner" towards the device
    real = DevicePairing(dev.prov)
    fake = DevicePairing(mallory_dev.prov)
    (accept_fake,) = fake.handle(owner.start())
    (accept_real,) = real.handle(mallory_owner.start())
    (reveal_owner,) = owner.handle(accept_fake)
    (reveal_mallory,) = mallory_owner.handle(accept_real)
    fake.handle(reveal_owner)
    real.handle(reveal_mallory)
    assert owner.code != real.code  # what the owner's screen and the real device show
    (abort,) = real.decide(False)
    assert json.loads(abort)["reason"] == "code-rejected"
    assert not (dev.state / "owner.pub").exists()
    assert dev.audit_records("pair_refused")[-1]["reason"] == "code-rejected"


def test_swapped_device_key_or_forged_confirm_is_refused(tmp_path):
    dev = new_device(tmp_path / "s")
    keys = owner_keys()
    o, d = OwnerPairing(keys), DevicePairing(dev.prov)
    (accept,) = d.handle(o.start())
    forged = json.loads(accept)
    forged["device"] = codec.b64e(owner_keys().public.sign)  # another key, the device's signature kept
    with pytest.raises(PairingMismatch):
        o.handle(codec.canonical(forged))
    # a confirm over another transcript (or from another key) is refused on the device
    o2, d2 = OwnerPairing(keys), DevicePairing(new_device(tmp_path / "t").prov)
    (accept2,) = d2.handle(o2.start())
    (reveal2,) = o2.handle(accept2)
    d2.handle(reveal2)
    bad = seal({"type": "confirm", "session": codec.b64e(o2._session), "transcript": codec.b64e(bytes(32))},
               keys.sign)
    with pytest.raises(PairingMismatch, match="different exchange"):
        d2.handle(bad)


def test_pairing_code_vector():
    assert pairing_code(bytes(32)) == pairing_code(bytes(32))
    assert len(pairing_code(b"\x01" * 32)) == 6
    assert documents.key_id(bytes(range(32))) == "0001020304050607"


def test_unsigned_document_helper_round_trip(paired):
    dev, keys = paired
    doc = config_doc(dev, keys, 1)
    again = OwnerDocument.from_bytes(doc.to_bytes())
    assert again == doc


def test_a_result_not_signed_by_the_pinned_device_is_refused(tmp_path):
    dev = new_device(tmp_path / "s")
    other = new_device(tmp_path / "o")
    r = DocResult("00" * 32, True, 3, "applied", "")
    assert parse_result(sign_result(r, dev.identity.sign), device_key=dev.identity.public_bytes) == r
    with pytest.raises(BadSignature):
        parse_result(sign_result(r, other.identity.sign), device_key=dev.identity.public_bytes)


def test_owner_abort_ends_the_device_session_and_extra_fields_are_refused(tmp_path):
    dev = new_device(tmp_path / "s")
    keys = owner_keys()
    o, d = OwnerPairing(keys), DevicePairing(dev.prov)
    (accept,) = d.handle(o.start())
    o.handle(accept)
    with pytest.raises(PairingMismatch) as exc:
        d.handle(o.abort_message("code-rejected"))
    assert exc.value.reason == "aborted-by-owner" and d.state == "failed"
    offer = json.loads(OwnerPairing(keys).start())
    offer["extra"] = "x"
    with pytest.raises(MalformedDocument, match="unknown keys"):
        DevicePairing(new_device(tmp_path / "t").prov).handle(codec.canonical(offer))
