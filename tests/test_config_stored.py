"""#14.9: the signed configuration stored in the state directory is re-verified at every start against the pinned
owner key and the counter recorded when it was applied — never against its own signer."""

from __future__ import annotations

import json

import pytest
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.provisioning.errors import StoredConfigRefused
from doorkeep.provisioning.rotation import apply_rotation, sign_rotation
from doorkeep.provisioning.signed_config import APPLIED_FILE, SignedConfigStore, sign_config
from doorkeep.provisioning.startup import prepare_device
from doorkeep.tools.cli import main
from provisioning_support import new_device, owner_keys, pair_in_memory

MASK = {"masks": [{"name": "neighbour's window", "polygon": [[0, 0], [0.3, 0], [0.3, 0.4]]}]}


@pytest.fixture
def paired(tmp_path):
    """A paired device with configuration #1 (a privacy mask) applied; returns (state, local toml, keys, dev)."""
    state = tmp_path / "state"
    local = tmp_path / "doorkeep.toml"
    local.write_text(f'[device]\nstate_dir = "{state}"\n[capture]\nsource = "synthetic"\n')
    dev = new_device(state)
    keys = owner_keys()
    pair_in_memory(dev, keys)
    SignedConfigStore(dev.prov).apply(sign_config(MASK, device_id=dev.identity.device_id, counter=1,
                                                  keys=keys).to_bytes())
    return state, local, keys, dev


def _stored_refusals(state):
    recs = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
    return [r["f"] for r in recs if r["kind"] == "config_refused" and r["f"].get("stored")]


def test_a_config_signed_by_another_key_is_refused_at_start(paired):
    state, local, _keys, dev = paired
    dev.audit.close()
    assert len(prepare_device(local).config.masks) == 1
    # Someone who can write the state dir drops in a policy signed by a key of their own: no masks, vault off.
    forged = sign_config({"vault": {"enabled": False}}, device_id=dev.identity.device_id, counter=1,
                         keys=SecretKeys.generate("owner"))
    (state / APPLIED_FILE).write_bytes(forged.to_bytes())
    with pytest.raises(StoredConfigRefused, match="bad-signature") as err:
        prepare_device(local)
    assert err.value.reason == "bad-signature" and "doorkeep config apply" in str(err.value)
    (refusal,) = _stored_refusals(state)
    assert refusal["reason"] == "bad-signature"


def test_an_older_document_put_back_is_refused(paired):
    state, local, keys, dev = paired
    first = (state / APPLIED_FILE).read_bytes()
    SignedConfigStore(dev.prov).apply(sign_config({**MASK, "motion": {"hold_s": 9.0}},
                                                  device_id=dev.identity.device_id, counter=2, keys=keys).to_bytes())
    dev.audit.close()
    assert prepare_device(local).config.motion.hold_s == 9.0
    (state / APPLIED_FILE).write_bytes(first)  # a backup restored: genuinely signed, but not the policy in force
    with pytest.raises(StoredConfigRefused, match="stale-counter"):
        prepare_device(local)
    assert [r["reason"] for r in _stored_refusals(state)] == ["stale-counter"]


def test_a_document_stored_on_an_unpaired_device_is_refused(tmp_path):
    state = tmp_path / "state"
    local = tmp_path / "doorkeep.toml"
    local.write_text(f'[device]\nstate_dir = "{state}"\n')
    dev = new_device(state)
    doc = sign_config({"vault": {"enabled": False}}, device_id=dev.identity.device_id, counter=1, keys=owner_keys())
    (state / APPLIED_FILE).write_bytes(doc.to_bytes())
    dev.audit.close()
    with pytest.raises(StoredConfigRefused, match="not-paired"):
        prepare_device(local)


def test_the_policy_survives_an_owner_rotation(paired):
    _state, local, keys, dev = paired
    new = SecretKeys.generate("owner")
    apply_rotation(dev.prov, sign_rotation(keys, new.public, device_id=dev.identity.device_id,
                                           counter=2).to_bytes())
    dev.audit.close()
    start = prepare_device(local)  # signed by the owner replaced since: still the policy in force
    assert [m.name for m in start.config.masks] == ["neighbour's window"] and start.config_counter == 2


def test_a_document_stored_but_not_committed_before_a_power_cut_is_completed(paired):
    state, local, keys, dev = paired
    doc = sign_config({**MASK, "motion": {"hold_s": 7.0}}, device_id=dev.identity.device_id, counter=2, keys=keys)
    (state / APPLIED_FILE).write_bytes(doc.to_bytes())  # apply wrote the document, then the power went
    dev.audit.close()
    start = prepare_device(local)
    assert start.config.motion.hold_s == 7.0 and start.config_counter == 2
    applied = [json.loads(line)["f"] for line in (state / "audit.log").read_text().splitlines()
               if json.loads(line)["kind"] == "config_applied"]
    assert applied[-1]["counter"] == 2 and applied[-1]["recovered"] is True
    assert prepare_device(local).config_counter == 2  # and it stays in force


def test_doorkeep_run_refuses_a_forged_policy_in_one_line(paired, capsys):
    state, local, _keys, dev = paired
    dev.audit.close()
    forged = sign_config({"mqtt": {"host": "evil.example"}}, device_id=dev.identity.device_id, counter=5,
                         keys=SecretKeys.generate("owner"))
    (state / APPLIED_FILE).write_bytes(forged.to_bytes())
    assert main(["run", "--config", str(local)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("doorkeep: ") and "bad-signature" in err[0]
