"""Soak run: the foundation pipeline on a real file source for minutes, watching drops and memory.

    python -m doorkeep.tools.soak /dev/shm/soak-1080p30.mp4 --make --seconds 300   # tmpfs: no disk stalls
    python -m doorkeep.tools.soak --config pi.toml --seconds 300 --dump-preroll /tmp/preroll.h264   # on a Pi

``--make`` first writes a 1080p30 H.264 file of the synthetic scene (not committed; a few minutes of encoding) if it
does not exist. The run paces the file at its frame rate through the whole foundation path (PyAV source →
FrameRing + PacketRing pre-roll → motion gate on the detect thread), samples RSS once a second and prints one JSON
object: capture drops, ring overruns, frames, RSS after warm-up and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from doorkeep.device.app import Doorbell


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def soak(bell: Doorbell, *, seconds: float, warmup_s: float = 30.0) -> dict[str, Any]:
    """Run ``bell`` for ``seconds`` (or until its source ends); returns the figures."""
    source = bell.source
    samples: list[tuple[float, float]] = []
    load0 = os.getloadavg()[0]
    t0 = time.monotonic()
    psi0 = _pressure()
    drop_events: list[tuple[float, int, float]] = []
    with bell:
        drops = 0
        while time.monotonic() - t0 < seconds and not source.finished.is_set():
            time.sleep(1.0)
            t = time.monotonic() - t0
            samples.append((t, rss_mb()))
            if source.drops != drops:  # when frames were lost, and how late the capture thread was
                drop_events.append((round(t, 1), source.drops - drops, round(source.max_lag * 1e3, 1)))
                drops = source.drops
    psi1 = _pressure()
    snap = bell.stats.snapshot()
    after = [r for t, r in samples if t >= warmup_s] or [r for _, r in samples] or [rss_mb()]
    elapsed = samples[-1][0] if samples else time.monotonic() - t0
    return {
        "source": type(source).__name__,
        "size": f"{source.main_size[0]}x{source.main_size[1]}",
        "fps_nominal": source.fps,
        "seconds": round(time.monotonic() - t0, 1),
        "frames": source.frames,
        "packets": source.packets,
        "capture_fps": round(source.frames / max(elapsed, 1e-9), 2),
        "capture_drops": source.drops,
        "max_capture_lag_ms": round(source.max_lag * 1e3, 1),
        "drop_events_t_n_maxlagms": drop_events,
        "stall_s_during_run": {k: round((psi1[k] - psi0[k]) / 1e6, 2) for k in psi0 if k in psi1},
        "loadavg_start_end": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "rss_every_30s_mb": [round(r, 1) for t, r in samples[29::30]],
        "ring_overruns": bell.ring.overruns,
        "frames_skipped_by_detect": bell.ring.skipped,
        "rss_warm_mb": round(after[0], 1),
        "rss_end_mb": round(after[-1], 1),
        "rss_max_after_warmup_mb": round(max(after), 1),
        "rss_growth_mb": round(max(after) - after[0], 2),
        "gate_ms": snap["latency_ms"]["gate"],
        "preroll_bytes": bell.preroll.bytes,
        "error": repr(source.error) if source.error else None,
    }


def _pressure() -> dict[str, int]:
    """Linux PSI totals (µs some task stalled): CPU and IO contention from other processes during the run."""
    out = {}
    for kind in ("cpu", "io"):
        try:
            with open(f"/proc/pressure/{kind}") as f:
                some = f.readline().split()
            out[kind] = int(some[-1].split("=")[1])
        except (OSError, IndexError, ValueError):
            continue
    return out


def check_preroll(bell: Doorbell, path: str) -> dict[str, Any]:
    """Write the pre-roll to a raw H.264 file and decode it with PyAV from its first packet."""
    import av

    packets = bell.preroll.snapshot()
    with open(path, "wb") as f:
        f.writelines(p.data for p in packets)
    ctx = av.CodecContext.create("h264", "r")
    decoded = 0
    for p in packets:
        decoded += len(ctx.decode(av.Packet(p.data)))
    decoded += len(ctx.decode(None))
    return {"preroll_file": path, "preroll_packets": len(packets), "preroll_decoded": decoded,
            "preroll_starts_with_config": bool(packets and packets[0].keyframe and packets[0].has_config)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m doorkeep.tools.soak", description=__doc__.split("\n")[0])
    p.add_argument("file", nargs="?", help="video file to play (paced at its frame rate, looped)")
    p.add_argument("--config", metavar="FILE", help="soak the source of this config instead (e.g. picamera2)")
    p.add_argument("--seconds", type=float, default=300.0, help="how long to run (default 300)")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds before the RSS baseline (default 30)")
    p.add_argument("--make", action="store_true", help="write a 1080p30 H.264 synthetic file first if missing")
    p.add_argument("--make-seconds", type=float, default=60.0, help="length of the made file (looped; default 60)")
    p.add_argument("--no-pin", action="store_true", help="leave glibc's dynamic mmap threshold (to compare)")
    p.add_argument("--dump-preroll", metavar="FILE", help="at the end, write the pre-roll as raw H.264 and decode it")
    args = p.parse_args(argv)
    from doorkeep.device.app import Doorbell
    from doorkeep.device.config import CaptureSection, Config
    from doorkeep.device.memory import pin_mmap_threshold

    pinned = pin_mmap_threshold() if not args.no_pin else False
    if args.config:
        config = Config.from_toml(args.config)
    elif args.file:
        if args.make and not Path(args.file).exists():
            from doorkeep.device.sources.synthetic import write_video

            t = time.monotonic()
            n = write_video(args.file, seconds=args.make_seconds, width=1920, height=1080, fps=30, noise=2)
            print(f"wrote {n} frames to {args.file} in {time.monotonic() - t:.0f} s", file=sys.stderr)
        config = Config().replace(capture=CaptureSection(source="file", path=args.file, loop=True, realtime=True))
    else:
        p.error("give a video FILE or --config")
    bell = Doorbell.from_config(config)
    result = soak(bell, seconds=args.seconds, warmup_s=args.warmup)
    result["mmap_threshold_pinned"] = pinned
    if args.dump_preroll:
        result.update(check_preroll(bell, args.dump_preroll))
    bell.close()
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
