"""End to end over a real mosquitto: a new device is paired over MQTT (the codes match on both sides), a signed
configuration is applied, unsigned and rolled-back ones are refused, the owner key is rotated, and a factory reset
leaves no readable identity and no clip key header."""

from __future__ import annotations

import threading
import uuid

import pytest
from doorkeep.device.config import MqttSection
from doorkeep.device.identity import DeviceIdentity, device_id_for
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.outbox import Outbox, OutMessage
from doorkeep.device.vault import audit as vault_audit
from doorkeep.device.vault.clips import MAGIC, SHRED_RANGE
from doorkeep.device.vault.keys import load_owner_public
from doorkeep.provisioning.documents import OwnerDocument
from doorkeep.provisioning.errors import (
    BadSignature,
    PairingMismatch,
    ProvisionError,
    StaleCounter,
    UnsignedDocument,
    WindowClosed,
)
from doorkeep.provisioning.identity import has_identity
from doorkeep.provisioning.owner_state import DeviceBook
from doorkeep.provisioning.pairing import DevicePairing, PairingWindow
from doorkeep.provisioning.pairing_mqtt import (
    MqttChannel,
    serve_pairing,
    wait_for_announcement,
)
from doorkeep.provisioning.pairing_owner import OwnerPairing, run_owner
from doorkeep.provisioning.remote import RemoteDocuments, push_document
from doorkeep.provisioning.reset import factory_reset, verify_reset
from doorkeep.provisioning.rotation import apply_rotation, sign_rotation
from doorkeep.provisioning.signed_config import SignedConfigStore, sign_config
from provisioning_support import CodeComparison, new_device, owner_keys, write_clip

pytestmark = pytest.mark.broker


def client(broker, name: str) -> MqttClient:
    c = MqttClient(MqttSection(host=broker.host, port=broker.port), client_id=f"{name}-{uuid.uuid4().hex[:8]}")
    c.start()
    c.wait_connected(10)
    return c


def test_new_device_to_factory_reset(mosquitto, tmp_path):
    state = tmp_path / "device"
    dev = new_device(state)
    assert dev.identity.device_id == device_id_for(dev.identity.public_bytes)
    keys = owner_keys()
    book = DeviceBook(tmp_path / "owner" / "devices.json")

    # ---- pairing over MQTT: the device opens its window, the owner finds it, both humans compare codes
    humans = CodeComparison()
    dev_client, owner_client = client(mosquitto, "dev"), client(mosquitto, "owner")
    outcome: dict[str, object] = {}

    def device_side() -> None:
        try:
            outcome["device"] = serve_pairing(dev_client, DevicePairing(dev.prov, window=PairingWindow(60)),
                                              confirm=humans.side("device", "owner"))
        except Exception as exc:  # noqa: BLE001  (surfaced by the assertions below)
            outcome["device"] = exc

    t = threading.Thread(target=device_side)
    t.start()
    try:
        ann = wait_for_announcement(owner_client, timeout=20)
        assert ann.device_id == dev.identity.device_id and ann.fingerprint == dev.identity.fingerprint
        paired = run_owner(OwnerPairing(keys, device_id=ann.device_id), MqttChannel.owner(owner_client, ann.device_id),
                           confirm=humans.side("owner", "device"), timeout=30)
    finally:
        t.join(30)
        dev_client.stop()
        owner_client.stop()
    device_result = outcome["device"]
    assert not isinstance(device_result, Exception), device_result
    assert humans.codes["owner"] == humans.codes["device"] == paired.code
    assert len(paired.code) == 6 and paired.code.isdigit()
    # the device pinned the owner (the vault's owner.pub), the owner pins the device key
    assert load_owner_public(state / "owner.pub") == keys.public
    assert paired.device_key == dev.identity.public_bytes
    book.pin(paired.device_id, paired.device_key, counter=paired.counter)
    assert "paired" in dev.audit_kinds()

    clip = write_clip(state / "vault", keys.public, dev.identity.device_id)
    box = Outbox(state / "outbox.sqlite3", max_rows=100)  # queued event metadata of this owner
    box.put([OutMessage(f"doorkeep/{dev.identity.device_id}/event", b'{"queued":"event"}')])
    box.close()

    # ---- signed configuration applied
    store = SignedConfigStore(dev.prov)
    first = sign_config({"motion": {"min_changed": 0.01}}, device_id=paired.device_id,
                        counter=book.next_counter(paired.device_id), keys=keys)
    applied = store.apply(first.to_bytes())
    assert applied.config.motion.min_changed == 0.01 and applied.changed == ("motion.min_changed",)
    second = sign_config({"motion": {"min_changed": 0.02, "hold_s": 5.0}}, device_id=paired.device_id,
                         counter=book.next_counter(paired.device_id), keys=keys)
    # the second one is pushed over MQTT to the running device, which answers with a device-signed verdict
    dev_client, owner_client = client(mosquitto, "dev"), client(mosquitto, "owner")
    seen = []
    remote = RemoteDocuments(dev_client, dev.prov, on_config=seen.append)
    remote.start()
    dev_client.wait_subscribed(10)
    try:
        verdict = push_document(owner_client, device_id=paired.device_id, device_key=paired.device_key,
                                data=second.to_bytes(), timeout=20)
        assert verdict.ok and verdict.counter == second.counter and seen[0].config.motion.min_changed == 0.02
        assert store.effective().motion.min_changed == 0.02

        # ---- unsigned and rolled-back configurations refused (over MQTT and from a file)
        unsigned = OwnerDocument(**{**second.__dict__, "counter": 99, "signature": None})
        verdict = push_document(owner_client, device_id=paired.device_id, device_key=paired.device_key,
                                data=unsigned.to_bytes(), timeout=20)
        assert (verdict.ok, verdict.reason) == (False, "unsigned")
        verdict = push_document(owner_client, device_id=paired.device_id, device_key=paired.device_key,
                                data=first.to_bytes(), timeout=20)  # an older, validly signed document
        assert (verdict.ok, verdict.reason) == (False, "stale-counter")
    finally:
        remote.stop()
        dev_client.stop()
        owner_client.stop()
    with pytest.raises(UnsignedDocument):
        store.apply(unsigned.to_bytes())
    with pytest.raises(StaleCounter):
        store.apply(first.to_bytes())
    assert store.effective().motion.min_changed == 0.02 and len(seen) == 1
    refused = dev.audit_records("config_refused")
    assert [r["reason"] for r in refused] == ["unsigned", "stale-counter", "unsigned", "stale-counter"]

    # ---- owner key rotation, signed by the old key
    new_keys = owner_keys()
    rotation = sign_rotation(keys, new_keys.public, device_id=paired.device_id,
                             counter=book.next_counter(paired.device_id))
    assert apply_rotation(dev.prov, rotation.to_bytes()) == new_keys.public
    assert load_owner_public(state / "owner.pub") == new_keys.public
    with pytest.raises(BadSignature):  # the old key no longer rules this device
        store.apply(sign_config({}, device_id=paired.device_id, counter=book.next_counter(paired.device_id),
                                keys=keys).to_bytes())
    store.apply(sign_config({"motion": {"hold_s": 7.0}}, device_id=paired.device_id,
                            counter=book.next_counter(paired.device_id), keys=new_keys).to_bytes())
    assert store.effective().motion.hold_s == 7.0

    # ---- factory reset: no readable identity, no pairing, no clip key header
    header = clip.read_bytes()[SHRED_RANGE[0]:SHRED_RANGE[1]]
    report = factory_reset(state, identity=dev.identity, audit=dev.audit)
    dev.audit.close()
    assert report.clips_shredded == 1
    assert not has_identity(state) and not (state / "owner.pub").exists() and not clip.exists()
    assert not (state / "outbox.sqlite3").exists()
    verify_reset(state)
    for p in state.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert not data.startswith(MAGIC) and header not in data
    # the reset itself is in the archived audit log, which still verifies with the old device key
    archived = state / report.audit_kept_as
    assert vault_audit.verify(archived, dev.identity.public_bytes).ok
    assert archived.read_text().splitlines()[-1].count('"factory_reset"') == 1
    # a fresh boot makes a brand-new, unpaired identity
    again = DeviceIdentity.load_or_create(state)
    assert again.device_id != dev.identity.device_id
    with pytest.raises(ProvisionError, match=r"device\.key"):
        verify_reset(state)


def tls_client(broker, cn: str) -> MqttClient:
    cert = broker.certs.client(cn)
    c = MqttClient(MqttSection(host="localhost", port=broker.port, tls=True, ca=str(broker.certs.ca),
                               cert=str(cert.cert), key=str(cert.key)), client_id=f"{cn}-{uuid.uuid4().hex[:6]}")
    c.start()
    c.wait_connected(10)
    return c


def test_pairing_over_mutual_tls_with_the_per_device_acl(mosquitto_tls, tmp_path):
    """The deployment setup: the device may only use doorkeep/<its id>/#, the owner's tool writes as the hub."""
    dev = new_device(tmp_path / "device")
    keys = owner_keys()
    humans = CodeComparison()
    dev_client, owner_client = tls_client(mosquitto_tls, dev.identity.device_id), tls_client(mosquitto_tls, "hub")
    outcome: dict[str, object] = {}

    def device_side() -> None:
        try:
            outcome["device"] = serve_pairing(dev_client, DevicePairing(dev.prov, window=PairingWindow(60)),
                                              confirm=humans.side("device", "owner"))
        except Exception as exc:  # noqa: BLE001  (surfaced below)
            outcome["device"] = exc

    t = threading.Thread(target=device_side)
    t.start()
    try:
        ann = wait_for_announcement(owner_client, device_id=dev.identity.device_id, timeout=20)
        paired = run_owner(OwnerPairing(keys, device_id=ann.device_id), MqttChannel.owner(owner_client, ann.device_id),
                           confirm=humans.side("owner", "device"), timeout=30)
    finally:
        t.join(30)
        dev_client.stop()
        owner_client.stop()
    assert not isinstance(outcome["device"], Exception), outcome["device"]
    assert paired.device_id == dev.identity.device_id and humans.codes["owner"] == humans.codes["device"]
    assert load_owner_public(tmp_path / "device" / "owner.pub") == keys.public


def test_after_the_window_closes_nobody_answers(mosquitto, tmp_path):
    dev = new_device(tmp_path / "device")
    dev_client, owner_client = client(mosquitto, "dev"), client(mosquitto, "owner")
    try:
        with pytest.raises(WindowClosed):  # the window (1 s) expires with no owner
            serve_pairing(dev_client, DevicePairing(dev.prov, window=PairingWindow(1.0)), confirm=lambda c: True)
        # the device has unsubscribed: an offer now goes nowhere and the owner gives up
        with pytest.raises(PairingMismatch) as exc:
            run_owner(OwnerPairing(owner_keys(), device_id=dev.identity.device_id),
                      MqttChannel.owner(owner_client, dev.identity.device_id), confirm=lambda c: True, timeout=1.5)
        assert exc.value.reason == "timeout"
    finally:
        dev_client.stop()
        owner_client.stop()
    assert not (tmp_path / "device" / "owner.pub").exists()
    assert dev.audit_records("pair_refused")[-1]["reason"] == "window-closed"
