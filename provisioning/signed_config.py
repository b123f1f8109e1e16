"""Owner-signed configuration: zones, privacy masks, thresholds, retention and broker settings change only here.

A configuration document is an owner document (:mod:`.documents`) of kind ``config`` whose body is
``{"config": {<table>: {<key>: value}}}`` — the same tables and keys as doorkeep.toml (docs/config.md), as JSON.
The device applies it only when it is signed by the pinned owner, names this device, carries a counter above the
last one applied and yields a valid :class:`~doorkeep.device.config.Config` (a bad value is refused by its key
path). The applied document is stored atomically as ``<state_dir>/config.signed.json``; every application and
every refusal is audited.

Once an owner is pinned, the device's local TOML may only set the hardware/path tables (:data:`LOCAL_TABLES`);
everything else comes from the signed document (:func:`effective_config`).

Example (owner side, then device side)::

    doc = sign_config({"motion": {"min_changed": 0.01}}, device_id=dev.device_id, counter=book.next_counter(...),
                      keys=owner_keys)
    SignedConfigStore(prov).apply(doc.to_bytes())
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doorkeep.device.config import Config
from doorkeep.device.errors import ConfigError
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import SecretKeys

from .device_state import DeviceProvisioning
from .documents import KIND_CONFIG, OwnerDocument, key_id, sign_document
from .errors import InvalidConfig, MalformedDocument, ProvisionRefused, StoredConfigRefused
from .files import write_atomic

APPLIED_FILE = "config.signed.json"
#: Tables the device's local file keeps setting after pairing (hardware and paths, not policy).
LOCAL_TABLES = ("device", "capture")
#: Keys a signed document may not set: local filesystem paths, and where the pinned owner key is read from (it
#: must stay the file pairing writes, ``<state_dir>/owner.pub``).
LOCAL_ONLY_KEYS = ("device.state_dir", "vault.owner_key")


def _config_table(doc: OwnerDocument) -> dict[str, Any]:
    table = doc.body.get("config")
    if set(doc.body) != {"config"} or not isinstance(table, dict):
        raise MalformedDocument('a config document body must be exactly {"config": {...tables...}}')
    return table


def validate_table(table: dict[str, Any], *, local: dict[str, Any] | None = None) -> Config:
    """The Config that ``table`` (signed) over ``local`` (the device's own tables) yields.

    Raises:
        InvalidConfig: a value refused by the config loader (``.path`` names the key) or a local-only key.
    """
    for dotted in LOCAL_ONLY_KEYS:
        section, key = dotted.split(".")
        if isinstance(table.get(section), dict) and key in table[section]:
            raise InvalidConfig(f"{dotted} is local to the device and cannot be set by a signed document",
                                path=dotted)
    merged = merge_tables(local or {}, table)
    try:
        return Config.from_dict(merged)
    except ConfigError as exc:
        raise InvalidConfig(str(exc), path=exc.path) from None


def merge_tables(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid on ``base`` one table deep (a signed table replaces keys, not whole tables)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = v
    return out


def sign_config(table: dict[str, Any], *, device_id: str, counter: int, keys: SecretKeys,
                issued_at: int | None = None) -> OwnerDocument:
    """Owner side: validate ``table`` as a configuration, then sign it for ``device_id`` with ``counter``.

    Raises:
        InvalidConfig: the owner learns about a bad value before the document ever leaves the machine.
    """
    validate_table(table)
    return sign_document(KIND_CONFIG, device_id=device_id, counter=counter, body={"config": table},
                         owner=keys, issued_at=issued_at)


@dataclass(frozen=True)
class Applied:
    """A configuration the device accepted."""

    counter: int
    config: Config
    table: dict[str, Any]
    changed: tuple[str, ...]


def _doc_hash(doc: OwnerDocument) -> str:
    return codec.blake2b(doc.to_bytes(), person=b"dk-prov-doc").hex()


def _flatten(table: dict[str, Any]) -> dict[str, Any]:
    flat = {}
    for sec, val in table.items():
        if isinstance(val, dict):
            flat.update({f"{sec}.{k}": v for k, v in val.items()})
        else:
            flat[sec] = val
    return flat


class SignedConfigStore:
    """Device side: apply owner-signed configuration documents and load the one applied last."""

    def __init__(self, prov: DeviceProvisioning, *, local: dict[str, Any] | None = None) -> None:
        self.prov = prov
        self.local = {k: v for k, v in (local or {}).items() if k in LOCAL_TABLES}

    @property
    def path(self) -> Path:
        return self.prov.state_dir / APPLIED_FILE

    def apply(self, data: bytes) -> Applied:
        """Verify and apply one document; store it atomically, then advance the counter; audit the outcome.

        Raises:
            ProvisionRefused: ``malformed``, ``unsigned``, ``bad-signature``, ``wrong-device``, ``stale-counter``,
                ``not-paired`` or ``invalid-config`` (with the key path) — each audited as ``config_refused``.
        """
        doc = self.prov.admit(data, kind=KIND_CONFIG, refused_event="config_refused")
        try:
            table = _config_table(doc)
            config = validate_table(table, local=self.local)
        except (InvalidConfig, MalformedDocument) as exc:
            self.prov.refused("config_refused", exc, counter=doc.counter, path=getattr(exc, "path", ""))
            raise
        previous = self._previous_table() or {}
        old, new = _flatten(previous), _flatten(table)
        changed = tuple(sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)))
        write_atomic(self.path, doc.to_bytes(), mode=0o600)
        self.prov.commit_counter(doc.counter, config=True)
        self.prov.audit.append("config_applied", counter=doc.counter, signer=key_id(doc.signer),
                               doc_hash=_doc_hash(doc), changed=list(changed)[:100])
        return Applied(doc.counter, config, table, changed)

    def check(self, data: bytes) -> tuple[OwnerDocument, Config]:
        """What :meth:`apply` would do with ``data``, without doing it: nothing stored, counted or audited.

        Raises:
            ProvisionRefused: the refusal :meth:`apply` would give (``stale-counter``, ``bad-signature``, ...).
        """
        doc = OwnerDocument.from_bytes(data)
        doc.verify(kind=KIND_CONFIG, pinned_owner=self.prov.require_owner().sign,
                   device_id=self.prov.identity.device_id, last_counter=self.prov.last_counter())
        return doc, validate_table(_config_table(doc), local=self.local)

    def _previous_table(self) -> dict[str, Any] | None:
        """The policy a new document replaces; None when there is none or the stored one does not verify (the new
        document, which passed the gate, replaces it either way)."""
        try:
            return self.load_table()
        except ProvisionRefused:
            return None

    def load_document(self) -> OwnerDocument | None:
        """The stored document, parsed and checked (:meth:`DeviceProvisioning.check_stored`), or None.

        Raises:
            ProvisionRefused: it does not verify against the pinned owner and the recorded counter.
        """
        if not self.path.exists():
            return None
        doc = OwnerDocument.from_bytes(self.path.read_bytes())
        self.prov.check_stored(doc)
        _config_table(doc)
        return doc

    def load_table(self) -> dict[str, Any] | None:
        """The table of the stored document, verified as :meth:`load_document` does, or None."""
        doc = self.load_document()
        return None if doc is None else _config_table(doc)

    def load_at_start(self) -> dict[str, Any] | None:
        """:meth:`load_table` for a device start: a refusal is audited (``config_refused``, ``stored: true``) and
        raised as :class:`StoredConfigRefused`; a valid document whose counter a power cut kept from being
        committed is committed now (audited ``config_applied`` with ``recovered: true``).

        Raises:
            StoredConfigRefused: the device must not start with a policy its owner did not sign.
        """
        if not self.path.exists():
            return None
        data = self.path.read_bytes()
        try:
            doc = OwnerDocument.from_bytes(data)
            pending = self.prov.check_stored(doc)
            table = _config_table(doc)
            if pending:
                validate_table(table, local=self.local)
        except ProvisionRefused as exc:
            h = codec.blake2b(data, person=b"dk-prov-doc").hex()
            self.prov.refused("config_refused", exc, doc_hash=h, stored=True)
            raise StoredConfigRefused(
                f"the stored signed configuration {self.path} is refused ({exc}); the device does not start with a "
                "policy its owner did not sign: apply a document from the owner (doorkeep config apply FILE)",
                reason=exc.reason) from None
        if pending:
            self.prov.commit_counter(doc.counter, config=True)
            self.prov.audit.append("config_applied", counter=doc.counter, signer=key_id(doc.signer),
                                   doc_hash=_doc_hash(doc), changed=[], recovered=True)
        return table

    def effective(self) -> Config:
        """The configuration the runtime should use: local tables + the applied signed document (or defaults)."""
        return effective_config(self.local, self.load_table())


def effective_config(local: dict[str, Any], signed: dict[str, Any] | None, *, paired: bool = True) -> Config:
    """Build the runtime Config. When paired, local tables outside :data:`LOCAL_TABLES` are refused by path.

    Raises:
        ConfigError: a local key that only a signed document may set (the message says how to change it).
    """
    if paired:
        for table, value in local.items():
            if table not in LOCAL_TABLES:
                raise ConfigError(table, value, "this device is paired: change it with an owner-signed "
                                  "configuration (doorkeep config sign, then doorkeep config apply)")
    if signed is None:
        return Config.from_dict(local)
    return validate_table(signed, local=local)


def load_local_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The device's local TOML as a dict (an absent file is empty)."""
    import tomllib

    p = Path(path)
    if not p.exists():
        return {}
    try:
        with open(p, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(p), "", f"not valid TOML: {exc}") from None
