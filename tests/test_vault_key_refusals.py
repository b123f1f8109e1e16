"""Key files and the owner pin refuse what they must; bundles refuse a changed manifest or clip, a grant the owner did
not sign, a device key that is not the named device's, a manifest the device did not sign or that names another
clip. Written for mutants that survived every other vault test (tests/mutation_check.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from doorkeep.device.errors import FormatError, KeyRoleError, VaultError
from doorkeep.device.vault.codec import canonical
from doorkeep.device.vault.keys import (
    MAX_MEMLIMIT,
    MIN,
    OWNER_PUB_FILE,
    PublicKeys,
    SecretKeys,
    load_owner_public,
    pin_owner_public,
)
from vault_support import make_device, make_packets, sealed_keys, write_clip

PASS = b"correct horse"


def _edited(data: bytes, **fields: object) -> bytes:
    doc = json.loads(data)
    for k, v in fields.items():
        if isinstance(v, dict):
            doc[k] = {**doc[k], **v}
        else:
            doc[k] = v
    return canonical(doc) + b"\n"


def test_a_key_file_claiming_another_partys_public_keys_is_refused() -> None:
    """The file's public half is what recipients and devices get shown; it must be the secret's own."""
    a, b = SecretKeys.generate("owner"), SecretKeys.generate("owner")
    other = json.loads(b.public.to_bytes())
    data = _edited(a.to_file_bytes(PASS, limits=MIN), sign=other["sign"], box=other["box"])
    with pytest.raises(FormatError, match="do not match"):
        SecretKeys.from_file_bytes(data, PASS)
    assert SecretKeys.from_file_bytes(a.to_file_bytes(PASS, limits=MIN), PASS).public == a.public


def test_a_key_file_asking_argon2_for_too_much_memory_is_refused_before_the_passphrase() -> None:
    """A crafted file must not make the owner's tool allocate gigabytes (or ask for the passphrase first)."""
    data = _edited(SecretKeys.generate("owner").to_file_bytes(PASS, limits=MIN), kdf={"mem": MAX_MEMLIMIT * 2})

    def prompt() -> bytes:
        raise AssertionError("asked for the passphrase of a file that should have been refused")

    with pytest.raises(FormatError):
        SecretKeys.from_file_bytes(data, prompt)


def test_the_pinned_owner_is_not_replaced_by_another(tmp_path: Path) -> None:
    a, b = SecretKeys.generate("owner").public, SecretKeys.generate("owner").public
    pin_owner_public(tmp_path, a)
    pin_owner_public(tmp_path, a)  # the same owner again: fine
    with pytest.raises(VaultError, match="different owner"):
        pin_owner_public(tmp_path, b)
    assert load_owner_public(tmp_path / OWNER_PUB_FILE) == a
    pin_owner_public(tmp_path, b, replace=True)  # factory reset's path
    assert load_owner_public(tmp_path / OWNER_PUB_FILE) == b


def test_only_an_owner_key_can_be_pinned(tmp_path: Path) -> None:
    with pytest.raises(KeyRoleError):
        pin_owner_public(tmp_path, SecretKeys.generate("recipient").public)
    assert not (tmp_path / OWNER_PUB_FILE).exists()


def test_a_public_key_file_of_another_role_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "someone.pub"
    path.write_bytes(SecretKeys.generate("recipient").public.to_bytes())
    assert PublicKeys.load(path).role == "recipient"
    with pytest.raises(FormatError):
        PublicKeys.load(path, role="owner")
    with pytest.raises(FormatError):
        load_owner_public(path)


def test_a_manifest_changed_after_the_bundle_index_was_signed_stops_the_export(tmp_path: Path) -> None:
    """The bundle's signed index names each manifest by hash; if the manifest on disk changes between signing the
    index and shipping it, the export stops instead of shipping a manifest the index does not vouch for."""
    from doorkeep.device.vault.bundles import BundleClip, BundleStream
    from doorkeep.device.vault.grants import issue_grant

    dev = make_device(tmp_path)
    write_clip(dev, "c1", make_packets(10))
    store = dev.vault.store
    grant = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "c1"),
                        recipient=dev.recipient.public, recipient_name="r", purpose="p", requester="q")
    clip = BundleClip(store.manifest_path("c1"), store.clip_path("c1"))
    stream = iter(BundleStream(dev.identity, grant, dev.owner.public, [clip]))
    next(stream)  # the signed head, naming the manifest's hash
    m = clip.load_manifest()
    store.write_manifest(dataclasses.replace(m, event_ids=(*m.event_ids, "later")).signed(dev.identity))
    with pytest.raises(FormatError, match="manifest changed"):
        list(stream)


def test_a_clip_whose_size_differs_from_its_manifest_is_refused_before_anything_is_streamed(tmp_path: Path) -> None:
    """A clip grown or cut on disk since its manifest was signed is refused when the bundle is built — before its
    signed head exists — not halfway through writing the bundle."""
    from doorkeep.device.vault.bundles import BundleClip, BundleStream
    from doorkeep.device.vault.grants import issue_grant

    dev = make_device(tmp_path)
    write_clip(dev, "c1", make_packets(10))
    store = dev.vault.store
    grant = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "c1"),
                        recipient=dev.recipient.public, recipient_name="r", purpose="p", requester="q")
    with open(store.clip_path("c1"), "ab") as f:
        f.write(b"\0" * 64)
    with pytest.raises(FormatError, match="bytes on disk"):
        BundleStream(dev.identity, grant, dev.owner.public, [BundleClip(store.manifest_path("c1"),
                                                                           store.clip_path("c1"))])


class _Renamed:
    """The device's key under another device id (what a device key stolen for a forged bundle would claim)."""

    def __init__(self, identity: object, device_id: str) -> None:
        self._identity, self.device_id = identity, device_id
        self.public_bytes = identity.public_bytes  # type: ignore[attr-defined]

    def sign(self, message: bytes) -> bytes:
        return self._identity.sign(message)  # type: ignore[attr-defined, no-any-return]


def _signed_bundle(tmp_path: Path, *, grant_sig: bytes | None = None, other_device: bool = False,
                   manifest_sig: bytes | None = None) -> tuple[bytes, object]:
    """A bundle the device signs (build_bundle), optionally over a grant whose owner signature is not the owner's,
    or with the grant and index naming another device id than the signing key's."""
    from doorkeep.device.identity import DeviceIdentity
    from doorkeep.device.vault.bundles import BundleClip, build_bundle
    from doorkeep.device.vault.grants import issue_grant

    dev = make_device(tmp_path)
    write_clip(dev, "c1", make_packets(10))
    store = dev.vault.store
    device_id = DeviceIdentity.generate().device_id if other_device else dev.identity.device_id
    grant = issue_grant(dev.owner, device_id=device_id, sealed_keys=sealed_keys(dev, "c1"),
                        recipient=dev.recipient.public, recipient_name="r", purpose="p", requester="q")
    if grant_sig is not None:
        grant = dataclasses.replace(grant, sig=grant_sig)
    identity = _Renamed(dev.identity, device_id) if other_device else dev.identity
    clips = [BundleClip(store.manifest_path("c1"), store.clip_path("c1"))]
    if manifest_sig is not None:
        store.write_manifest(dataclasses.replace(clips[0].load_manifest(), sig=manifest_sig))
    data = build_bundle(identity, grant, dev.owner.public, clips)  # type: ignore[arg-type]
    return data, dev


def test_a_device_signed_bundle_whose_grant_the_owner_did_not_sign_is_refused(tmp_path: Path) -> None:
    from doorkeep.device.errors import ReleaseError
    from doorkeep.device.vault.bundle_open import open_bundle

    data, dev = _signed_bundle(tmp_path, grant_sig=bytes(64))
    with pytest.raises(ReleaseError):
        open_bundle(data, dev.recipient, owner=dev.owner.public)  # type: ignore[attr-defined]


def test_a_bundle_whose_device_key_is_not_the_named_devices_is_refused(tmp_path: Path) -> None:
    """Signed by a real device key, but the index and grant name another device: the key does not hash to that
    device id, so the bundle is refused as coming from the wrong device."""
    from doorkeep.device.errors import ReleaseError
    from doorkeep.device.vault.bundle_open import open_bundle

    data, dev = _signed_bundle(tmp_path, other_device=True)
    with pytest.raises(ReleaseError, match="different devices"):
        open_bundle(data, dev.recipient, owner=dev.owner.public)  # type: ignore[attr-defined]


def test_a_bundle_carrying_a_manifest_the_device_did_not_sign_is_refused(tmp_path: Path) -> None:
    from doorkeep.device.errors import ReleaseError
    from doorkeep.device.vault.bundle_open import open_bundle

    data, dev = _signed_bundle(tmp_path, manifest_sig=bytes(64))
    with pytest.raises((ReleaseError, FormatError)):
        open_bundle(data, dev.recipient, owner=dev.owner.public)  # type: ignore[attr-defined]


def test_a_bundle_entry_carrying_another_clips_signed_manifest_is_refused(tmp_path: Path) -> None:
    """The device signs an index whose entry for c1 carries c2's manifest (validly signed, hash and size matching the
    index) and c2's bytes: refused as naming another clip before any clip is handed out, not later as a key error."""
    from doorkeep.device.errors import ReleaseError
    from doorkeep.device.vault.bundle_open import read_bundle
    from doorkeep.device.vault.bundles import _LEN, MAGIC, SIG_DOMAIN, BundleClip, BundleStream, manifest_hash
    from doorkeep.device.vault.codec import signed_message
    from doorkeep.device.vault.grants import issue_grant

    dev = make_device(tmp_path)
    write_clip(dev, "c1", make_packets(10))
    write_clip(dev, "c2", make_packets(10, seed=1))
    store = dev.vault.store
    grant = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "c1"),
                        recipient=dev.recipient.public, recipient_name="r", purpose="p", requester="q")
    head = BundleStream(dev.identity, grant, dev.owner.public,
                        [BundleClip(store.manifest_path("c1"), store.clip_path("c1"))]).head
    n = _LEN.unpack_from(head, len(MAGIC))[0]
    index = json.loads(head[len(MAGIC) + _LEN.size:len(MAGIC) + _LEN.size + n])
    raw2, clip2 = store.manifest_path("c2").read_bytes(), store.clip_path("c2").read_bytes()
    index["clips"][0].update(manifest_hash=manifest_hash(raw2), manifest_size=len(raw2), size=len(clip2))
    assert index["clips"][0]["clip_id"] == "c1"
    raw_index = canonical(index)
    head = MAGIC + _LEN.pack(len(raw_index)) + raw_index
    data = head + dev.identity.sign(signed_message(SIG_DOMAIN, head)) + raw2 + clip2
    reader = read_bundle(data, dev.recipient, owner=dev.owner.public)  # type: ignore[attr-defined]
    with pytest.raises(ReleaseError, match="names another clip"):
        next(iter(reader.clips()))
