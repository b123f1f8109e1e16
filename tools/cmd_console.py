"""``doorkeep console``: the owner's local web app for one paired device (tools/console/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from doorkeep.tools.cmd_hub import parse_broker


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("console", help="owner: local web console (timeline, clips, requests, settings, audit)",
                       description="Serve the owner's web console for one paired device on this computer. Open the "
                       "printed URL and unlock with the owner key's passphrase; the key stays in memory only "
                       "while unlocked and is forgotten after --idle-lock minutes without use.")
    p.add_argument("--key", required=True, type=Path, help="owner secret key file (doorkeep owner keygen)")
    p.add_argument("--broker", required=True, type=parse_broker, metavar="HOST[:PORT]", help="the owner's MQTT broker")
    p.add_argument("--device-id", help="device (default: the only one in the device book)")
    p.add_argument("--book", type=Path, help="paired-device file (default ~/.config/doorkeep/devices.json)")
    p.add_argument("--name", default="doorbell", help="what to call the device on the pages")
    p.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                   help="listen address (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=8140, help="listen port (default 8140; 0: any free port)")
    p.add_argument("--idle-lock", type=float, default=10.0, metavar="MIN",
                   help="lock the owner key after this many minutes without use (default 10)")
    p.add_argument("--open", action="store_true", help="open the console in the default web browser")
    # Broker TLS/credentials as `doorkeep events` has them, except --key (here: the owner key) is --tls-key.
    p.add_argument("--ca", metavar="PEM", default="", help="CA certificate that signed the broker's (enables TLS)")
    p.add_argument("--tls", action="store_true", help="use TLS with the system CA store")
    p.add_argument("--cert", metavar="PEM", default="", help="client certificate (mutual TLS)")
    p.add_argument("--tls-key", metavar="PEM", default="", help="client private key for --cert")
    p.add_argument("--username", default="", help="MQTT username")
    p.add_argument("--password-file", metavar="FILE", default="", help="file holding the MQTT password")
    p.add_argument("--mqtt5", action="store_true", help="use MQTT 5 (default 3.1.1)")
    p.set_defaults(func=_console)


def _settings(args: argparse.Namespace, host: str, port: int):  # type: ignore[no-untyped-def]
    from doorkeep.device.config import MqttSection

    return MqttSection(host=host, port=port, tls=args.tls, ca=args.ca, cert=args.cert, key=args.tls_key,
                       username=args.username, password_file=args.password_file,
                       protocol="5" if args.mqtt5 else "3.1.1", discovery=False)


def _console(args: argparse.Namespace) -> int:
    from doorkeep.provisioning.owner_state import DeviceBook
    from doorkeep.tools.console.server import ConsoleService, is_loopback

    if not args.key.is_file():
        print(f"doorkeep: --key {args.key}: no such file (make one with: doorkeep owner keygen)", file=sys.stderr)
        return 2
    if not 0 <= args.port < 65536 or not 0.1 <= args.idle_lock <= 24 * 60:
        print("doorkeep: --port must be 0..65535 and --idle-lock 0.1..1440 minutes", file=sys.stderr)
        return 2
    book_path = args.book or DeviceBook.default_path()
    book = DeviceBook.load(book_path)
    dev = book.get(args.device_id) if args.device_id else book.only()
    if not is_loopback(args.bind):
        print(f"doorkeep console: WARNING: listening on {args.bind}, not loopback — anyone on that network can "
              "reach the unlock page, and plain HTTP carries the passphrase unencrypted. Prefer an SSH tunnel.",
              file=sys.stderr)
    host, port = args.broker
    try:
        svc = ConsoleService(_settings(args, host, port), key_path=args.key, device_id=dev.device_id,
                             device_key=dev.key, device_name=args.name, host=args.bind, port=args.port,
                             idle_s=args.idle_lock * 60, book=book_path)
    except OSError as exc:
        print(f"doorkeep: cannot listen on {args.bind}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"doorkeep console for {dev.device_id} (fingerprint {dev.fingerprint}) on {svc.url} — open it and "
          "unlock with your owner key's passphrase; Ctrl-C stops", flush=True)
    if args.open:
        import webbrowser

        webbrowser.open(svc.url)
    svc.serve_forever()
    return 0
