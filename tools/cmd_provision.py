"""Provisioning commands, owner side and device side.

Device: ``pair --device`` (open a pairing window on MQTT, or consume a boot-partition file with ``--boot-file``),
``config apply`` (an owner-signed configuration or owner-rotation document), ``factory-reset``.
Owner: ``pair --owner`` (over MQTT; ``--boot-file`` writes a pairing file for the SD card; ``--receipt`` pins the
device from its receipt), ``config sign`` (TOML → signed document), ``config push`` (to the running device over
MQTT), ``config rotate-owner``.
Owner key passphrases come from ``--passphrase-file``, else ``$DOORKEEP_PASSPHRASE``, else a prompt.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import uuid
from pathlib import Path
from typing import Any

from doorkeep.device.errors import InvalidArgument
from doorkeep.device.safe_text import printable
from doorkeep.tools.cmd_status import add_config_check
from doorkeep.tools.cmd_vault import _config, _pass_arg, _secret_keys, _state_args


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("pair", help="pair this device with its owner (numeric comparison), or pair a device (owner)",
                       description="Pair a device and its owner. Run `--device` on the doorbell and `--owner` on "
                       "the owner's machine; both show a 6-digit code: confirm only if they match.")
    side = p.add_mutually_exclusive_group(required=True)
    side.add_argument("--device", action="store_true", help="device side")
    side.add_argument("--owner", action="store_true", help="owner side")
    p.add_argument("--broker", metavar="HOST[:PORT]", help="MQTT broker (device: default from the config's [mqtt])")
    p.add_argument("--boot-file", type=Path, metavar="PATH",
                   help="device: consume this pairing file; owner: write a pairing file here (SD card boot partition, "
                   "e.g. /boot/firmware/doorkeep-pair.json)")
    p.add_argument("--window", type=float, default=300.0, metavar="S", help="device: pairing window (default 300 s)")
    p.add_argument("--key", type=Path, help="owner: owner secret key file (doorkeep owner keygen)")
    p.add_argument("--device-id", help="owner: the device expected (default: the one that opens its window)")
    p.add_argument("--authorize-with", type=Path, metavar="OLD_KEY",
                   help="owner: re-pair a device owned by OLD_KEY (its secret key file; signs the hand-over)")
    p.add_argument("--receipt", type=Path, help="owner: pin the device from a boot-file pairing receipt")
    p.add_argument("--book", type=Path, help="owner: paired-device file (default ~/.config/doorkeep/devices.json)")
    p.add_argument("--timeout", type=float, default=300.0, metavar="S", help="owner: how long to wait for the device")
    p.add_argument("--yes", action="store_true",
                   help="confirm the code without asking (only for scripts that compare the codes themselves)")
    _state_args(p)
    _pass_arg(p)
    p.set_defaults(func=_pair)

    c = sub.add_parser("config", help="owner-signed configuration: sign (owner), apply (device), rotate-owner")
    cs = c.add_subparsers(dest="config_cmd", metavar="ACTION", required=True)
    s = cs.add_parser("sign", help="owner: sign a TOML configuration for one device (next counter)")
    s.add_argument("toml", type=Path, help="configuration tables (docs/config.md), e.g. zones, masks, [mqtt]")
    s.add_argument("--key", required=True, type=Path, help="owner secret key file")
    s.add_argument("--device-id", help="device (default: the only paired one)")
    s.add_argument("--out", required=True, type=Path, help="signed document to write")
    s.add_argument("--book", type=Path, help="paired-device file (default ~/.config/doorkeep/devices.json)")
    s.add_argument("--allow-mask-removal", action="store_true",
                   help="the document may remove privacy masks (a signed configuration is the whole policy: a mask "
                   "it does not list is removed; without this flag such a document is refused)")
    _pass_arg(s)
    s.set_defaults(func=_config_sign)

    a = cs.add_parser("apply", help="device: verify and apply an owner-signed configuration or owner rotation")
    a.add_argument("document", type=Path)
    _state_args(a)
    a.set_defaults(func=_config_apply)

    u = cs.add_parser("push", help="owner: send a signed document to the running device over MQTT; print its verdict")
    u.add_argument("document", type=Path)
    u.add_argument("--broker", required=True, metavar="HOST[:PORT]")
    u.add_argument("--device-id", help="device (default: the one the document names)")
    u.add_argument("--book", type=Path)
    u.add_argument("--timeout", type=float, default=30.0, metavar="S")
    u.set_defaults(func=_config_push)

    add_config_check(cs)

    r = cs.add_parser("rotate-owner", help="owner: sign a hand-over from the old owner key to a new one")
    r.add_argument("--key", required=True, type=Path, help="the OLD owner secret key file (signs)")
    r.add_argument("--new-public", required=True, type=Path, help="the NEW owner public key file")
    r.add_argument("--device-id", help="device (default: the only paired one)")
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--book", type=Path)
    _pass_arg(r)
    r.set_defaults(func=_rotate_owner)

    f = sub.add_parser("factory-reset", help="device: destroy identity, pairing and every clip key (irreversible)",
                       description="Destroys the device key, the pinned owner, the signed configuration and every "
                       "clip's sealed-key header. Stop the service first (systemctl stop doorkeep).")
    f.add_argument("--yes-destroy-everything", action="store_true", required=True,
                   help="required: confirms that all clips become unreadable forever")
    f.add_argument("--wipe-audit", action="store_true", help="shred the audit log too (default: archive it)")
    _state_args(f)
    f.set_defaults(func=_factory_reset)

    g = sub.add_parser("forget-device", help="hub: remove an old device identity from the broker and Home Assistant",
                       description="Clears every retained message a device identity left on the broker (its Home "
                       "Assistant discovery config, availability, presence, stats), so a phantom device left by a "
                       "factory reset or a demo run disappears from Home Assistant. `factory-reset` does this itself "
                       "when the broker is reachable.")
    g.add_argument("device_id", metavar="DEVICE_ID", help="the old device id (dk-…)")
    g.add_argument("--broker", required=True, metavar="HOST[:PORT]")
    g.add_argument("--discovery-prefix", default="homeassistant", help="Home Assistant discovery prefix")
    g.add_argument("--timeout", type=float, default=10.0, metavar="S")
    g.set_defaults(func=_forget_device)


# ------------------------------------------------------------------------------------------------ helpers
def _book(args: argparse.Namespace) -> Any:
    from doorkeep.provisioning.owner_state import DeviceBook

    return DeviceBook.load(args.book or DeviceBook.default_path())


def _owner_keys(path: Path | None, args: argparse.Namespace) -> Any:
    if path is None:
        raise InvalidArgument("--key OWNER_SECRET_KEY is required on the owner side (make one: doorkeep owner keygen)")
    return _secret_keys(args, "owner", path)


class _DeviceAudit:
    """The audit log of a device-side command, holding the state-directory lock until closed."""

    def __init__(self, log: Any, lock: Any) -> None:
        self.log, self.lock = log, lock

    def append(self, kind: str, /, **fields: Any) -> object:
        return self.log.append(kind, **fields)

    def close(self) -> None:
        self.log.close()
        self.lock.release()


def _device(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(config, audit log, DeviceProvisioning) for device-side commands; refused while the service runs."""
    from doorkeep.device.vault.audit import AuditLog
    from doorkeep.device.vault.vault import AUDIT_FILE
    from doorkeep.provisioning.device_state import DeviceProvisioning
    from doorkeep.provisioning.identity import first_boot
    from doorkeep.provisioning.state_lock import StateLock

    cfg = _config(args)
    lock = StateLock(cfg.state_dir, holder=f"doorkeep {args.command}").acquire()
    try:
        ident = first_boot(cfg.state_dir)
        audit = _DeviceAudit(AuditLog.open(cfg.state_dir / AUDIT_FILE, ident), lock)
    except BaseException:
        lock.release()
        raise
    return cfg, audit, DeviceProvisioning(cfg.state_dir, identity=ident, audit=audit)


def _mqtt(cfg: Any, broker: str | None, client_id: str, *, timeout: float = 15.0) -> Any:
    from doorkeep.device.config import MqttSection
    from doorkeep.device.errors import PublishError
    from doorkeep.device.publish.mqtt import MqttClient, PublishTimeout
    from doorkeep.tools.cmd_hub import parse_broker

    settings = cfg.mqtt if cfg is not None else MqttSection()
    if broker:
        try:
            host, port = parse_broker(broker)
        except argparse.ArgumentTypeError as exc:
            raise PublishError(str(exc)) from None
        settings = dataclasses.replace(settings, host=host, port=port)
    client = MqttClient(settings, client_id=client_id)
    client.start()
    try:
        client.wait_connected(timeout)
    except PublishTimeout:
        client.stop()
        raise PublishError(f"cannot reach the MQTT broker {settings.host}:{settings.port} within {timeout:g} s "
                           "(is it running and reachable? --broker HOST[:PORT])") from None
    return client


def _ask(code: str, *, where: str, yes: bool) -> bool:
    print(f"\n    pairing code:  {code[:3]} {code[3:]}\n")
    if yes:
        return True
    answer = input(f"Does {where} show the same code? [y/N] ").strip().lower()
    return answer in ("y", "yes")


# ------------------------------------------------------------------------------------------------ pair
def _pair(args: argparse.Namespace) -> int:
    return _pair_device(args) if args.device else _pair_owner(args)


def _pair_device(args: argparse.Namespace) -> int:
    from doorkeep.provisioning.boot_pairing import consume_pair_file
    from doorkeep.provisioning.pairing import DevicePairing, PairingWindow
    from doorkeep.provisioning.pairing_mqtt import serve_pairing

    cfg, audit, prov = _device(args)
    ident = prov.identity
    try:
        if args.boot_file:
            result = consume_pair_file(args.boot_file, prov)
            print(f"paired to owner; code {result.code} (compare with the owner's tool)")
            receipt = prov.state_dir / "pair-receipt.json"
            print(f"receipt for the owner (doorkeep pair --owner --receipt FILE): {receipt}")
            return 0
        print(f"device {ident.device_id}  fingerprint {ident.fingerprint}", flush=True)
        client = _mqtt(cfg, args.broker, f"{ident.device_id}-pair")
        try:
            # "open" only once the broker holds our subscription: before that no owner could reach us
            paired = serve_pairing(client, DevicePairing(prov, window=PairingWindow(args.window)),
                                   confirm=lambda code: _ask(code, where="the owner's screen", yes=args.yes),
                                   on_open=lambda left: print(
                                       f"pairing window open for {left:.0f} s on {client.settings.host}:"
                                       f"{client.settings.port} — now run `doorkeep pair --owner` on the owner's "
                                       "machine", flush=True))
        finally:
            client.stop()
        print(f"paired: owner key {paired.owner.sign[:8].hex()} pinned")
        return 0
    finally:
        audit.close()


def _pair_owner(args: argparse.Namespace) -> int:
    from doorkeep.provisioning.boot_pairing import make_pair_file, verify_receipt
    from doorkeep.provisioning.files import write_atomic
    from doorkeep.provisioning.pairing_mqtt import MqttChannel, wait_for_announcement
    from doorkeep.provisioning.pairing_owner import OwnerPairing, run_owner

    keys = _owner_keys(args.key, args)
    book = _book(args)
    auth = _authorization(args, keys) if args.authorize_with else None
    if args.receipt:
        info = verify_receipt(args.receipt.read_bytes(), owner=keys.public, nonces=book.pending)
        book.pending.remove(info.nonce)
        book.pin(info.device_id, info.device_key, counter=info.counter)
        print(f"pinned device {info.device_id}, fingerprint {info.fingerprint} (compare with the device's log)")
        return 0
    if args.boot_file:
        pf = make_pair_file(keys, device_id=args.device_id, authorization=auth)
        write_atomic(args.boot_file, pf.data, mode=0o600)  # its nonce is a secret until the device consumed it
        book.pending.append(pf.nonce)
        book.save()
        print(f"wrote {args.boot_file}. After boot the device log shows:  PAIRING CODE {pf.code}")
        print("Then pin the device: doorkeep pair --owner --key KEY --receipt pair-receipt.json")
        return 0
    if not args.broker:
        raise InvalidArgument("--broker HOST[:PORT] is required (or --boot-file / --receipt)")
    client = _mqtt(None, args.broker, f"doorkeep-owner-{uuid.uuid4().hex[:8]}")
    try:
        ann = wait_for_announcement(client, device_id=args.device_id, timeout=args.timeout)
        print(f"found device {ann.device_id}, fingerprint {ann.fingerprint}")
        paired = run_owner(OwnerPairing(keys, device_id=ann.device_id, authorization=auth),
                           MqttChannel.owner(client, ann.device_id),
                           confirm=lambda code: _ask(code, where="the device", yes=args.yes), timeout=args.timeout)
    finally:
        client.stop()
    book.pin(paired.device_id, paired.device_key, counter=paired.counter)
    print(f"paired: device {paired.device_id} (fingerprint {paired.fingerprint}) pinned in {book.path}")
    return 0


def _authorization(args: argparse.Namespace, new_keys: Any) -> Any:
    """A re-pair hand-over signed by the device's current owner (OLD_KEY) for ``new_keys``."""
    from doorkeep.provisioning.documents import KIND_REPAIR
    from doorkeep.provisioning.rotation import sign_rotation

    old = _owner_keys(args.authorize_with, args)
    book = _book(args)
    dev = book.get(args.device_id) if args.device_id else book.only()
    return sign_rotation(old, new_keys.public, device_id=dev.device_id, counter=book.next_counter(dev.device_id),
                         kind=KIND_REPAIR)


# ------------------------------------------------------------------------------------------------ config
def _print_changes(where: str, changes: list[Any]) -> None:
    from doorkeep.provisioning.config_diff import report

    lines = report(changes)
    print(f"{where}: {'it changes nothing' if not lines else 'this document'}")
    for line in lines:
        print(f"  {line}")


def _config_sign(args: argparse.Namespace) -> int:
    from doorkeep.provisioning.config_diff import check_mask_removal
    from doorkeep.provisioning.files import write_atomic
    from doorkeep.provisioning.signed_config import (
        load_local_toml,
        owner_side_changes,
        remember_signed,
        sign_config,
    )

    book = _book(args)
    dev = book.get(args.device_id) if args.device_id else book.only()
    if not args.toml.is_file():
        raise InvalidArgument(f"{args.toml}: no such file")
    table = load_local_toml(args.toml)
    # The owner sees what the document does (a bad value, a removed mask) before a key is unlocked or a counter spent.
    where, changes = owner_side_changes(book.path, dev.device_id, dev.counter + 1, table)
    _print_changes(where, changes)
    check_mask_removal(changes, allowed=args.allow_mask_removal)
    keys = _owner_keys(args.key, args)
    doc = sign_config(table, device_id=dev.device_id, counter=book.next_counter(dev.device_id), keys=keys,
                      allow_mask_removal=args.allow_mask_removal)
    write_atomic(args.out, doc.to_bytes(), mode=0o600)
    remember_signed(book.path, doc)
    print(f"signed configuration #{doc.counter} for {dev.device_id} -> {args.out} (the device's whole policy: what "
          "it does not set is the default)")
    print(f"apply it on the device: doorkeep config apply {args.out.name}")
    return 0


def _config_apply(args: argparse.Namespace) -> int:
    from doorkeep.provisioning.documents import KIND_ROTATE, OwnerDocument
    from doorkeep.provisioning.rotation import apply_rotation
    from doorkeep.provisioning.signed_config import SignedConfigStore, load_local_toml

    data = args.document.read_bytes()
    _cfg, audit, prov = _device(args)
    try:
        kind = _peek_kind(data, OwnerDocument)
        if kind == KIND_ROTATE:
            new = apply_rotation(prov, data)
            print(f"owner key rotated; now pinned: {new.sign[:8].hex()} (restart the service: new clips seal to it)")
            return 0
        local = load_local_toml(args.config) if args.config else {}
        applied = SignedConfigStore(prov, local=local).apply(data)
        _print_changes(f"applied configuration #{applied.counter}", list(applied.changes))
        print("restart the service to use it: systemctl restart doorkeep")
        return 0
    finally:
        audit.close()


def _config_push(args: argparse.Namespace) -> int:
    from doorkeep.provisioning.documents import KIND_CONFIG, OwnerDocument
    from doorkeep.provisioning.errors import ProvisionRefused
    from doorkeep.provisioning.remote import push_document
    from doorkeep.provisioning.signed_config import owner_side_changes

    data = args.document.read_bytes()
    book = _book(args)
    doc = OwnerDocument.from_bytes(data)
    dev = book.get(args.device_id or doc.device_id)
    if doc.kind == KIND_CONFIG and isinstance(doc.body.get("config"), dict):
        try:  # a preview only: the device is the judge (a bad document is refused and audited there)
            _print_changes(*owner_side_changes(book.path, dev.device_id, doc.counter, doc.body["config"]))
        except ProvisionRefused:
            pass
    client = _mqtt(None, args.broker, f"doorkeep-owner-{uuid.uuid4().hex[:8]}")
    try:
        verdict = push_document(client, device_id=dev.device_id, device_key=dev.key, data=data, timeout=args.timeout)
    finally:
        client.stop()
    if not verdict.ok:
        print(f"doorkeep: {dev.device_id} refused the document: {printable(verdict.reason)}: "
              f"{printable(verdict.detail)}", file=sys.stderr)
        return 1
    print(f"{dev.device_id} applied document #{verdict.counter}")
    return 0


def _peek_kind(data: bytes, doc_cls: Any) -> str | None:
    from doorkeep.provisioning.errors import ProvisionRefused

    try:
        return str(doc_cls.from_bytes(data).kind)
    except ProvisionRefused:
        return None  # the config path refuses (and audits) it with the reason


def _rotate_owner(args: argparse.Namespace) -> int:
    from doorkeep.device.vault.keys import PublicKeys
    from doorkeep.provisioning.files import write_atomic
    from doorkeep.provisioning.rotation import sign_rotation

    old = _owner_keys(args.key, args)
    new = PublicKeys.load(args.new_public, role="owner")
    book = _book(args)
    dev = book.get(args.device_id) if args.device_id else book.only()
    doc = sign_rotation(old, new, device_id=dev.device_id, counter=book.next_counter(dev.device_id))
    write_atomic(args.out, doc.to_bytes(), mode=0o600)
    print(f"owner rotation #{doc.counter} for {dev.device_id} -> {args.out}; apply with: doorkeep config apply")
    return 0


# ------------------------------------------------------------------------------------------------ reset
def _factory_reset(args: argparse.Namespace) -> int:
    from doorkeep.device.publish.retained_ledger import LEDGER_FILE, RetainedLedger
    from doorkeep.provisioning.identity import has_identity
    from doorkeep.provisioning.reset import factory_reset

    announced = has_identity(_config(args).state_dir)  # an identity made just now was never on the broker
    cfg, audit, prov = _device(args)
    # What the device left on the broker under earlier settings too (kept: the next identity clears what is left)
    left = RetainedLedger(cfg.state_dir / LEDGER_FILE).topics() or []
    try:
        effective = _effective_config(args, cfg, prov)  # before the reset destroys the signed configuration
        named = [c.vault.dir for c in (cfg, effective) if c.vault.dir]
        report = factory_reset(cfg.state_dir, identity=prov.identity, audit=audit, wipe_audit=args.wipe_audit,
                               clip_dirs=[Path(d).expanduser() for d in named])
    finally:
        audit.close()
    where = f" in {', '.join(report.vault_dirs)}" if report.vault_dirs else ""
    print(f"factory reset of {report.device_id}: {report.clips_shredded} clips destroyed{where}; "
          f"removed {', '.join(report.files_shredded)}")
    if report.audit_kept_as:
        print(f"audit log archived as {cfg.state_dir / report.audit_kept_as}")
    if announced or left:
        _forget_on_broker(effective.mqtt, report.device_id, also=left)
    print("the next start creates a new identity; pair it again", file=sys.stderr)
    return 0


def _effective_config(args: argparse.Namespace, cfg: Any, prov: Any) -> Any:
    """The configuration the service ran with: the local TOML plus the owner-signed document applied last (which
    may move the vault and name the broker). The local one alone if the signed one does not verify."""
    from doorkeep.device.errors import DoorkeepError
    from doorkeep.provisioning.signed_config import SignedConfigStore, effective_config, load_local_toml

    local = load_local_toml(args.config) if args.config else {}
    try:
        table = SignedConfigStore(prov, local=local).load_table()
        return cfg if table is None else effective_config(local, table, paired=False).replace(device=cfg.device)
    except DoorkeepError as exc:
        print(f"doorkeep: the stored signed configuration is unusable ({printable(exc)}); using the local one",
              file=sys.stderr)
        return cfg


def _forget_on_broker(settings: Any, device_id: str, *, also: list[str]) -> None:
    """Clear the old identity's retained messages (its Home Assistant device) if the broker answers."""
    from doorkeep.device.errors import PublishError
    from doorkeep.device.publish.discovery import forget_on_broker

    try:
        cleared = forget_on_broker(settings, device_id, timeout=5.0, also=also)
    except PublishError as exc:
        print(f"doorkeep: broker {settings.host}:{settings.port} not reachable ({printable(exc)}): the old device "
              f"stays in Home Assistant until you run `doorkeep forget-device {device_id} --broker HOST` "
              "(docs/mqtt.md)", file=sys.stderr)
        return
    print(f"removed {device_id} from the broker {settings.host}:{settings.port}: cleared its {len(cleared)} retained "
          "topics (its Home Assistant device, if it had one)")


def _forget_device(args: argparse.Namespace) -> int:
    from doorkeep.device.config import MqttSection
    from doorkeep.device.publish.discovery import forget_on_broker
    from doorkeep.device.publish.topics import check_segment

    device_id = check_segment(args.device_id, "device id")
    host, _, port = args.broker.partition(":")
    settings = MqttSection(host=host, port=int(port or 1883), discovery_prefix=args.discovery_prefix)
    cleared = forget_on_broker(settings, device_id, timeout=args.timeout)
    print(f"removed {device_id} from {host}: cleared {', '.join(cleared)}")
    return 0
