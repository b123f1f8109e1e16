"""``doorkeep run --config FILE`` (the device) and ``doorkeep demo`` (the whole job on a built-in scene)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from doorkeep.device.assembly import Device


#: What stops ``doorkeep run`` and the demo cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run the doorbell from a config file until SIGINT/SIGTERM")
    p.add_argument("--config", required=True, metavar="FILE", help="TOML config (docs/config.md)")
    p.add_argument("--stats", type=float, default=0.0, metavar="S",
                   help="print pipeline stats every S seconds (0: never)")
    p.set_defaults(func=_run)

    d = sub.add_parser("demo", help="run the pipeline on a built-in scene and print live stats")
    d.add_argument("--config", metavar="FILE", help="TOML config (default: built-in real-photo scene at 720p)")
    d.add_argument("--seconds", type=float, default=0.0, metavar="N", help="stop after N seconds (0: until Ctrl-C)")
    d.add_argument("--broker", metavar="HOST[:PORT]", help="publish to this MQTT broker instead of an embedded one")
    d.add_argument("--state", metavar="DIR", help="keep the demo's state (keys, clips, audit log) in DIR "
                   "(default: a temporary directory removed at the end)")
    d.add_argument("--console", action="store_true",
                   help="also serve the owner's web console on loopback (prints its URL; passphrase 'demo')")
    d.add_argument("--console-port", type=int, default=8140, metavar="PORT",
                   help="port for --console (default 8140; 0: any free port)")
    d.set_defaults(func=_demo)


def _format(snap: dict[str, Any], *, link: tuple[bool, int] | None = None) -> str:
    """The ``--stats`` line; ``link``: (MQTT connected, messages waiting in the outbox) when MQTT is on."""
    g, c, lat = snap["gauges"], snap["counters"], snap["latency_ms"]
    parts = [f"t={snap['uptime_s']:6.1f}s", f"capture {g.get('capture_fps', 0):5.1f} fps",
             f"analysed {snap['fps']:5.1f} fps", f"frames {int(g.get('captured', 0))}",
             f"drops {int(g.get('capture_drops', 0))}", f"skipped {int(g.get('frames_skipped', 0))}",
             f"gate open {c.get('gate_open', 0)}", f"gate p50 {lat['gate']['p50']:.2f} ms"]
    if lat["detect"]["n"]:
        parts.append(f"detect p50 {lat['detect']['p50']:.1f} ms")
    if "night_mode" in g:
        parts.append("mode night" if g["night_mode"] else "mode day")
    if link is not None:
        parts.append(f"mqtt {'up' if link[0] else 'DOWN'}")
        parts.append(f"outbox {link[1]}")
    parts.append(f"events {c.get('events', 0)}")
    parts.append(f"preroll {g.get('preroll_bytes', 0) / 1e6:.1f} MB")
    return "  ".join(parts)


def serve(device: Device, *, seconds: float, every: float, out: TextIO = sys.stdout,
          stop: threading.Event | None = None, reload: threading.Event | None = None) -> int:
    """Run the started ``device`` until a signal (or ``stop``), ``reload`` (the owner applied a configuration),
    ``seconds`` (0: none), the source ends or its supervisor asks for a process restart (a worker that cannot be
    restarted in-process failed); print stats every ``every`` s.

    Returns 1 when capture failed or the supervisor gave up (systemd then restarts the service), else 0.
    """
    from contextlib import nullcontext

    from doorkeep.device.loop import stop_on_signals

    bell, sup = device.bell, device.supervisor
    t_end = time.monotonic() + seconds if seconds > 0 else None
    next_stats = time.monotonic() + every
    reload = reload or threading.Event()
    # A closed terminal (SIGHUP) stops as cleanly as Ctrl-C: open clips are closed, the audit log is consistent.
    with nullcontext(stop) if stop is not None else stop_on_signals(STOP_SIGNALS) as stopped:
        while not (stopped.is_set() or reload.is_set() or bell.source.finished.is_set()
                   or sup.exit_requested.is_set()):
            timeout = 0.2  # the supervisor's verdict and the source's end are polled, a signal wakes at once
            if t_end is not None:
                timeout = min(timeout, max(0.0, t_end - time.monotonic()))
            stopped.wait(timeout)
            if every > 0 and time.monotonic() >= next_stats:
                next_stats += every
                pub = device.publisher
                link = (pub.client.connected, int(pub.figures()["outbox"])) if pub is not None else None
                print(_format(bell.stats.snapshot(), link=link), file=out, flush=True)
            if t_end is not None and time.monotonic() >= t_end:
                break
    if bell.source.error is not None:
        print(f"doorkeep: capture failed: {bell.source.error}", file=sys.stderr)
        return 1
    if sup.exit_requested.is_set():
        print(f"doorkeep: {sup.exit_reason}; exiting so the service restarts", file=sys.stderr)
        return 1
    return 0


def owner_documents(device: Device, *, local: dict[str, Any], reload: threading.Event) -> None:
    """Let the running device answer owner documents (``doorkeep config push`` on ``pair/doc``, and the owner
    channel's ``apply_config``): applied by provisioning, the verdict signed, then ``reload`` is set so the service
    rebuilds the pipeline with the new effective configuration. (device/ never imports provisioning/: the handler
    is attached here.)"""
    from doorkeep.provisioning.device_state import DeviceProvisioning
    from doorkeep.provisioning.documents import MAX_BYTES
    from doorkeep.provisioning.remote import RemoteDocuments

    if device.channel is None or device.publisher is None:
        return
    prov = DeviceProvisioning(device.config.state_dir, identity=device.identity, audit=device.audit)
    remote = RemoteDocuments(device.publisher.client, prov, local=local, on_applied=lambda _v: reload.set())
    device.channel.owner.p.apply_config = remote.verdict
    device.channel.owner.p.config_document = lambda: _applied_document(device.config.state_dir)
    device.channel.owner.p.on_applied = lambda _v: reload.set()
    device.channel.inbox.route(remote.doc_topic, remote, max_bytes=MAX_BYTES)


def _applied_document(state_dir: Path) -> bytes:
    """The owner-signed configuration document this device applied last (``b""`` when none)."""
    from doorkeep.provisioning.signed_config import APPLIED_FILE

    try:
        return (state_dir / APPLIED_FILE).read_bytes()
    except FileNotFoundError:
        return b""


def show_activity() -> None:
    """Show the device's activity stream (device/activity.py: events, clips, MQTT, day/night, retention, refusals)
    at the default verbosity: the operator of a service reads these lines, not the library's INFO chatter."""
    import logging

    from doorkeep.device.activity import NAME

    logger = logging.getLogger(NAME)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)


def _run(args: argparse.Namespace) -> int:
    """The device service: identity, boot-file pairing and the owner-signed config, then the whole pipeline —
    rebuilt with the new effective configuration whenever the owner applies a signed document over MQTT."""
    from doorkeep.device.assembly import assemble
    from doorkeep.device.config import Config
    from doorkeep.device.loop import stop_on_signals
    from doorkeep.device.memory import pin_mmap_threshold
    from doorkeep.device.sd_notify import Notifier
    from doorkeep.provisioning.signed_config import load_local_toml
    from doorkeep.provisioning.startup import prepare_device
    from doorkeep.provisioning.state_lock import StateLock

    pin_mmap_threshold()  # a long-running process: keep RSS flat (device/memory.py)
    show_activity()
    notifier = Notifier.from_env()
    rc = 0
    with StateLock(Config.from_toml(args.config).state_dir, holder="doorkeep run"), \
            stop_on_signals(STOP_SIGNALS) as stop:
        while not stop.is_set():
            start = prepare_device(args.config)
            reload = threading.Event()
            # The supervisor pings the watchdog only while every worker runs and capture advances: a dead or hung
            # thread stops the pings and systemd restarts us (device/supervisor.py).
            device = assemble(start.config, identity=start.identity, notifier=notifier)
            owner_documents(device, local=load_local_toml(args.config), reload=reload)
            print(f"doorkeep: device {start.identity.device_id} (fingerprint {start.identity.fingerprint}), "
                  f"{'paired' if start.paired else 'NOT paired: run `doorkeep pair --device`'}, "
                  f"configuration #{start.config_counter}", flush=True)
            with device:
                notifier.ready("capturing")
                rc = serve(device, seconds=0.0, every=args.stats, stop=stop, reload=reload)
            if rc or not reload.is_set():
                break
            print("doorkeep: the owner applied a signed configuration; restarting the pipeline with it", flush=True)
        notifier.stopping()
    return rc


def _demo(args: argparse.Namespace) -> int:
    from doorkeep.device.memory import pin_mmap_threshold
    from doorkeep.tools.demo import run_demo

    pin_mmap_threshold()
    return run_demo(args)
