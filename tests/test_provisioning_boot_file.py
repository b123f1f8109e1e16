"""The hobbyist path: a signed pairing file on the SD card's boot partition, consumed at boot, then deleted."""

from __future__ import annotations

import json
import logging

import pytest
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import load_owner_public
from doorkeep.provisioning.boot_pairing import (
    INCOMING_FILE,
    RECEIPT_FILE,
    consume_pair_file,
    consume_pending,
    make_pair_file,
    verify_receipt,
)
from doorkeep.provisioning.documents import KIND_REPAIR
from doorkeep.provisioning.errors import (
    AlreadyPaired,
    BadSignature,
    PairingMismatch,
    WrongDevice,
)
from doorkeep.provisioning.owner_state import DeviceBook
from doorkeep.provisioning.rotation import sign_rotation
from provisioning_support import new_device, owner_keys


def test_boot_file_pairs_logs_the_code_and_is_deleted(tmp_path, caplog):
    dev = new_device(tmp_path / "state")
    keys = owner_keys()
    book = DeviceBook(tmp_path / "devices.json")
    pf = make_pair_file(keys)
    book.pending.append(pf.nonce)
    book.save()
    boot = tmp_path / "boot" / "doorkeep-pair.json"
    boot.parent.mkdir()
    boot.write_bytes(pf.data)
    with caplog.at_level(logging.WARNING):
        result = consume_pending(dev.prov, boot_file=boot)
    assert result is not None and result.code == pf.code
    assert f"PAIRING CODE {pf.code}" in caplog.text
    assert not boot.exists()
    assert load_owner_public(dev.state / "owner.pub") == keys.public
    # the owner's tool pins the device from the receipt
    receipt = (dev.state / RECEIPT_FILE).read_bytes()
    info = verify_receipt(receipt, owner=keys.public, nonces=DeviceBook.load(book.path).pending)
    assert info.device_id == dev.identity.device_id and info.fingerprint == dev.identity.fingerprint
    assert dev.audit_records("paired")[0]["channel"] == "boot-file"


def test_incoming_file_moved_by_the_unit_is_consumed(tmp_path):
    dev = new_device(tmp_path / "state")
    keys = owner_keys()
    (dev.state / INCOMING_FILE).write_bytes(make_pair_file(keys, device_id=dev.identity.device_id).data)
    assert consume_pending(dev.prov, boot_file=tmp_path / "absent.json") is not None
    assert not (dev.state / INCOMING_FILE).exists()
    assert consume_pending(dev.prov, boot_file=tmp_path / "absent.json") is None


def test_tampered_or_foreign_boot_files_are_refused_and_deleted(tmp_path):
    dev = new_device(tmp_path / "state")
    keys = owner_keys()
    f = tmp_path / "pair.json"
    d = json.loads(make_pair_file(keys).data)
    d["owner"]["box"] = codec.b64e(bytes(32))
    f.write_bytes(codec.canonical(d))
    with pytest.raises(BadSignature):
        consume_pair_file(f, dev.prov)
    assert not f.exists() and not (dev.state / "owner.pub").exists()
    f.write_bytes(make_pair_file(keys, device_id="dk-aaaaaaaaaaaaaaaa").data)
    with pytest.raises(WrongDevice):
        consume_pair_file(f, dev.prov)
    assert [r["reason"] for r in dev.audit_records("pair_refused")] == ["bad-signature", "wrong-device"]


def test_boot_file_cannot_take_over_a_paired_device(tmp_path):
    dev = new_device(tmp_path / "state")
    keys, thief = owner_keys(), owner_keys()
    f = tmp_path / "pair.json"
    f.write_bytes(make_pair_file(keys).data)
    consume_pair_file(f, dev.prov)
    f.write_bytes(make_pair_file(thief).data)
    with pytest.raises(AlreadyPaired):
        consume_pair_file(f, dev.prov)
    assert load_owner_public(dev.state / "owner.pub") == keys.public
    # with the current owner's authorisation it hands over
    auth = sign_rotation(keys, thief.public, device_id=dev.identity.device_id, counter=1, kind=KIND_REPAIR)
    f.write_bytes(make_pair_file(thief, authorization=auth).data)
    assert consume_pair_file(f, dev.prov).repaired
    assert load_owner_public(dev.state / "owner.pub") == thief.public


def test_forged_receipt_is_refused(tmp_path):
    dev = new_device(tmp_path / "state")
    keys = owner_keys()
    pf = make_pair_file(keys)
    f = tmp_path / "pair.json"
    f.write_bytes(pf.data)
    receipt = consume_pair_file(f, dev.prov).receipt
    with pytest.raises(PairingMismatch, match="proof"):  # not an answer to a file this owner wrote
        verify_receipt(receipt, owner=keys.public, nonces=[bytes(32)])
    with pytest.raises(PairingMismatch, match="another owner"):
        verify_receipt(receipt, owner=owner_keys().public, nonces=[pf.nonce])
    d = json.loads(receipt)
    d["counter"] = 5
    with pytest.raises(BadSignature):
        verify_receipt(codec.canonical(d), owner=keys.public, nonces=[pf.nonce])
