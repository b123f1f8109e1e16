"""The device's provisioning state: the pinned owner and the counter of the last owner-signed document applied.

The owner's public keys are pinned in the vault's format and place (``<state_dir>/owner.pub``, written by
:func:`doorkeep.device.vault.keys.pin_owner_public`), so the vault checks grants against the very key pairing
pinned. The counter lives in ``<state_dir>/provisioning.json``; every owner-signed document (configuration,
owner rotation, re-pair authorisation) must carry a higher one, so none can be replayed or rolled back.

:meth:`DeviceProvisioning.admit` is the one gate all owner-signed documents pass: it parses, verifies, audits a
refusal (with its reason code) and raises it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from doorkeep.device.errors import FormatError, VaultError
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import (
    OWNER_PUB_FILE,
    PublicKeys,
    load_owner_public,
    pin_owner_public,
)

from .documents import OwnerDocument, key_id
from .errors import MalformedDocument, NotPaired, ProvisionRefused, StaleCounter
from .files import write_atomic

STATE_FILE = "provisioning.json"
STATE_FORMAT = "doorkeep/provisioning-state"
STATE_VERSION = 1


class Auditor(Protocol):
    """Where provisioning records its decisions (the vault's :class:`~doorkeep.device.vault.audit.AuditLog`)."""

    def append(self, kind: str, /, **fields: Any) -> object: ...


class DeviceProvisioning:
    """Pinned owner + monotonic counter for one device.

    Args:
        state_dir: the device's state directory.
        identity: the device identity (its id is what documents must name).
        audit: the audit log every decision is appended to.
    """

    def __init__(self, state_dir: str | os.PathLike[str], *, identity: DeviceIdentity, audit: Auditor) -> None:
        self.state_dir = Path(state_dir)
        self.identity = identity
        self.audit = audit

    # ------------------------------------------------------------------------------------------------ owner pin
    @property
    def owner_path(self) -> Path:
        return self.state_dir / OWNER_PUB_FILE

    def owner(self) -> PublicKeys | None:
        """The pinned owner keys, or None before pairing. A corrupt pin is an error, never "unpaired"."""
        if not self.owner_path.exists():
            return None
        try:
            return load_owner_public(self.owner_path)
        except (FormatError, VaultError) as exc:
            raise MalformedDocument(f"pinned owner key {self.owner_path} is unreadable: {exc}") from None

    def require_owner(self) -> PublicKeys:
        owner = self.owner()
        if owner is None:
            raise NotPaired(f"{self.identity.device_id} has no owner pinned; pair it first (doorkeep pair --device)")
        return owner

    def pin(self, owner: PublicKeys, *, replace: bool) -> None:
        pin_owner_public(self.state_dir, owner, replace=replace)

    # ------------------------------------------------------------------------------------------------ counter
    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def last_counter(self) -> int:
        """The highest counter applied so far (0 on a new device)."""
        if not self.state_path.exists():
            return 0
        try:
            f = codec.Fields(codec.parse_json(self.state_path.read_bytes(), what=str(self.state_path)),
                             what=str(self.state_path))
            f.header(STATE_FORMAT, STATE_VERSION)
            return f.integer("counter")
        except FormatError as exc:
            # Never fall back to 0: that would re-open every old document for replay.
            raise MalformedDocument(f"provisioning state is corrupt ({exc}); refusing owner documents") from None

    def commit_counter(self, counter: int) -> None:
        """Persist ``counter`` (atomically); it only ever goes up."""
        if counter <= self.last_counter():
            raise StaleCounter(f"counter {counter} would not advance past {self.last_counter()}")
        doc = {"format": STATE_FORMAT, "v": STATE_VERSION, "counter": counter}
        write_atomic(self.state_path, codec.canonical(doc) + b"\n", mode=0o600)

    # ------------------------------------------------------------------------------------------------ the gate
    def admit(self, data: bytes, *, kind: str, refused_event: str) -> OwnerDocument:
        """Parse and verify an owner-signed document of ``kind`` for this device.

        Every refusal is audited as ``refused_event`` with its reason code, then raised.

        Raises:
            ProvisionRefused: malformed, unsigned, bad-signature, wrong-device, stale-counter or not-paired.
        """
        try:
            doc = OwnerDocument.from_bytes(data)
            owner = self.require_owner()
            doc.verify(kind=kind, pinned_owner=owner.sign, device_id=self.identity.device_id,
                       last_counter=self.last_counter())
        except ProvisionRefused as exc:
            self.refused(refused_event, exc, doc_hash=codec.blake2b(data, person=b"dk-prov-doc").hex())
            raise
        return doc

    def refused(self, event: str, exc: ProvisionRefused, **fields: Any) -> None:
        self.audit.append(event, reason=exc.reason, detail=exc.detail[:300], **fields)


def owner_key_id(owner: PublicKeys) -> str:
    """Short id of an owner (its signing key) for audit records and messages."""
    return key_id(owner.sign)
