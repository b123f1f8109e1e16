"""Foundation benchmarks: frame-ring push cost against the memory-bandwidth limit, and the lores hot path.

* ``ring_push_ratio_lores`` / ``ring_push_ratio_1080p``: FrameRing.push throughput divided by a bare ``np.copyto``
  into a preallocated slot of an equally sized ring, measured in alternating rounds of the same run (goal >= 0.8
  for both). Lores is the configured lores size (``[capture] lores_width`` x ``lores_height``, 320x240 by default),
  the frames the device's ring actually holds, where the ring's per-push Python overhead weighs most; 1080p is the
  main stream's size, where the copy dominates.
* ``lores_loop_ms``: FrameRing.push + MotionGate.update per 320x240 frame of a moving scene (goal <= 1.0).
* ``ring_push_us_lores`` / ``copyto_us_lores``, ``ring_push_us_1080p`` / ``copyto_us_1080p``: the two sides of
  each ratio, median per frame.
* ``file_1080p_capture_ms``: capture-thread cost per frame of a 1080p30 H.264 file source (must stay well under
  33 ms for 30 fps with no drops).
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def _frames(width: int, height: int, n: int) -> list[np.ndarray]:
    from doorkeep.device.frames import i420_shape

    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, i420_shape(width, height), dtype=np.uint8) for _ in range(n)]


def ring_push_ratio(*, width: int, height: int, label: str, rounds: int, per_round: int,
                    slots: int = 8) -> dict[str, float]:
    """Median (over alternating rounds) of ring push throughput / bare copyto throughput for one frame size.

    The ring gets a capture timestamp and a wall time, as a source gives them; the bare side copies into the
    same number of preallocated slots, so both touch the same amount of memory.
    """
    from doorkeep.device.rings import FrameRing

    src = _frames(width, height, 4)
    ring = FrameRing(width=width, height=height, frames=slots)
    bare = np.zeros((slots, *ring.shape), dtype=np.uint8)
    ratios, t_ring, t_bare = [], [], []
    k = 0
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(per_round):
            np.copyto(bare[(k + i) % slots], src[i & 3])
        t1 = time.perf_counter()
        for i in range(per_round):
            ring.push(src[i & 3], t1, t1)
        t2 = time.perf_counter()
        k += per_round
        tb, tr = (t1 - t0) / per_round, (t2 - t1) / per_round
        t_bare.append(tb)
        t_ring.append(tr)
        ratios.append(tb / tr)
    return {f"ring_push_ratio_{label}": round(statistics.median(ratios), 3),
            f"ring_push_us_{label}": round(statistics.median(t_ring) * 1e6, 2),
            f"copyto_us_{label}": round(statistics.median(t_bare) * 1e6, 2)}


def lores_loop_ms(*, frames: int) -> dict[str, float]:
    """Per-frame cost of ring push + motion gate on 320x240 frames of the synthetic scene (person walking)."""
    from doorkeep.device.config import MotionSection
    from doorkeep.device.gate import MotionGate
    from doorkeep.device.rings import FrameRing
    from doorkeep.device.sources.synthetic import SyntheticSource

    w, h = 320, 240
    ring = FrameRing(width=w, height=h, frames=64)
    src = SyntheticSource(width=w, height=h, lores_width=w, lores_height=h, fps=30, duration_s=64 / 30,
                          realtime=False, noise=3, encode=False)
    src.attach(ring=ring)
    src.start()
    src.wait()
    src.close()
    scene = [ring._buf[i].copy() for i in range(ring.size)]
    ring = FrameRing(width=w, height=h, frames=8)
    gate = MotionGate.from_config(MotionSection(), width=w, height=h)
    out = ring.empty_frame()
    t = 0.0
    samples = []
    for i in range(frames):
        t0 = time.perf_counter()
        ring.push(scene[i % len(scene)], t)
        ring.read_latest(out, after_seq=-1, timeout=0)
        gate.update(out, t)
        samples.append(time.perf_counter() - t0)
        t += 1 / 30
    return {"lores_loop_ms": round(statistics.median(samples) * 1e3, 4),
            "lores_loop_p95_ms": round(float(np.percentile(samples, 95)) * 1e3, 4)}


def file_capture_ms(*, seconds: float) -> dict[str, float]:
    """Capture-thread cost per frame of a 1080p H.264 file (passthrough: demux, decode, AREA scale to the ring)."""
    import tempfile
    from pathlib import Path

    from doorkeep.device.preroll import PacketRing
    from doorkeep.device.rings import FrameRing
    from doorkeep.device.sources.pyav import PyAVSource
    from doorkeep.device.sources.synthetic import write_video

    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "bench-1080p.mp4")
        write_video(path, seconds=seconds, width=1920, height=1080, fps=30, noise=2)
        src = PyAVSource(path=path, realtime=False)
        src.attach(ring=FrameRing(width=320, height=240), packet_sinks=[PacketRing(seconds=5.0)])
        t0 = time.perf_counter()
        with src:
            src.start()
            src.wait()
        dt = time.perf_counter() - t0
    return {"file_1080p_capture_ms": round(dt / max(1, src.frames) * 1e3, 3)}


def run(*, quick: bool = False) -> dict[str, float]:
    from doorkeep.device.config import CaptureSection

    cap = CaptureSection()
    out = ring_push_ratio(width=cap.lores_width, height=cap.lores_height, label="lores", rounds=5 if quick else 41,
                          per_round=200 if quick else 2000)
    out |= ring_push_ratio(width=1920, height=1080, label="1080p", rounds=5 if quick else 21,
                           per_round=20 if quick else 60)
    out.update(lores_loop_ms(frames=300 if quick else 3000))
    out.update(file_capture_ms(seconds=1.0 if quick else 4.0))
    return out
