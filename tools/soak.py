"""Soak run: the foundation pipeline on a real file source for minutes, watching drops and memory.

    python -m doorkeep.tools.soak /tmp/soak-1080p30.mp4 --make --seconds 300

``--make`` first writes a 1080p30 H.264 file of the synthetic scene (not committed; a few minutes of encoding) if it
does not exist. The run paces the file at its frame rate through the whole foundation path (PyAV source →
FrameRing + PacketRing pre-roll → motion gate on the detect thread), samples RSS once a second and prints one JSON
object: capture drops, ring overruns, frames, RSS after warm-up and at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def soak(path: str, *, seconds: float, warmup_s: float = 30.0, loop: bool = True) -> dict[str, Any]:
    """Run the pipeline on ``path`` (paced) for ``seconds``; returns the figures."""
    from doorkeep.device.app import Doorbell
    from doorkeep.device.config import CaptureSection, Config
    from doorkeep.device.sources.pyav import PyAVSource

    source = PyAVSource(path=path, realtime=True, loop=loop)
    config = Config().replace(capture=CaptureSection(source="file", path=path, loop=loop))
    bell = Doorbell.from_config(config, source=source)
    samples: list[tuple[float, float]] = []
    t0 = time.monotonic()
    with bell:
        while time.monotonic() - t0 < seconds and not source.finished.is_set():
            time.sleep(1.0)
            samples.append((time.monotonic() - t0, rss_mb()))
    snap = bell.stats.snapshot()
    after = [r for t, r in samples if t >= warmup_s] or [r for _, r in samples]
    return {
        "file": path,
        "size": f"{source.main_size[0]}x{source.main_size[1]}",
        "fps_file": source.fps,
        "seconds": round(time.monotonic() - t0, 1),
        "frames": source.frames,
        "packets": source.packets,
        "capture_drops": source.drops,
        "ring_overruns": bell.ring.overruns,
        "frames_skipped_by_detect": bell.ring.skipped,
        "capture_fps": round(source.frames / max(1e-9, samples[-1][0] if samples else 1), 2),
        "rss_warm_mb": round(after[0], 1),
        "rss_end_mb": round(after[-1], 1),
        "rss_max_after_warmup_mb": round(max(after), 1),
        "rss_growth_mb": round(max(after) - after[0], 2),
        "gate_ms": snap["latency_ms"]["gate"],
        "preroll_bytes": bell.preroll.bytes,
        "error": repr(source.error) if source.error else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m doorkeep.tools.soak", description=__doc__.split("\n")[0])
    p.add_argument("file", help="video file to play (paced at its frame rate, looped)")
    p.add_argument("--seconds", type=float, default=300.0, help="how long to run (default 300)")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds before the RSS baseline (default 30)")
    p.add_argument("--make", action="store_true", help="write a 1080p30 H.264 synthetic file first if missing")
    p.add_argument("--make-seconds", type=float, default=60.0, help="length of the made file (looped; default 60)")
    args = p.parse_args(argv)
    if args.make and not Path(args.file).exists():
        from doorkeep.device.sources.synthetic import write_video

        t = time.monotonic()
        n = write_video(args.file, seconds=args.make_seconds, width=1920, height=1080, fps=30, noise=2)
        print(f"wrote {n} frames to {args.file} in {time.monotonic() - t:.0f} s", file=sys.stderr)
    print(json.dumps(soak(args.file, seconds=args.seconds, warmup_s=args.warmup), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
