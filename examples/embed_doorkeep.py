"""Embed doorkeep in your own program: person events from a video source, handled by your code.

Everything comes from ``doorkeep.device`` (its ``__all__`` is the public SDK, docs/vendor.md): a :class:`Config`,
the :class:`Doorbell` pipeline (source → frame ring → motion gate → detector → tracker → your event sinks), the
device identity and, optionally, the signed MQTT publisher. ``assemble(config, identity=...)`` builds the whole
device instead (vault, MQTT, button, supervised threads), as ``doorkeep run`` does. Run it on any video file::

    python examples/embed_doorkeep.py --video door.mp4 --state-dir /tmp/dk-demo
    python examples/embed_doorkeep.py --video door.mp4 --state-dir /tmp/dk-demo --broker 127.0.0.1:1883

It prints one line per event and, at the end, a JSON summary (frames analysed, events).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from pathlib import Path

from doorkeep.device import (
    Config,
    DeviceIdentity,
    Doorbell,
    Event,
    EventSink,
    MqttPublisher,
    PersonTracker,
    build_detector,
)


class MyProductEvents(EventSink):
    """Your code: called on doorkeep's event thread for every person/doorbell event. Never block here."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        with self.lock:
            self.events.append(event)
        print(f"{event.kind} {event.phase}: score {event.score:.2f} zone {event.zone or '-'}", flush=True)


def make_config(video: Path, state_dir: Path, broker: str | None, *, fast: bool = False) -> Config:
    """Configuration as a dict (the same keys as doorkeep.toml, docs/config.md)."""
    table: dict = {
        "device": {"name": "Embedded doorbell", "state_dir": str(state_dir)},
        "capture": {"source": "file", "path": str(video), "realtime": not fast, "lores_width": 320,
                    "lores_height": 240},
        "mqtt": {"enabled": broker is not None},
    }
    if broker:
        host, _, port = broker.partition(":")
        table["mqtt"].update(host=host, port=int(port or 1883), discovery=False)
    return Config.from_dict(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", required=True, type=Path, help="video file (any format PyAV reads)")
    ap.add_argument("--state-dir", required=True, type=Path, help="device state (identity, outbox, vault)")
    ap.add_argument("--broker", help="HOST[:PORT]: also publish signed events over MQTT")
    ap.add_argument("--fast", action="store_true",
                    help="read the file as fast as possible (the detector then sees only the newest frames)")
    ap.add_argument("--timeout", type=float, default=120.0, help="stop after this many seconds")
    args = ap.parse_args(argv)

    config = make_config(args.video, args.state_dir, args.broker, fast=args.fast)
    identity = DeviceIdentity.load_or_create(config.state_dir)  # a vendor may also use doorkeep.provisioning
    mine = MyProductEvents()
    sinks: list[EventSink] = [mine]
    with contextlib.ExitStack() as stack:
        if args.broker:  # signed events to the owner's hub; durable outbox, drained before we exit
            publisher = stack.enter_context(MqttPublisher(config.mqtt, identity, state_dir=config.state_dir,
                                                          device_name=config.device.name))
            stack.callback(publisher.drain, 10.0)
            sinks.append(publisher)
        bell = Doorbell.from_config(config, detector=build_detector(config),
                                    tracker=PersonTracker.from_config(config), event_sinks=sinks)
        with bell:
            bell.source.finished.wait(args.timeout)
    if bell.source.error is not None:
        print(f"capture failed: {bell.source.error}", file=sys.stderr)
        return 1
    snap = bell.stats.snapshot()
    summary = {"device_id": identity.device_id, "frames": int(snap["gauges"].get("captured", 0)),
               "analysed_fps": round(snap["fps"], 1),
               "events": [{"kind": e.kind, "phase": e.phase, "event_id": e.event_id} for e in mine.events]}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
