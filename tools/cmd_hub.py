"""``doorkeep events``: the hub side — subscribe to a device's signed events, verify every one, print them.

Forged, tampered, unsigned or malformed messages are flagged loudly: ``!! REJECTED (<reason>)`` on stderr,
``"verified": false`` with the reason in ``--json`` output, counted in the summary, exit status 3. The signed stats
heartbeat is checked too: an unsigned or forged one, or an audit head that goes back, is flagged the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_REJECTED = 3
#: How long ``doorkeep events`` tries to reach the broker before it gives up (``--wait``: forever).
CONNECT_TIMEOUT_S = 30.0


def parse_broker(text: str, *, default_port: int = 1883) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[IPv6]:PORT`` → (host, port)."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise argparse.ArgumentTypeError(f"--broker {text!r}: no host")
    try:
        p = int(port) if port else default_port
    except ValueError:
        raise argparse.ArgumentTypeError(f"--broker {text!r}: port must be a number") from None
    if not 0 < p < 65536:
        raise argparse.ArgumentTypeError(f"--broker {text!r}: port must be 1..65535")
    return host, p


def add_connection_options(p: argparse.ArgumentParser) -> None:
    """TLS and authentication options shared by hub-side commands."""
    p.add_argument("--ca", metavar="PEM", default="", help="CA certificate that signed the broker's (enables TLS)")
    p.add_argument("--tls", action="store_true", help="use TLS with the system CA store")
    p.add_argument("--cert", metavar="PEM", default="", help="client certificate (mutual TLS)")
    p.add_argument("--key", metavar="PEM", default="", help="client private key (mutual TLS)")
    p.add_argument("--username", default="", help="MQTT username")
    p.add_argument("--password-file", metavar="FILE", default="", help="file holding the MQTT password")
    p.add_argument("--mqtt5", action="store_true", help="use MQTT 5 (default 3.1.1)")


def settings_from_args(args: argparse.Namespace, host: str, port: int):  # type: ignore[no-untyped-def]
    from doorkeep.device.config import MqttSection

    return MqttSection(host=host, port=port, tls=args.tls, ca=args.ca, cert=args.cert, key=args.key,
                       username=args.username, password_file=args.password_file,
                       protocol="5" if args.mqtt5 else "3.1.1", discovery=False)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("events", help="hub: subscribe to a device's signed events and verify every one",
                       description="Subscribe to doorkeep/<device id>/event, verify each signature with the "
                                   "device's public key, print the events. Forged, tampered or unsigned messages "
                                   "are flagged loudly and make the exit status 3.")
    p.add_argument("--broker", required=True, type=parse_broker, metavar="HOST[:PORT]", help="MQTT broker")
    p.add_argument("--device-key", metavar="KEY",
                   help="device PUBLIC key as `doorkeep identity show` prints it (64 hex chars), base64, or a text "
                   "file holding it (default: the key pinned when you paired --device-id)")
    p.add_argument("--device-id", metavar="DEVICE_ID",
                   help="the device (dk-…): its key comes from your paired-device book, or must match --device-key")
    p.add_argument("--book", type=Path, help="paired-device file (default ~/.config/doorkeep/devices.json)")
    p.add_argument("--json", action="store_true", help="one JSON object per message (with \"verified\")")
    p.add_argument("--count", type=int, default=0, metavar="N", help="stop after N messages (0: no limit)")
    p.add_argument("--seconds", type=float, default=0.0, metavar="S", help="stop after S seconds (0: no limit)")
    p.add_argument("--timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="S",
                   help=f"give up when the broker cannot be reached within S seconds (default {CONNECT_TIMEOUT_S:g})")
    p.add_argument("--wait", action="store_true", help="keep trying to reach the broker until stopped (no timeout)")
    add_connection_options(p)
    p.set_defaults(func=_events)


def device_key(args: argparse.Namespace) -> bytes:
    """The key to verify with: ``--device-key`` (checked against ``--device-id``), else the one pinned at pairing.

    Raises:
        InvalidArgument: an unusable key, a key of another device, or no way to find one.
    """
    from doorkeep.device.errors import InvalidArgument
    from doorkeep.device.identity import device_id_for
    from doorkeep.provisioning.owner_state import DeviceBook
    from doorkeep.tools.hub import parse_verify_key

    if args.device_key:
        key = parse_verify_key(args.device_key)
        if args.device_id and device_id_for(key) != args.device_id:
            raise InvalidArgument(f"--device-key belongs to {device_id_for(key)}, not to --device-id {args.device_id}")
        return key
    book = DeviceBook.load(args.book or DeviceBook.default_path())
    if args.device_id and args.device_id in book.devices:
        return book.devices[args.device_id].key
    if not args.device_id and len(book.devices) == 1:
        return next(iter(book.devices.values())).key
    known = ", ".join(sorted(book.devices)) or "none"
    raise InvalidArgument(f"{'--device-id ' + args.device_id + ' is not' if args.device_id else 'no device is'} "
                          f"paired in {book.path} (paired: {known}); give --device-key (run `doorkeep identity show` "
                          "on the device)")


def _events(args: argparse.Namespace) -> int:
    import time

    from doorkeep.device.errors import PublishError
    from doorkeep.device.loop import stop_on_signals
    from doorkeep.device.publish.mqtt import PublishTimeout
    from doorkeep.tools.hub import EventWatcher

    try:
        key = device_key(args)
    except ValueError as exc:
        print(f"doorkeep: {exc}", file=sys.stderr)
        return 2
    host, port = args.broker
    watcher = EventWatcher(key, out=sys.stdout, err=sys.stderr, as_json=args.json)
    t_end = time.monotonic() + args.seconds if args.seconds > 0 else None
    print(f"doorkeep events: connecting to {host}:{port} for {watcher.topic}", file=sys.stderr, flush=True)
    give_up = None if args.wait else time.monotonic() + args.timeout
    with stop_on_signals() as stop:
        watcher.connect(settings_from_args(args, host, port))
        try:
            while not stop.is_set() and (t_end is None or time.monotonic() < t_end):
                try:
                    watcher.wait_subscribed(0.5)
                except PublishTimeout:
                    if give_up is not None and time.monotonic() >= give_up:
                        why = f" ({watcher.last_error})" if watcher.last_error else ""
                        raise PublishError(f"cannot reach the MQTT broker {host}:{port} within {args.timeout:g} s"
                                           f"{why}; --wait keeps trying") from None
                    continue
                print(f"doorkeep events: listening on {watcher.topic}", file=sys.stderr, flush=True)
                left = 0.0 if t_end is None else max(t_end - time.monotonic(), 1e-3)
                watcher.wait(count=args.count, seconds=left, stop=stop)
                break
        finally:
            watcher.close()
    print(watcher.summary(), file=sys.stderr, flush=True)
    return EXIT_REJECTED if watcher.flagged else 0
