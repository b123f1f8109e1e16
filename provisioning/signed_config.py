"""Owner-signed configuration: zones, privacy masks, thresholds, retention and broker settings change only here.

A configuration document is an owner document (:mod:`.documents`) of kind ``config`` whose body is
``{"config": {<table>: {<key>: value}}}`` — the same tables and keys as doorkeep.toml (docs/config.md), as JSON —
plus ``"allow_mask_removal": true`` when the owner signed it to remove privacy masks. It is the device's whole
policy: what it does not set returns to the default, and a mask it does not list is removed, which the device
refuses without that flag (:mod:`.config_diff`, docs/config.md).
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

from doorkeep.device.activity import log as activity
from doorkeep.device.config import Config
from doorkeep.device.errors import ConfigError
from doorkeep.device.safe_text import printable
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import SecretKeys

from .config_diff import Change, check_mask_removal, diff_configs, removed_masks, report
from .device_state import DeviceProvisioning
from .documents import KIND_CONFIG, OwnerDocument, key_id, sign_document
from .errors import InvalidConfig, MalformedDocument, MaskRemoval, ProvisionRefused, StoredConfigRefused
from .files import write_atomic

APPLIED_FILE = "config.signed.json"
#: Tables the device's local file keeps setting after pairing (hardware and paths, not policy).
LOCAL_TABLES = ("device", "capture")
#: Keys a signed document may not set: local filesystem paths, and where the pinned owner key is read from (it
#: must stay the file pairing writes, ``<state_dir>/owner.pub``).
LOCAL_ONLY_KEYS = ("device.state_dir", "vault.owner_key")


def _config_table(doc: OwnerDocument) -> dict[str, Any]:
    table = doc.body.get("config")
    if "config" not in doc.body or not set(doc.body) <= {"config", "allow_mask_removal"} or \
            not isinstance(table, dict) or not isinstance(doc.body.get("allow_mask_removal", True), bool):
        raise MalformedDocument('a config document body must be {"config": {...tables...}} with an optional '
                                '"allow_mask_removal": true')
    return table


def allows_mask_removal(doc: OwnerDocument) -> bool:
    return doc.body.get("allow_mask_removal") is True


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
                issued_at: int | None = None, allow_mask_removal: bool = False) -> OwnerDocument:
    """Owner side: validate ``table`` as a configuration, then sign it for ``device_id`` with ``counter``
    (``allow_mask_removal``: the device may apply it although it removes privacy masks it has now).

    Raises:
        InvalidConfig: the owner learns about a bad value before the document ever leaves the machine.
    """
    validate_table(table)
    body: dict[str, Any] = {"config": table}
    if allow_mask_removal:
        body["allow_mask_removal"] = True
    return sign_document(KIND_CONFIG, device_id=device_id, counter=counter, body=body, owner=keys,
                         issued_at=issued_at)


@dataclass(frozen=True)
class Applied:
    """A configuration the device accepted."""

    counter: int
    config: Config
    table: dict[str, Any]
    changed: tuple[str, ...]
    #: What it changed against the policy in force, in :func:`~.config_diff.report`'s words.
    changes: tuple[Change, ...] = ()


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
                ``not-paired``, ``invalid-config`` (with the key path) or ``mask-removal`` (it removes a privacy
                mask and was not signed with ``allow_mask_removal``) — each audited as ``config_refused``.
        """
        doc = self.prov.admit(data, kind=KIND_CONFIG, refused_event="config_refused")
        previous = self._previous_table()
        try:
            table = _config_table(doc)
            config = validate_table(table, local=self.local)
            changes = self.changes(previous, config, table)
            check_mask_removal(changes, allowed=allows_mask_removal(doc))
        except (InvalidConfig, MalformedDocument, MaskRemoval) as exc:
            self.prov.refused("config_refused", exc, counter=doc.counter, path=getattr(exc, "path", ""))
            activity.warning("refused owner configuration #%d: %s", doc.counter, printable(str(exc)))
            raise
        old, new = _flatten(previous or {}), _flatten(table)
        changed = tuple(sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)))
        write_atomic(self.path, doc.to_bytes(), mode=0o600)
        self.prov.commit_counter(doc.counter, config=True)
        extra = {"removed_masks": removed_masks(changes)[:16]} if removed_masks(changes) else {}
        self.prov.audit.append("config_applied", counter=doc.counter, signer=key_id(doc.signer),
                               doc_hash=_doc_hash(doc), changed=list(changed)[:100], **extra)
        activity.info("applied owner configuration #%d: %s", doc.counter,
                      printable("; ".join(report(changes)) or "no change"))
        return Applied(doc.counter, config, table, changed, tuple(changes))

    def changes(self, previous: dict[str, Any] | None, config: Config, table: dict[str, Any]) -> list[Change]:
        """What ``config`` (from the signed ``table``) changes against the policy in force (``previous``: its
        signed table, None for none: the local tables and defaults)."""
        try:
            old = effective_config(self.local, previous, paired=False)
        except (ConfigError, ProvisionRefused):  # the old policy no longer loads: compare with the defaults
            old = Config.from_dict(self.local)
        return diff_configs(old, config, new_table=table)

    def check(self, data: bytes) -> tuple[OwnerDocument, Config]:
        """What :meth:`apply` would do with ``data``, without doing it: nothing stored, counted or audited.

        Raises:
            ProvisionRefused: the refusal :meth:`apply` would give (``stale-counter``, ``bad-signature``,
                ``mask-removal``, ...).
        """
        doc = OwnerDocument.from_bytes(data)
        doc.verify(kind=KIND_CONFIG, pinned_owner=self.prov.require_owner().sign,
                   device_id=self.prov.identity.device_id, last_counter=self.prov.last_counter())
        table = _config_table(doc)
        config = validate_table(table, local=self.local)
        check_mask_removal(self.changes(self._previous_table(), config, table), allowed=allows_mask_removal(doc))
        return doc, config

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


# ------------------------------------------------------------------------------------------------ owner side
def _signed_dir(book_path: Path, device_id: str) -> Path:
    return book_path.parent / "signed" / device_id


def remember_signed(book_path: Path, doc: OwnerDocument) -> None:
    """Keep a copy of a configuration the owner signed (``signed/<device>/config-<counter>.json`` beside the device
    book, 0600), so the next ``config sign`` / ``config push`` can say what a document changes."""
    from .files import make_dirs

    folder = _signed_dir(book_path, doc.device_id)
    make_dirs(folder)
    write_atomic(folder / f"config-{doc.counter:08d}.json", doc.to_bytes(), mode=0o600)


def signed_before(book_path: Path, device_id: str, counter: int) -> tuple[int, dict[str, Any]] | None:
    """The newest configuration signed on this machine for ``device_id`` below ``counter``: (counter, table)."""
    folder = _signed_dir(book_path, device_id)
    found = sorted((int(p.stem.split("-")[1]), p) for p in folder.glob("config-*.json")
                   if p.stem.split("-")[1].isdigit()) if folder.is_dir() else []
    for n, p in reversed(found):
        if n < counter:
            try:
                return n, _config_table(OwnerDocument.from_bytes(p.read_bytes()))
            except ProvisionRefused:
                continue  # an unreadable copy: an older one, or none
    return None


def owner_side_changes(book_path: Path, device_id: str, counter: int,
                       table: dict[str, Any]) -> tuple[str, list[Change]]:
    """What a document with ``table`` changes against the last one signed on this machine before ``counter``, and
    which that was (in words). Without one, against the defaults."""
    new = validate_table(table)
    before = signed_before(book_path, device_id, counter)
    if before is None:
        return (f"no earlier configuration for {device_id} was signed on this machine: compared with the defaults "
                "(the device itself refuses a document that removes a mask it has)"), \
            diff_configs(Config.from_dict({}), new, new_table=table)
    n, old_table = before
    try:
        old = validate_table(old_table)
    except InvalidConfig:
        old = Config.from_dict({})
    return f"compared with configuration #{n}, the last one signed on this machine", \
        diff_configs(old, new, new_table=table)
