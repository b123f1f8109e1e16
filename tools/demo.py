"""``doorkeep demo``: the whole job on a built-in scene, with nothing but pip.

A real person photo walks past a real brick wall (device/sources/photo_scene.py); the real pinned detector finds
them; person events are signed and published to an embedded MQTT broker (amqtt on loopback, unless ``--broker``),
where a hub-side subscriber verifies every signature; the vault records encrypted clips sealed to a demo owner key
that the device never holds in usable form. At the end the demo shows, as the owner, that the clips decrypt.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO

from doorkeep.device.assembly import Device, assemble
from doorkeep.device.config import CaptureSection, Config, DeviceSection, MqttSection
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault import keys

#: The demo owner's passphrase (a demo key only: real owners choose theirs with ``doorkeep owner keygen``).
DEMO_PASSPHRASE = b"demo"


def demo_config(args: argparse.Namespace, state: Path, host: str, port: int) -> Config:
    """The demo's configuration: ``--config`` or the built-in scene at 720p, pointed at the demo broker/state."""
    base = Config.from_toml(args.config) if args.config else Config().replace(
        capture=CaptureSection(source="synthetic", main_width=1280, main_height=720))
    mqtt = dataclasses.replace(base.mqtt, host=host, port=port, heartbeat_s=5.0, reconnect_max_s=2)
    return base.replace(device=DeviceSection(name="doorkeep demo", state_dir=state), mqtt=mqtt)


def demo_owner(owner_dir: Path, state: Path) -> keys.SecretKeys:
    """The demo owner's keys (made once, passphrase ``demo``), kept OUTSIDE the device's state directory (as on
    the owner's phone or laptop); only the public half is pinned on the device."""
    path = owner_dir / "owner.key"
    if path.exists():
        return keys.SecretKeys.load(path, DEMO_PASSPHRASE, role="owner")
    owner_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    owner = keys.SecretKeys.generate("owner")
    owner.save(path, DEMO_PASSPHRASE, limits=keys.INTERACTIVE)
    keys.pin_owner_public(state, owner.public, replace=True)
    return owner


@contextmanager
def demo_broker(broker: str | None) -> Iterator[tuple[str, int]]:
    """``(host, port)`` of ``--broker`` or of an embedded amqtt broker on loopback, stopped on exit."""
    from doorkeep.tools.cmd_hub import parse_broker
    from doorkeep.tools.embedded_broker import EmbeddedBroker

    if broker:
        yield parse_broker(broker)
        return
    embedded = EmbeddedBroker()
    embedded.start()
    try:
        yield embedded.host, embedded.port
    finally:
        embedded.stop()


def build_device(config: Config, identity: DeviceIdentity) -> Device:
    """The device on the real-photo scene (or on whatever source ``--config`` names)."""
    from doorkeep.device.sources.photo_scene import photo_scene
    from doorkeep.device.sources.synthetic import SyntheticSource

    cap = config.capture
    source = None
    if cap.source == "synthetic":
        source = SyntheticSource(width=cap.main_width, height=cap.main_height, lores_width=cap.lores_width,
                                 lores_height=cap.lores_height, fps=cap.fps, gop=cap.gop, noise=2,
                                 scene=photo_scene(cap.main_width, cap.main_height))
    return assemble(config, identity=identity, source=source)


def _ring_on_enter(current: list[Device]) -> None:
    for _line in sys.stdin:
        button = current[0].button
        if button is not None:
            button.press()


def demo_local(config: Config) -> dict[str, Any]:
    """The demo's "local file": its ``[device]`` and ``[capture]`` tables (an owner-signed document sets the rest)."""
    return {"device": {"name": config.device.name, "state_dir": str(config.state_dir)},
            "capture": dataclasses.asdict(config.capture)}


def reloaded_config(base: Config, identity: DeviceIdentity) -> Config:
    """The demo's configuration after the owner applied a signed document: the document's policy on the demo's
    source, still pointed at the demo broker."""
    from doorkeep.provisioning.device_state import DeviceProvisioning
    from doorkeep.provisioning.signed_config import SignedConfigStore

    class _NoAudit:
        def append(self, kind: str, /, **fields: Any) -> None:
            return None

    prov = DeviceProvisioning(base.state_dir, identity=identity, audit=_NoAudit())
    new = SignedConfigStore(prov, local=demo_local(base)).effective()
    return new.replace(device=base.device, mqtt=dataclasses.replace(new.mqtt, host=base.mqtt.host,
                                                                    port=base.mqtt.port, heartbeat_s=5.0,
                                                                    reconnect_max_s=2))


def report(device: Device, owner: keys.SecretKeys, out: TextIO) -> None:
    """After the run: the clips on disk, decrypted as the owner, and the audit chain verified."""
    from doorkeep.device.vault.audit import verify
    from doorkeep.device.vault.clips import decrypt_clip, open_clip_key, parse_header
    from doorkeep.device.vault.vault import AUDIT_FILE

    vault = device.vault
    if vault is None:
        return
    manifests = vault.store.manifests()
    print(f"vault: {len(manifests)} encrypted clip(s) in {vault.store.root}", file=out)
    for m in manifests:
        data = vault.store.clip_path(m.clip_id).read_bytes()
        _header, packets = decrypt_clip(data, open_clip_key(parse_header(data), owner), require_final=m.complete)
        first = packets[0] if packets else None
        start = "starts at a keyframe with SPS/PPS" if first and first.keyframe and first.has_config else "NO KEYFRAME"
        print(f"  {m.clip_id}: {m.size} bytes, events {','.join(m.event_ids)}; the owner's key opens it: "
              f"{len(packets)} H.264 packets, {start}", file=out)
    rep = verify(device.config.state_dir / AUDIT_FILE, device.identity.public_bytes)
    state = "intact" if rep.ok else f"BROKEN at record {rep.first_bad}: {rep.reason}"
    print(f"audit log: {rep.records} records, chain {state}, head {rep.head[:16]}…", file=out)


def demo_console(stack: ExitStack, args: argparse.Namespace, identity: DeviceIdentity, owner_dir: Path, host: str,
                 port: int, out: TextIO) -> str:
    """Serve the owner's web console on loopback for the demo device (the owner's device book pins it)."""
    from doorkeep.provisioning.owner_state import DeviceBook
    from doorkeep.tools.console.server import ConsoleService

    book_path = owner_dir / "devices.json"
    book = DeviceBook.load(book_path)
    if identity.device_id not in book.devices:
        book.pin(identity.device_id, identity.public_bytes)
    svc = ConsoleService(MqttSection(host=host, port=port, discovery=False, reconnect_max_s=2),
                         key_path=owner_dir / "owner.key", device_id=identity.device_id,
                         device_key=identity.public_bytes, device_name="doorkeep demo",
                         port=getattr(args, "console_port", 8140), book=book_path)
    stack.enter_context(svc)
    print(f"doorkeep demo: owner console on {svc.url} — unlock with the demo passphrase "
          f"'{DEMO_PASSPHRASE.decode()}'", file=out, flush=True)
    return svc.url


class Interrupted(KeyboardInterrupt):
    """A stop signal during the demo's setup or report; ``except KeyboardInterrupt`` (cli.main: exit 130) catches it.

    Not a bare KeyboardInterrupt on purpose: CPython 3.11 marks a bare one raised inside ``exec`` of a string (every
    ``@dataclass``/namedtuple the demo's lazy imports define while it sets up) as unhandled for good, and
    ``python -m``/``-c`` then end the process by SIGINT (returncode -2) although cli.main caught it and returned 130.
    """


@contextmanager
def interrupted_by(*signals: int) -> Iterator[None]:
    """Within the block these signals raise :class:`Interrupted` (default: SIGHUP/SIGTERM kill the process,
    skipping cleanup)."""
    def _raise(_signum: int, _frame: object) -> None:
        raise Interrupted

    if threading.current_thread() is not threading.main_thread():  # only the main thread receives signals
        yield
        return
    old: dict[int, Any] = {}
    try:  # installing checks pending signals, so one can already raise here: restore what was installed
        for s in signals:
            old[s] = signal.signal(s, _raise)
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def forget_demo_device(config: Config, device_id: str) -> None:
    """Clear the demo identity's retained messages (its Home Assistant device) from the broker."""
    from doorkeep.device.errors import PublishError
    from doorkeep.device.publish.discovery import forget_on_broker

    try:
        forget_on_broker(config.mqtt, device_id, timeout=3.0)
    except PublishError as exc:
        print(f"doorkeep demo: could not remove {device_id} from the broker ({exc}); "
              f"`doorkeep forget-device {device_id} --broker HOST` does it later", file=sys.stderr)


def run_demo(args: argparse.Namespace, *, out: TextIO = sys.stdout) -> int:
    # Ctrl-C, a hang-up or a kill while setting up or reporting must still remove the demo's keys (the owner key
    # too): they stop the run, and the temporary state goes in `finally` (while it runs, serve() stops cleanly).
    with interrupted_by(signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        return _run_demo(args, out=out)


def _run_demo(args: argparse.Namespace, *, out: TextIO) -> int:
    from doorkeep.device.loop import stop_on_signals
    from doorkeep.tools.cmd_run import STOP_SIGNALS, owner_documents, serve
    from doorkeep.tools.hub import EventWatcher

    keep = args.state is not None
    root = Path(args.state).expanduser() if keep else Path(tempfile.mkdtemp(prefix="doorkeep-demo-"))
    state, owner_dir = root / "device", root / "owner"
    print(f"doorkeep demo: starting — {'the broker ' + args.broker if args.broker else 'an embedded MQTT broker'}, "
          "the pinned person detector, a demo owner key …", file=sys.stderr, flush=True)
    try:
        identity = DeviceIdentity.load_or_create(state)
        owner = demo_owner(owner_dir, state)
        with ExitStack() as stack:
            host, port = stack.enter_context(demo_broker(args.broker))
            config = demo_config(args, state, host, port)
            # runs last on the way out, while the broker is still up: no phantom "doorkeep demo" in Home Assistant
            stack.callback(forget_demo_device, config, identity.device_id)
            watcher = EventWatcher(identity.public_bytes, out=out, err=sys.stderr)
            watcher.connect(MqttSection(host=host, port=port, discovery=False, reconnect_max_s=2))
            stack.callback(watcher.close)
            watcher.wait_subscribed(10.0)
            console_url = demo_console(stack, args, identity, owner_dir, host, port, out) \
                if getattr(args, "console", False) else None
            device = build_device(config, identity)
            where = f"broker {host}:{port}" if args.broker else f"embedded broker {host}:{port}"
            w, h = device.bell.source.main_size
            print(f"doorkeep demo: {type(device.bell.source).__name__} {w}x{h} @ {device.bell.source.fps:g} fps; "
                  f"device {identity.device_id} (fingerprint {identity.fingerprint}, public key "
                  f"{identity.public_bytes.hex()}) signs events on {where}; clips are sealed to the demo owner's key; "
                  "Ctrl-C stops", file=out, flush=True)
            if console_url:  # the device's lines follow; say again where to look (docs/owner.md)
                print(f"doorkeep demo: open {console_url} in your browser (passphrase "
                      f"'{DEMO_PASSPHRASE.decode()}'); ask it for footage as someone else would: doorkeep request "
                      f"--send {host}:{port} --device {identity.device_id} … (docs/owner.md#requests)",
                      file=out, flush=True)
            current = [device]
            if sys.stdin is not None and sys.stdin.isatty():
                print("doorkeep demo: press Enter to ring the doorbell", file=out, flush=True)
                threading.Thread(target=_ring_on_enter, args=(current,), daemon=True,
                                 name="doorkeep-demo-button").start()
            # The owner may push a signed configuration (doorkeep config push, the console): the demo then
            # rebuilds the pipeline with it, as doorkeep run does.
            t_end = time.monotonic() + args.seconds if args.seconds > 0 else None
            reload = threading.Event()
            with stop_on_signals(STOP_SIGNALS) as stop:
                while True:
                    owner_documents(device, local=demo_local(config), reload=reload)
                    with device:
                        left = 0.0 if t_end is None else max(t_end - time.monotonic(), 0.001)
                        # with the console the browser is where to look: a stats line every 10 s, not every second
                        rc = serve(device, seconds=left, every=10.0 if console_url else 1.0, out=out, stop=stop,
                                   reload=reload)
                        if device.publisher is not None:
                            device.publisher.drain(3.0)
                    if rc or stop.is_set() or not reload.is_set():
                        break
                    reload.clear()
                    print("doorkeep demo: the owner applied a signed configuration; restarting the pipeline with it",
                          file=out, flush=True)
                    config = reloaded_config(config, identity)
                    device = current[0] = build_device(config, identity)
            watcher.wait(seconds=0.5)
            print(watcher.summary(), file=out)
            report(device, owner, out)
        if keep:
            print(f"kept: device state {state}, owner key {owner_dir / 'owner.key'} (passphrase 'demo'); try "
                  f"`doorkeep clips --state-dir {state}`", file=out)
        return rc
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
