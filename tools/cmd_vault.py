"""Vault commands for every role.

Owner: ``owner keygen``, ``owner pin``, ``clips``, ``view``, ``grant``. Requester/recipient: ``recipient keygen``,
``request``, ``decrypt``. Device: ``export`` (accept a grant, write the bundle), ``audit verify``.
Passphrases come from ``--passphrase-file``, else ``$DOORKEEP_PASSPHRASE``, else a prompt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from doorkeep.device.errors import InvalidArgument
from doorkeep.device.safe_text import printable

PASS_ENV = "DOORKEEP_PASSPHRASE"
#: What an owner does when `doorkeep export` finds the service running (docs/security.md, "Releases").
SERVICE_EXPORT_HINT = ("stop it first (sudo systemctl stop doorkeep), export, then start it again "
                       "(sudo systemctl start doorkeep)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    actions = {}
    for role in ("owner", "recipient"):
        p = sub.add_parser(role, help=f"{role} keys")
        rs = actions[role] = p.add_subparsers(dest=f"{role}_cmd", metavar="ACTION", required=True)
        k = rs.add_parser("keygen",
                          help=f"make the {role}'s signing + encryption keys (secret part passphrase-encrypted)")
        k.add_argument("--out", required=True, type=Path, help="secret key file to write")
        k.add_argument("--pub", type=Path, help="public key file (default: OUT.pub)")
        k.add_argument("--kdf", choices=("moderate", "interactive", "min"), default="moderate",
                       help="argon2id cost (min: tests only)")
        _pass_arg(k)
        k.set_defaults(func=_keygen, role=role)
    trust = actions["recipient"].add_parser(
        "trust", help="pin an owner's public key you obtained out of band: bundles signed by it then verify",
        description="Compare the key's fingerprint with the owner (phone, in person) before you trust it. "
        "doorkeep decrypt then reports bundles granted by this owner as VERIFIED without --owner.")
    trust.add_argument("pub", type=Path, help="the owner's public key file (owner.key.pub)")
    trust.set_defaults(func=_trust)
    from doorkeep.tools.cmd_owner import register_owner, register_recipient

    register_owner(actions["owner"])
    register_recipient(actions["recipient"])
    pin = actions["owner"].add_parser(
        "pin", help="pin an owner public key on this device (pairing does this for you)")
    pin.add_argument("pub", type=Path)
    _state_args(pin)
    pin.set_defaults(func=_pin)

    p = sub.add_parser("clips", help="owner: list clips from their manifests")
    _state_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_clips)

    p = sub.add_parser("view", help="owner: decrypt one clip locally to an MP4")
    p.add_argument("clip")
    p.add_argument("--key", required=True, type=Path, help="owner secret key file")
    p.add_argument("--out", type=Path, help="MP4 to write (default: CLIP.mp4)")
    _state_args(p)
    _pass_arg(p)
    p.set_defaults(func=_view)

    p = sub.add_parser("grant", help="owner: sign a release of clips to one recipient")
    p.add_argument("--key", required=True, type=Path, help="owner secret key file")
    p.add_argument("--recipient", required=True, type=Path, help="recipient public key file")
    p.add_argument("--recipient-name", required=True)
    p.add_argument("--purpose", required=True)
    p.add_argument("--requester", required=True)
    p.add_argument("--request-id", default="", help="the request this answers (from the hub notification)")
    p.add_argument("--clip", action="append", default=[], help="clip id (repeatable)")
    p.add_argument("--from", dest="t_from", help="window start (epoch seconds or ISO 8601)")
    p.add_argument("--to", dest="t_to", help="window end (epoch seconds or ISO 8601)")
    p.add_argument("--days", type=float, default=7.0, help="validity (default 7, at most 30)")
    p.add_argument("--out", required=True, type=Path)
    _state_args(p)
    _pass_arg(p)
    p.set_defaults(func=_grant)

    p = sub.add_parser("request", help="requester: sign a footage request for the owner")
    p.add_argument("--key", required=True, type=Path, help="your (recipient) secret key file")
    p.add_argument("--requester", required=True)
    p.add_argument("--incident", required=True)
    p.add_argument("--purpose", required=True)
    p.add_argument("--from", dest="t_from", required=True)
    p.add_argument("--to", dest="t_to", required=True)
    p.add_argument("--out", type=Path, help="write the signed request to this file")
    p.add_argument("--send", metavar="HOST[:PORT]", help="publish it to the device's request inbox on this broker")
    p.add_argument("--device", metavar="DEVICE_ID", help="the device to ask (with --send)")
    p.add_argument("--ack-timeout", type=float, default=10.0, metavar="S",
                   help="with --send: how long to wait for the device's acknowledgement (default 10 s)")
    _pass_arg(p)
    p.set_defaults(func=_request)

    p = sub.add_parser("export", help="device: accept an owner grant and write the export bundle")
    p.add_argument("grant", type=Path)
    p.add_argument("--out", required=True, type=Path)
    _state_args(p)
    p.set_defaults(func=_export)

    p = sub.add_parser("decrypt", help="recipient: verify a bundle and write playable MP4s")
    p.add_argument("bundle", type=Path)
    p.add_argument("--key", required=True, type=Path, help="recipient secret key file")
    p.add_argument("--owner", type=Path, help="the owner's public key, obtained from the owner (without it, or a key "
                   "pinned with `doorkeep recipient trust`, the bundle is NOT verified)")
    p.add_argument("--out", type=Path, default=Path("."), help="directory for the MP4 files")
    p.add_argument("--json", action="store_true", help="print the verification report as JSON")
    p.add_argument("--expect-device", metavar="DEVICE_ID", help="the device the footage must come from")
    p.add_argument("--allow-unverified-owner", action="store_true",
                   help="decrypt even without an owner key from outside the bundle (--owner, or `recipient trust`);"
                   " the report then says the owner and device are NOT verified")
    _pass_arg(p)
    p.set_defaults(func=_decrypt)

    p = sub.add_parser("audit", help="audit log")
    a = p.add_subparsers(dest="audit_cmd", metavar="ACTION", required=True)
    v = a.add_parser("verify", help="check chain, signatures and segments; name the first bad record and where "
                                    "the kept history starts")
    v.add_argument("--log", type=Path, help="audit log, its active segment (default: <state_dir>/audit.log; closed "
                                            "segments beside it as audit.log.<first record>)")
    v.add_argument("--device-key", help="device public key, hex (default: the local device identity)")
    v.add_argument("--expect-head", help="a head hash seen earlier (heartbeat): detects truncation/rollback")
    v.add_argument("--json", action="store_true")
    _state_args(v)
    v.set_defaults(func=_audit_verify)


# ------------------------------------------------------------------------------------------------ helpers

def _pass_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passphrase-file", type=Path,
                   help=f"file holding the passphrase (else ${PASS_ENV}, else a prompt)")


def _state_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="device config TOML (for state_dir and [vault])")
    p.add_argument("--state-dir", type=Path, help="device state directory (overrides the config)")


def _passphrase(args: argparse.Namespace, *, confirm: bool = False) -> bytes:
    if args.passphrase_file:
        return _read_input(Path(args.passphrase_file), "passphrase file").rstrip(b"\r\n")
    if os.environ.get(PASS_ENV):
        return os.environ[PASS_ENV].encode()
    if not sys.stdin.isatty():  # a script or a service: a prompt would read junk from stdin or fail at its end
        raise InvalidArgument(f"a passphrase is needed and there is no terminal to ask on: give --passphrase-file "
                              f"FILE or set ${PASS_ENV}")
    try:
        pw = getpass.getpass("passphrase: ")
        if confirm and getpass.getpass("again: ") != pw:
            raise InvalidArgument("passphrases differ")
    except EOFError:  # Ctrl-D at the prompt
        raise InvalidArgument("no passphrase given") from None
    return pw.encode()


def _secret_keys(args: argparse.Namespace, role: str, path: Path | None = None) -> Any:
    """The ``role`` secret keys from ``path`` (default ``--key``): a missing file or a key of another role is
    refused before the passphrase is asked for."""
    from doorkeep.device.vault.keys import SecretKeys

    return SecretKeys.load(path or args.key, lambda: _passphrase(args), role=role)


def _config(args: argparse.Namespace) -> Any:
    from doorkeep.device.config import Config, DeviceSection

    cfg = Config.from_toml(args.config) if args.config else Config()
    if args.state_dir:
        cfg = cfg.replace(device=DeviceSection(name=cfg.device.name, state_dir=args.state_dir))
    return cfg


def _store(args: argparse.Namespace) -> Any:
    from doorkeep.device.vault.store import ClipStore
    from doorkeep.device.vault.vault import VAULT_DIR

    cfg = _config(args)
    d = Path(cfg.vault.dir).expanduser() if cfg.vault.dir else cfg.state_dir / VAULT_DIR
    if not d.is_dir():
        raise InvalidArgument(f"no vault directory at {d}")
    return ClipStore(d)


def _read_input(path: Path, what: str) -> bytes:
    """The bytes of a file the user named, or one ``doorkeep:`` line saying why not (nothing else has happened)."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(f"{what} {path}: {exc.strerror or exc}") from None


def _time(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise InvalidArgument(f"not a time (epoch seconds or ISO 8601): {text!r}")
        return seconds
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"not a time (epoch seconds or ISO 8601): {text!r}") from None
    return t.timestamp() if t.tzinfo else t.astimezone().timestamp()


def _iso(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# ----------------------------------------------------------------------------------------------- commands

def _keygen(args: argparse.Namespace) -> int:
    from doorkeep.device.vault import keys as k

    limits = {"moderate": k.MODERATE, "interactive": k.INTERACTIVE, "min": k.MIN}[args.kdf]
    sk = k.SecretKeys.generate(args.role)
    sk.save(args.out, _passphrase(args, confirm=True), limits=limits)
    pub = args.pub or args.out.with_name(args.out.name + ".pub")
    k.write_atomic(pub, sk.public.to_bytes(), mode=0o644)
    print(f"{args.role} keys: secret {args.out}, public {pub} (signing key {sk.public.sign.hex()[:16]}…)")
    return 0


def _trust(args: argparse.Namespace) -> int:
    from doorkeep.device.vault.keys import PublicKeys
    from doorkeep.tools.trusted_owners import key_name, pin

    owner = PublicKeys.load(args.pub, role="owner")
    path = pin(owner)
    print(f"trusting owner {key_name(owner)} (signing key {owner.sign.hex()}): {path}")
    return 0


def _pin(args: argparse.Namespace) -> int:
    from doorkeep.device.vault.keys import PublicKeys, pin_owner_public

    path = pin_owner_public(_config(args).state_dir, PublicKeys.load(args.pub, role="owner"))
    print(f"owner key pinned at {path}")
    return 0


def _clips(args: argparse.Namespace) -> int:
    ms = _store(args).manifests()
    if args.json:
        print(json.dumps([m.to_json() for m in ms], indent=1))
        return 0
    for m in ms:
        state = "complete" if m.complete else "recovered"
        print(f"{m.clip_id}  {_iso(m.t_start)} .. {_iso(m.t_end)}  {m.size:>10} B  {len(m.chunks):>4} chunks  "
              f"{state}  events {','.join(m.event_ids)}")
    return 0


def _view(args: argparse.Namespace) -> int:
    from doorkeep.device.fileio import AtomicOutput
    from doorkeep.device.vault.clips import iter_clip, open_clip_key
    from doorkeep.tools.vault_mp4 import write_mp4_file

    store = _store(args)
    m = store.manifest(args.clip)  # a wrong clip id or output path is refused before the passphrase prompt
    out = args.out or Path(f"{args.clip}.mp4")
    AtomicOutput(out).discard()
    owner = _secret_keys(args, "owner")
    with open(store.clip_path(args.clip), "rb") as f:
        header, packets = iter_clip(f, os.fstat(f.fileno()).st_size, lambda h: open_clip_key(h, owner),
                                    require_final=m.complete)
        n = write_mp4_file(packets, out, codec=header.codec)
    print(f"{out}: {n} packets")
    return 0


def _grant(args: argparse.Namespace) -> int:
    from doorkeep.device.vault.clips import read_header
    from doorkeep.device.vault.grants import issue_grant
    from doorkeep.device.vault.keys import PublicKeys, write_atomic

    lifetime = _check_grant_terms(args)  # before the passphrase prompt: nothing the device would refuse is signed
    _output_file(args.out)
    store = _store(args)
    ms = store.manifests()
    chosen = set(args.clip)
    if args.t_from or args.t_to:
        lo = _time(args.t_from) if args.t_from else 0.0
        hi = _time(args.t_to) if args.t_to else float("inf")
        if lo > hi:
            raise InvalidArgument(f"--from {args.t_from} is later than --to {args.t_to}")
        chosen |= {m.clip_id for m in ms if m.t_start <= hi and (m.t_end if m.t_end is not None else m.t_start) >= lo}
    if not chosen:
        raise InvalidArgument("no clips selected (use --clip or --from/--to)")
    known = {m.clip_id: m for m in ms}
    missing = sorted(chosen - set(known))
    if missing:
        raise InvalidArgument(f"no such clip: {', '.join(missing)}")
    devices = {known[c].device_id for c in chosen}
    if len(devices) != 1:
        raise InvalidArgument(f"clips come from several devices: {sorted(devices)}")
    owner = _secret_keys(args, "owner")
    sealed = {}
    for c in chosen:
        with open(store.clip_path(c), "rb") as f:
            sealed[c] = read_header(f)[0].sealed_key
    grant = issue_grant(owner, device_id=devices.pop(), sealed_keys=sealed,
                        recipient=PublicKeys.load(args.recipient, role="recipient"),
                        recipient_name=args.recipient_name, purpose=args.purpose, requester=args.requester,
                        request_id=args.request_id, lifetime_s=lifetime)
    write_atomic(args.out, grant.to_bytes(), mode=0o600)
    print(f"grant {grant.grant_id}: {len(grant.clips)} clip(s) to {printable(args.recipient_name)}, "
          f"expires {_iso(grant.expires_at)}")
    return 0


def _check_grant_terms(args: argparse.Namespace) -> int:
    """The grant's validity in seconds, once the terms pass the device's own limits (device/vault/grants.py)."""
    from doorkeep.device.errors import FormatError, ReleaseError
    from doorkeep.device.vault.grants import MAX_LIFETIME_S, check_terms

    lifetime = round(args.days * 86400) if math.isfinite(args.days) else 0
    try:
        check_terms(recipient_name=args.recipient_name, purpose=args.purpose, requester=args.requester,
                    request_id=args.request_id, lifetime_s=lifetime)
    except ReleaseError:
        raise InvalidArgument(f"--days {args.days:g}: a grant is valid for more than 0 and at most "
                         f"{MAX_LIFETIME_S // 86400} days (the device refuses any other)") from None
    except FormatError as exc:
        raise InvalidArgument(f"{exc} (the device would refuse the grant; nothing was signed)") from None
    return lifetime


def _request(args: argparse.Namespace) -> int:
    from doorkeep.device.vault.keys import write_atomic
    from doorkeep.device.vault.requests import make_request

    if not args.out and not args.send:
        raise InvalidArgument("say where the request goes: --out FILE and/or --send HOST[:PORT] --device DEVICE_ID")
    if args.send:
        _check_send(args)
    window = (_time(args.t_from), _time(args.t_to))
    if args.out:
        _output_file(args.out)
    if window[0] > window[1]:
        raise InvalidArgument(f"--from {args.t_from} is later than --to {args.t_to}")
    keys = _secret_keys(args, "recipient")
    r = make_request(keys, requester=args.requester, incident=args.incident, purpose=args.purpose, window=window)
    if args.out:
        write_atomic(args.out, r.to_bytes(), mode=0o644)
        print(f"request {r.request_id} written to {args.out}")
    if args.send:
        if _send_request(r, args.send, args.device, ack_timeout=args.ack_timeout):
            print(f"request {r.request_id} acknowledged by {args.device}: forwarded to its owner, who alone can "
                  "answer, with a signed grant")
        else:
            print(f"request {r.request_id} published; the device has not acknowledged it within "
                  f"{args.ack_timeout:g} s (it may be offline, or refused it: too old, a repeat, or too many "
                  "requests). Try again later.")
            return EXIT_UNACKNOWLEDGED
    return 0


def _check_send(args: argparse.Namespace) -> None:
    """``request --send``'s arguments, before the passphrase is asked for."""
    from doorkeep.device.errors import TopicError
    from doorkeep.device.publish.topics import check_segment
    from doorkeep.tools.cmd_hub import parse_broker

    if not args.device:
        raise InvalidArgument("--send needs --device DEVICE_ID")
    try:
        check_segment(args.device, "device id")
        parse_broker(args.send)
    except (TopicError, argparse.ArgumentTypeError) as exc:
        raise InvalidArgument(str(exc).replace("--broker", "--send")) from None
    if not (math.isfinite(args.ack_timeout) and args.ack_timeout > 0):
        raise InvalidArgument(f"--ack-timeout {args.ack_timeout:g}: give a number of seconds above 0")


#: ``doorkeep request --send``: published, but no acknowledgement arrived.
EXIT_UNACKNOWLEDGED = 4


def _send_request(req: Any, broker: str, device_id: str, *, ack_timeout: float) -> bool:
    """Publish ``req`` to the device's inbox and wait for its signed acknowledgement; True when it came."""
    import queue

    from doorkeep.device.config import MqttSection
    from doorkeep.device.errors import FormatError
    from doorkeep.device.publish.mqtt import MqttClient, PublishTimeout
    from doorkeep.device.publish.topics import Topics
    from doorkeep.device.vault.requests import parse_ack
    from doorkeep.tools.cmd_hub import parse_broker

    host, port = parse_broker(broker)
    topics = Topics(device_id)
    acks: queue.Queue[bool] = queue.Queue()

    def on_ack(_topic: str, payload: bytes) -> None:
        try:
            parse_ack(payload, device_id=device_id, request_id=req.request_id)
        except FormatError:
            return
        acks.put(True)

    client = MqttClient(MqttSection(host=host, port=port, discovery=False),
                        client_id="doorkeep-requester-" + os.urandom(4).hex())
    client.subscribe(topics.request_ack(req.key_id), on_ack, qos=1)
    client.start()
    try:
        try:
            client.wait_connected(10)
        except PublishTimeout as exc:
            raise PublishTimeout(f"request {req.request_id} not sent: {exc}") from None
        client.wait_subscribed(10)
        client.publish_raw(topics.request_in, req.to_bytes(), qos=1).wait(10)
        try:
            return acks.get(timeout=ack_timeout)
        except queue.Empty:
            return False
    finally:
        client.stop()


def _export(args: argparse.Namespace) -> int:
    from doorkeep.device.fileio import AtomicOutput
    from doorkeep.device.identity import KEY_FILE, DeviceIdentity
    from doorkeep.device.vault.vault import build_vault
    from doorkeep.provisioning.state_lock import StateBusy, StateLock

    cfg = _config(args)
    grant = _read_input(args.grant, "grant")
    # Arguments first: opening the vault writes to the audit log, and a wrong --state-dir would get a new identity.
    if not (cfg.state_dir / KEY_FILE).is_file():
        raise InvalidArgument(f"no device at {cfg.state_dir} (no {KEY_FILE}): --state-dir or --config names the "
                              "device's state directory")
    AtomicOutput(args.out).discard()  # a directory, a missing parent, a read-only directory: refused here
    # The audit chain and the used-grant set are shared with the service: one process at a time (docs/security.md).
    try:
        lock = StateLock(cfg.state_dir, holder="doorkeep export").acquire()
    except StateBusy as exc:
        raise StateBusy(f"{exc.detail.split(';')[0]}, which owns the audit log and the used-grant set; "
                        f"{SERVICE_EXPORT_HINT}") from None
    try:
        vault = build_vault(cfg, DeviceIdentity.load_or_create(cfg.state_dir))
        try:
            vault.export_to_file(grant, args.out)
        finally:
            vault.close()
    finally:
        lock.release()
    print(f"bundle written to {args.out}")
    return 0


def _decrypt(args: argparse.Namespace) -> int:
    from doorkeep.device.errors import ReleaseError
    from doorkeep.device.vault.keys import PublicKeys
    from doorkeep.tools.release_open import decrypt_bundle, print_report, verdict_line

    _input_file(args.bundle, "bundle")  # before the passphrase prompt
    if args.out.exists() and not args.out.is_dir():
        raise InvalidArgument(f"--out {args.out} is not a directory (MP4s are written into it, one per clip)")
    keys = _secret_keys(args, "recipient")
    owner = PublicKeys.load(args.owner, role="owner") if args.owner else None
    try:
        result = decrypt_bundle(args.bundle, keys, args.out, owner=owner, expect_device=args.expect_device,
                                allow_unverified_owner=args.allow_unverified_owner)
    except ReleaseError as exc:
        if args.json:
            print(json.dumps({"ok": False, "reason": exc.reason, "detail": str(exc), "owner_verified": False,
                              "device_verified": False}))
        else:
            print(f"doorkeep: bundle REFUSED: {printable(exc)}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.report, indent=1))
    elif not result.ok:
        print(f"doorkeep: {verdict_line(result.report)}: {result.report['detail']}; nothing was decrypted "
              "(--allow-unverified-owner to decrypt anyway)", file=sys.stderr)
    else:
        print_report(result.report, sys.stdout)
    return 0 if result.ok else 1


def _input_file(path: Path, what: str) -> None:
    """One ``doorkeep:`` line if ``path`` is not a readable file (checked before any prompt or work)."""
    if path.is_dir():
        raise InvalidArgument(f"{what} {path}: is a directory")
    if not path.is_file():
        raise InvalidArgument(f"{what} {path}: no such file")


def _output_file(path: Path) -> None:
    """One ``doorkeep:`` line if ``path`` cannot be a file to write (checked before any prompt or signature);
    missing parent directories are made when it is written."""
    if path.is_dir():
        raise InvalidArgument(f"{path} is a directory (name the file to write)")


def _audit_verify(args: argparse.Namespace) -> int:
    from doorkeep.device.identity import KEY_FILE, DeviceIdentity
    from doorkeep.device.vault.audit import verify
    from doorkeep.device.vault.vault import AUDIT_FILE

    cfg = _config(args)
    log = args.log or cfg.state_dir / AUDIT_FILE
    if args.device_key:
        from doorkeep.tools.hub import parse_verify_key

        key = parse_verify_key(args.device_key)  # the forms `identity show` and `events --device-key` take
    elif (cfg.state_dir / KEY_FILE).exists():
        key = DeviceIdentity.load_or_create(cfg.state_dir).public_bytes
    else:
        raise InvalidArgument("no --device-key and no local device identity")
    r = verify(log, key, expect_head=args.expect_head)
    if args.json:
        print(json.dumps(r.__dict__))
        return 0 if r.ok else 1
    where = (f"history starts at record {r.history_start}: older segments were dropped by retention (audited)"
             if r.history_start else "history complete from record 0")
    if r.ok:
        print(f"{log}: OK, {r.records} records in {r.segments} segment(s), head {r.head}; {where}")
    else:
        print(f"{log}: BAD at record {r.first_bad}: {r.reason} {r.detail}".rstrip())
    return 0 if r.ok else 1
