"""The allocator pin used by long-running commands (device/memory.py): freed frame-sized buffers go back to the
system, measured in RSS, not trusted from mallopt's return value."""

from __future__ import annotations

import json
import subprocess
import sys

# Child process (the pin is process-wide): 50 MB of 256 kB buffers, each followed by a small long-lived block (the
# pre-roll's FIFO lifetimes), after a 1 MB buffer was freed — which, unpinned, raises glibc's dynamic mmap threshold
# so the 256 kB buffers land on the heap between the small blocks and stay resident after free.
_CHILD = r"""
import ctypes, ctypes.util, json, re, sys
from pathlib import Path

def rss_mb():
    return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
libc.free.argtypes = (ctypes.c_void_p,)
pinned = False
if sys.argv[1] == "pin":
    from doorkeep.device.memory import pin_mmap_threshold
    pinned = pin_mmap_threshold()
p = libc.malloc(1 << 20); ctypes.memset(p, 1, 1 << 20); libc.free(p)
base = rss_mb()
big, small = [], []
for _ in range(200):
    b = libc.malloc(256 << 10); ctypes.memset(b, 1, 256 << 10); big.append(b)
    small.append(libc.malloc(4000))
peak = rss_mb()
for b in big:
    libc.free(b)
print(json.dumps({"pinned": pinned, "grew": peak - base, "retained": rss_mb() - base}))
"""


def _run(mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_pinned_threshold_returns_freed_frame_buffers_to_the_system() -> None:
    pinned = _run("pin")
    assert pinned["pinned"]  # glibc (Debian, Raspberry Pi OS) accepts it
    assert pinned["grew"] > 45  # the 50 MB of buffers really were resident ...
    assert pinned["retained"] < 5, f"{pinned['retained']:.1f} MB of freed 256 kB buffers stayed resident"
    # ... and the probe can tell: without the pin the same pattern keeps most of it
    unpinned = _run("none")
    assert unpinned["retained"] > 25, f"the probe no longer shows the fragmentation ({unpinned})"
