"""Timing helpers shared by the ``bench_*`` modules."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_ms(fn: Callable[[], object], n: int) -> float:
    """Median wall time of ``n`` calls of ``fn``, in milliseconds."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


_PEAK_CHILD = r"""
import gc, json, re, sys, time
from pathlib import Path

def kb(key):
    return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1))

env = {}
exec(sys.argv[1], env)
gc.collect()
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
base = kb("VmRSS")
t0 = time.perf_counter()
exec(sys.argv[2], env)
dt = time.perf_counter() - t0
print(json.dumps({"peak_mb": (kb("VmHWM") - base) / 1024, "idle_mb": base / 1024, "seconds": dt}))
"""


def peak_rss_above_idle(setup: str, op: str, *, extra_path: str = "", timeout: float = 900) -> dict[str, float]:
    """Peak memory of one operation, from /proc, in a fresh interpreter: run ``setup`` (Python source: imports,
    opening things), reset the kernel's RSS high-water mark, note the RSS, run ``op``, and report ``peak_mb`` (the
    peak RSS above that idle figure), ``idle_mb`` and ``seconds`` (the op's wall time). Linux only."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (extra_path, os.environ.get("PYTHONPATH", "")) if p)}
    out = subprocess.run([sys.executable, "-c", _PEAK_CHILD, setup, op], capture_output=True, text=True, env=env,
                         timeout=timeout, check=False)
    if out.returncode != 0:
        from doorkeep.device.errors import DoorkeepError

        raise DoorkeepError(f"memory probe failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
