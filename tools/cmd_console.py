"""``doorkeep console``: the owner's local web app for one paired device (tools/console/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from doorkeep.tools.cmd_hub import parse_broker
from doorkeep.tools.cmd_owner import _connection_args, _settings


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
    _connection_args(p)  # broker TLS/credentials as `doorkeep owner …` takes them (--cert-key: the client key)
    p.set_defaults(func=_console)


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
    try:
        svc = ConsoleService(_settings(args), key_path=args.key, device_id=dev.device_id,
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
