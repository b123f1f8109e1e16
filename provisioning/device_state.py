"""The device's provisioning state: the pinned owner and the counter of the last owner-signed document applied.

The owner's public keys are pinned in the vault's format and place (``<state_dir>/owner.pub``, written by
:func:`doorkeep.device.vault.keys.pin_owner_public`), so the vault checks grants against the very key pairing
pinned. The counter lives in ``<state_dir>/provisioning.json``; every owner-signed document (configuration,
owner rotation, re-pair authorisation) must carry a higher one, so none can be replayed or rolled back. The same
file records which configuration document is in force (its counter) and the signing keys of owners replaced since
pairing, so the stored configuration can be re-verified at every start against the pin, never against itself
(:meth:`DeviceProvisioning.check_stored`).

:meth:`DeviceProvisioning.admit` is the one gate all owner-signed documents pass: it parses, verifies, audits a
refusal (with its reason code) and raises it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
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

from .documents import KIND_CONFIG, OwnerDocument, key_id
from .errors import BadSignature, MalformedDocument, NotPaired, ProvisionRefused, StaleCounter
from .files import write_atomic

STATE_FILE = "provisioning.json"
STATE_FORMAT = "doorkeep/provisioning-state"
STATE_VERSION = 1
#: Earlier owners remembered (rotations and hand-overs), newest last: their configuration stays in force until the
#: new owner signs one.
MAX_PREVIOUS_OWNERS = 16


@dataclass(frozen=True)
class ProvisioningState:
    """``<state_dir>/provisioning.json``: the counter, the configuration in force, earlier owners' signing keys."""

    counter: int = 0
    #: Counter of the configuration document in force (0: none applied; ``None``: a file written before this
    #: field existed — the stored document is then only bounded by ``counter``).
    config: int | None = 0
    previous_owners: tuple[bytes, ...] = ()

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"format": STATE_FORMAT, "v": STATE_VERSION, "counter": self.counter,
                               "previous_owners": [codec.b64e(k) for k in self.previous_owners]}
        if self.config is not None:
            doc["config"] = self.config
        return codec.canonical(doc) + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str) -> ProvisioningState:
        f = codec.Fields(codec.parse_json(data, what=what), what=what)
        f.header(STATE_FORMAT, STATE_VERSION)
        f.only("format", "v", "counter", "config", "previous_owners")
        counter = f.integer("counter")
        config = f.integer("config", hi=counter) if "config" in f.obj else None
        owners = tuple(codec.b64d(k, what=f"{what} previous_owners", length=32)
                       for k in (f.items("previous_owners", max_len=MAX_PREVIOUS_OWNERS)
                                 if "previous_owners" in f.obj else []))
        return cls(counter, config, owners)


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
        """Pin ``owner``; a replaced owner's signing key is remembered (its configuration stays in force)."""
        try:
            previous = self.owner() if replace else None
        except MalformedDocument:  # a corrupt pin being replaced: nothing to remember
            previous = None
        if previous is not None and previous.sign != owner.sign:
            st = self.state()
            kept = tuple(k for k in st.previous_owners if k != previous.sign)
            self._write(dataclasses.replace(st, previous_owners=(*kept, previous.sign)[-MAX_PREVIOUS_OWNERS:]))
        pin_owner_public(self.state_dir, owner, replace=replace)

    # ------------------------------------------------------------------------------------------------ counter
    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def state(self) -> ProvisioningState:
        """The persisted state (all zero on a new device).

        Raises:
            MalformedDocument: the file is corrupt — never read as 0, which would re-open old documents for replay.
        """
        if not self.state_path.exists():
            return ProvisioningState()
        try:
            return ProvisioningState.from_bytes(self.state_path.read_bytes(), what=str(self.state_path))
        except FormatError as exc:
            raise MalformedDocument(f"provisioning state is corrupt ({exc}); refusing owner documents") from None

    def last_counter(self) -> int:
        """The highest counter applied so far (0 on a new device)."""
        return self.state().counter

    def commit_counter(self, counter: int, *, config: bool = False) -> None:
        """Persist ``counter`` (atomically); it only ever goes up. ``config``: it is the configuration now in force."""
        st = self.state()
        if counter <= st.counter:
            raise StaleCounter(f"counter {counter} would not advance past {st.counter}")
        self._write(dataclasses.replace(st, counter=counter, config=counter if config else st.config))

    def _write(self, st: ProvisioningState) -> None:
        write_atomic(self.state_path, st.to_bytes(), mode=0o600)

    def check_stored(self, doc: OwnerDocument) -> bool:
        """Check the configuration document stored in the state directory (at start): signed by the pinned owner
        (or by an owner the device replaced since, whose settings stay in force until the new one signs), for this
        device, and exactly the one this device applied last (its counter as recorded). It is never checked against
        its own signer, so a document dropped into the state directory, or an older one put back, is refused.

        Returns True when the document is valid but its counter was not committed yet: ``apply`` stores the
        document, then commits the counter, and a power cut fell in between. Such a document must pass the same
        gate as a new one (the pinned owner, a counter above the last); the caller then commits it.

        Raises:
            ProvisionRefused: ``not-paired``, ``bad-signature``, ``wrong-device``, ``stale-counter``.
        """
        owner = self.require_owner()
        st = self.state()
        if doc.counter > st.counter:  # stored but never committed: only the pinned owner's own document passes
            doc.verify(kind=KIND_CONFIG, pinned_owner=owner.sign, device_id=self.identity.device_id,
                       last_counter=st.counter)
            return True
        if doc.signer not in (owner.sign, *st.previous_owners):
            raise BadSignature(f"stored configuration #{doc.counter} is signed by {key_id(doc.signer)}, not by the "
                               f"pinned owner {key_id(owner.sign)}")
        doc.verify(kind=KIND_CONFIG, pinned_owner=doc.signer, device_id=self.identity.device_id, last_counter=0)
        if st.config is not None and doc.counter != st.config:  # None: a state file from before the field
            raise StaleCounter(f"stored configuration #{doc.counter} is not the one in force here "
                               f"({f'#{st.config}' if st.config else 'none was applied'}): replaced or rolled back")
        return False

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
