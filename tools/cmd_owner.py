"""Owner and recipient commands over MQTT (the owner channel), added to ``doorkeep owner`` / ``doorkeep recipient``.

Owner (tools/owner_link.py): ``owner clips``, ``owner fetch CLIP``, ``owner snapshot [CLIP]``, ``owner audit``,
``owner send-grant GRANT``, ``owner decline REQUEST_ID``. Recipient: ``recipient receive`` (assemble a bundle
the device exports over MQTT into a file that ``doorkeep decrypt`` opens).

The device is named by ``--device-key`` (its public key) or ``--device-id`` (looked up in the owner's device book,
``~/.config/doorkeep/devices.json``, filled by pairing); with neither, the only paired device.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from doorkeep.device.safe_text import printable
from doorkeep.tools.cmd_hub import parse_broker
from doorkeep.tools.cmd_vault import _iso, _pass_arg, _read_input, _secret_keys

#: Exit status when the device refused a command (the reason is printed).
EXIT_REFUSED = 3


def _connection_args(p: argparse.ArgumentParser) -> None:
    """Broker TLS/auth options (``--key`` is the owner's key here, so the client key is ``--cert-key``)."""
    p.add_argument("--ca", metavar="PEM", default="", help="CA certificate that signed the broker's (enables TLS)")
    p.add_argument("--tls", action="store_true", help="use TLS with the system CA store")
    p.add_argument("--cert", metavar="PEM", default="", help="client certificate (mutual TLS)")
    p.add_argument("--cert-key", metavar="PEM", default="", help="client certificate's private key (mutual TLS)")
    p.add_argument("--username", default="", help="MQTT username")
    p.add_argument("--password-file", metavar="FILE", default="", help="file holding the MQTT password")
    p.add_argument("--mqtt5", action="store_true", help="use MQTT 5 (default 3.1.1)")


def _settings(args: argparse.Namespace) -> Any:
    from doorkeep.device.config import MqttSection

    host, port = args.broker
    return MqttSection(host=host, port=port, tls=args.tls, ca=args.ca, cert=args.cert, key=args.cert_key,
                       username=args.username, password_file=args.password_file,
                       protocol="5" if args.mqtt5 else "3.1.1", discovery=False)


def _link_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", required=True, type=parse_broker, metavar="HOST[:PORT]", help="the owner's broker")
    p.add_argument("--key", required=True, type=Path, help="owner secret key file")
    p.add_argument("--device-key", metavar="KEY", help="device public key (64 hex chars, base64 or a file)")
    p.add_argument("--device-id", help="device id from your device book (default: the only paired device)")
    p.add_argument("--book", type=Path, help="paired-device file (default ~/.config/doorkeep/devices.json)")
    p.add_argument("--timeout", type=float, default=15.0, metavar="S", help="wait this long for each answer")
    _connection_args(p)
    _pass_arg(p)


def register_owner(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = actions.add_parser("clips", help="list the device's clips over MQTT (a device-signed listing)")
    _link_args(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_clips)

    p = actions.add_parser("fetch", help="fetch a clip over MQTT as stored (encrypted), resumable; --mp4 to view")
    p.add_argument("clip")
    p.add_argument("--out", type=Path, help="encrypted clip file to write (default CLIP.clip); a rerun resumes")
    p.add_argument("--mp4", type=Path, help="also decrypt it here with the owner key, as an MP4")
    _link_args(p)
    p.set_defaults(func=_fetch)

    p = actions.add_parser("snapshot", help="a clip's thumbnail, or the live (privacy-masked) view, as JPEG")
    p.add_argument("clip", nargs="?", help="clip id (default: the live view)")
    p.add_argument("--out", type=Path, required=True, help="JPEG file to write")
    _link_args(p)
    p.set_defaults(func=_snapshot)

    p = actions.add_parser("audit", help="fetch the device's audit records over MQTT and check them")
    p.add_argument("--from", dest="start", type=int, default=0, metavar="N", help="first record (default 0)")
    p.add_argument("--json", action="store_true")
    _link_args(p)
    p.set_defaults(func=_audit)

    p = actions.add_parser("send-grant", help="send a signed grant; the device exports to the recipient over MQTT")
    p.add_argument("grant", type=Path)
    _link_args(p)
    p.set_defaults(func=_send_grant)

    p = actions.add_parser("decline", help="decline a footage request (audited on the device)")
    p.add_argument("request_id")
    p.add_argument("--reason", default="", help="why (kept in the device's audit log, at most 200 characters)")
    _link_args(p)
    p.set_defaults(func=_decline)


def register_recipient(actions: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = actions.add_parser("receive", help="receive a bundle the device exports over MQTT into a file")
    p.add_argument("--broker", required=True, type=parse_broker, metavar="HOST[:PORT]")
    p.add_argument("--pub", required=True, type=Path, help="your recipient PUBLIC key file (names your topic)")
    p.add_argument("--device-id", required=True, help="the device that exports")
    p.add_argument("--out", required=True, type=Path, help="bundle file to write (then: doorkeep decrypt)")
    p.add_argument("--seconds", type=float, default=600.0, metavar="S", help="give up after S seconds")
    _connection_args(p)
    p.set_defaults(func=_receive)


# ------------------------------------------------------------------------------------------------ helpers

def _device_key(args: argparse.Namespace) -> bytes:
    if args.device_key:
        from doorkeep.device.errors import InvalidArgument
        from doorkeep.tools.hub import parse_verify_key

        try:
            return parse_verify_key(args.device_key)
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
    from doorkeep.provisioning.owner_state import DeviceBook

    book = DeviceBook.load(args.book or DeviceBook.default_path())
    return (book.get(args.device_id) if args.device_id else book.only()).key


def _link(args: argparse.Namespace) -> Any:
    from doorkeep.tools.owner_link import OwnerLink

    owner = _secret_keys(args, "owner")
    link = OwnerLink(_settings(args), owner=owner, device_key=_device_key(args), timeout=args.timeout)
    link.start()
    return link


def _run(args: argparse.Namespace, fn: Any) -> int:
    from doorkeep.device.errors import CommandRefused

    link = _link(args)
    try:
        return int(fn(link) or 0)
    except CommandRefused as exc:
        print(f"doorkeep: {link.device_id} refused: {printable(exc.reason)}: {printable(exc.detail)}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        link.close()


# ------------------------------------------------------------------------------------------------ commands

def _clips(args: argparse.Namespace) -> int:
    def go(link: Any) -> None:
        clips = link.list_clips()
        if args.json:
            print(json.dumps([c.__dict__ for c in clips], indent=1))
            return
        for c in clips:
            state = "complete" if c.complete else "recovered"
            print(f"{c.clip_id}  {_iso(c.t_start)} .. {_iso(c.t_end)}  {c.size:>10} B  {state:<9}  "
                  f"{'thumbnail' if c.snapshot else '-':<9}  events {','.join(c.event_ids)}")
        print(f"{len(clips)} clip(s) on {link.device_id}", file=sys.stderr)

    return _run(args, go)


def _fetch(args: argparse.Namespace) -> int:
    def go(link: Any) -> None:
        out = args.out or Path(f"{args.clip}.clip")

        def progress(done: int, total: int) -> None:
            if sys.stderr.isatty():
                print(f"\r{args.clip}: {done * 100 // max(total, 1):3d}% of {total} bytes", end="", file=sys.stderr)

        m = link.fetch_clip(args.clip, out, progress=progress)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(f"{out}: {m.size} bytes, encrypted as stored; matches the device-signed manifest ({out}.manifest)")
        if args.mp4:
            from doorkeep.device.vault.clips import (
                decrypt_clip,
                open_clip_key,
                parse_header,
            )
            from doorkeep.tools.vault_mp4 import write_mp4

            data = out.read_bytes()
            header, packets = decrypt_clip(data, open_clip_key(parse_header(data), link.owner),
                                           require_final=m.complete)
            write_mp4(packets, args.mp4, codec=header.codec)
            print(f"{args.mp4}: {len(packets)} packets, decrypted with the owner key")

    return _run(args, go)


def _snapshot(args: argparse.Namespace) -> int:
    def go(link: Any) -> None:
        snap = link.fetch_snapshot(args.clip) if args.clip else link.live_snapshot()
        from doorkeep.device.vault.keys import write_atomic

        write_atomic(args.out, snap.jpeg, mode=0o600)
        what = f"clip {args.clip}" if args.clip else "the live view"
        print(f"{args.out}: {snap.width}x{snap.height} JPEG of {what}, taken {_iso(snap.t)}")

    return _run(args, go)


def _audit(args: argparse.Namespace) -> int:
    def go(link: Any) -> None:
        recs = link.fetch_audit(args.start)
        for r in recs:
            if args.json:
                print(json.dumps({"i": r.index, "t": r.t, "kind": r.kind, "f": r.fields, "hash": r.hash}))
            else:
                print(f"{r.index:>6}  {_iso(r.t)}  {r.kind:<20} {json.dumps(r.fields, ensure_ascii=True)[:200]}")
        head = recs[-1].hash if recs else "-"
        print(f"{len(recs)} record(s) from {args.start}: chain and signatures verified; head {head}",
              file=sys.stderr)

    return _run(args, go)


def _send_grant(args: argparse.Namespace) -> int:
    grant = _read_input(args.grant, "grant")  # before the passphrase prompt and the connection

    def go(link: Any) -> int:
        v = link.send_grant(grant)
        if not v.ok:
            print(f"doorkeep: {link.device_id} refused the grant: {printable(v.reason)}: {printable(v.detail)}",
                  file=sys.stderr)
            return EXIT_REFUSED
        print(f"grant {v.result.get('grant_id')}: {v.result.get('bytes')} bytes exported in "
              f"{v.result.get('chunks')} chunk(s) to {v.result.get('topic')}")
        return 0

    return _run(args, go)


def _decline(args: argparse.Namespace) -> int:
    def go(link: Any) -> None:
        link.decline_request(args.request_id, args.reason)
        print(f"request {args.request_id} declined; recorded in {link.device_id}'s audit log")

    return _run(args, go)


def _receive(args: argparse.Namespace) -> int:
    from doorkeep.device.vault.keys import PublicKeys
    from doorkeep.tools.bundle_receiver import receive_bundle

    pub = PublicKeys.load(args.pub, role="recipient")
    n = receive_bundle(_settings(args), device_id=args.device_id, recipient=pub,
                       out=args.out, seconds=args.seconds, err=sys.stderr)
    print(f"{args.out}: bundle of {n} bytes received; open it with doorkeep decrypt {args.out} --key …")
    return 0
