"""Owner key rotation: the old owner key signs the new owner public keys; the device verifies and re-pins.

A rotation is an owner document (:mod:`.documents`) of kind ``rotate-owner`` with body
``{"new_owner": <public key JSON (vault format)>}``, signed by the *currently pinned* owner key with a counter
above the last applied one. After it the device pins the new keys (``owner.pub``) and refuses documents signed
by the old key. New clips are sealed to the new X25519 key; clips sealed before stay openable with the old one.

The same body, under kind ``authorize-repair``, lets the current owner hand the device to a new owner through a
normal pairing exchange (:mod:`.pairing`).
"""

from __future__ import annotations

from doorkeep.device.errors import FormatError, InvalidArgument, KeyRoleError
from doorkeep.device.vault.keys import PublicKeys, SecretKeys

from .device_state import DeviceProvisioning, owner_key_id
from .documents import KIND_REPAIR, KIND_ROTATE, OwnerDocument, sign_document
from .errors import MalformedDocument


def sign_rotation(old: SecretKeys, new: PublicKeys, *, device_id: str, counter: int,
                  kind: str = KIND_ROTATE) -> OwnerDocument:
    """Owner side: the old key signs ``new`` for ``device_id`` (``kind`` may be ``authorize-repair``)."""
    if kind not in (KIND_ROTATE, KIND_REPAIR):
        raise InvalidArgument(f"kind must be {KIND_ROTATE!r} or {KIND_REPAIR!r}")
    if new.role != "owner":
        raise KeyRoleError("the new key must be an owner key")
    return sign_document(kind, device_id=device_id, counter=counter, body={"new_owner": new.to_json()},
                         owner=old)


def new_owner_of(doc: OwnerDocument) -> PublicKeys:
    """The new owner keys named in a rotation/re-pair document."""
    if set(doc.body) != {"new_owner"}:
        raise MalformedDocument('a rotation body must be exactly {"new_owner": {...}}')
    try:
        new = PublicKeys.from_json(doc.body["new_owner"], what="new_owner")
    except (FormatError, ValueError, TypeError) as exc:
        raise MalformedDocument(str(exc)) from None
    if new.role != "owner":
        raise MalformedDocument("new_owner must be an owner key")
    return new


def apply_rotation(prov: DeviceProvisioning, data: bytes) -> PublicKeys:
    """Device side: verify a rotation against the pinned owner, re-pin, advance the counter, audit.

    Raises:
        ProvisionRefused: as :meth:`DeviceProvisioning.admit` (audited as ``owner_rotation_refused``).
    """
    doc = prov.admit(data, kind=KIND_ROTATE, refused_event="owner_rotation_refused")
    try:
        new = new_owner_of(doc)
    except MalformedDocument as exc:
        prov.refused("owner_rotation_refused", exc, counter=doc.counter)
        raise
    old = prov.require_owner()
    prov.pin(new, replace=True)
    prov.commit_counter(doc.counter)
    prov.audit.append("owner_rotated", old=owner_key_id(old), new=owner_key_id(new), counter=doc.counter)
    return new
