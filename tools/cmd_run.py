"""``doorkeep run --config FILE`` (the device) and ``doorkeep demo`` (the whole job on a built-in scene)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from doorkeep.device.app import Doorbell
    from doorkeep.device.config import Config


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run the doorbell from a config file until SIGINT/SIGTERM")
    p.add_argument("--config", required=True, metavar="FILE", help="TOML config (docs/config.md)")
    p.add_argument("--stats", type=float, default=0.0, metavar="S",
                   help="print pipeline stats every S seconds (0: never)")
    p.set_defaults(func=_run)

    d = sub.add_parser("demo", help="run the pipeline on a built-in scene and print live stats")
    d.add_argument("--config", metavar="FILE", help="TOML config (default: built-in synthetic scene)")
    d.add_argument("--seconds", type=float, default=0.0, metavar="N", help="stop after N seconds (0: until Ctrl-C)")
    d.add_argument("--broker", metavar="HOST[:PORT]", help="publish to this MQTT broker instead of an embedded one")
    d.set_defaults(func=_demo)


def _load(path: str | None) -> Config:
    from doorkeep.device.config import CaptureSection, Config

    if path:
        return Config.from_toml(path)
    # Built-in default: the synthetic scene at 720p (leaves CPU for detection on a 2-core machine).
    return Config().replace(capture=CaptureSection(source="synthetic", main_width=1280, main_height=720))


def build_demo(config: Config, args: argparse.Namespace) -> Doorbell:
    """The demo's composition, in one place: other areas add their stages here (detector, tracker, sinks)."""
    from doorkeep.device.app import Doorbell

    return Doorbell.from_config(config)


def _format(snap: dict[str, Any]) -> str:
    g, c, lat = snap["gauges"], snap["counters"], snap["latency_ms"]
    parts = [f"t={snap['uptime_s']:6.1f}s", f"capture {g.get('capture_fps', 0):5.1f} fps",
             f"analysed {snap['fps']:5.1f} fps", f"frames {int(g.get('captured', 0))}",
             f"drops {int(g.get('capture_drops', 0))}", f"skipped {int(g.get('frames_skipped', 0))}",
             f"gate open {c.get('gate_open', 0)}", f"gate p50 {lat['gate']['p50']:.2f} ms"]
    if lat["detect"]["n"]:
        parts.append(f"detect p50 {lat['detect']['p50']:.1f} ms")
    parts.append(f"events {c.get('events', 0)}")
    parts.append(f"preroll {g.get('preroll_bytes', 0) / 1e6:.1f} MB")
    return "  ".join(parts)


def _serve(bell: Doorbell, *, seconds: float, every: float) -> int:
    from doorkeep.device.loop import stop_on_signals

    t_end = time.monotonic() + seconds if seconds > 0 else None
    with stop_on_signals() as stop, bell:
        while not stop.is_set() and not bell.source.finished.is_set():
            timeout = every if every > 0 else 1.0
            if t_end is not None:
                timeout = min(timeout, max(0.0, t_end - time.monotonic()))
            stop.wait(timeout)
            if every > 0:
                print(_format(bell.stats.snapshot()), flush=True)
            if t_end is not None and time.monotonic() >= t_end:
                break
    if bell.source.error is not None:
        print(f"doorkeep: capture failed: {bell.source.error}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from doorkeep.device.app import Doorbell
    from doorkeep.device.memory import pin_mmap_threshold

    pin_mmap_threshold()  # a long-running process: keep RSS flat (device/memory.py)
    bell = Doorbell.from_config(_load(args.config))
    return _serve(bell, seconds=0.0, every=args.stats)


def _demo(args: argparse.Namespace) -> int:
    from doorkeep.device.memory import pin_mmap_threshold

    pin_mmap_threshold()
    config = _load(args.config)
    bell = build_demo(config, args)
    w, h = bell.source.main_size
    print(f"doorkeep demo: {type(bell.source).__name__} {w}x{h} @ {bell.source.fps:g} fps; Ctrl-C stops", flush=True)
    return _serve(bell, seconds=args.seconds, every=1.0)
