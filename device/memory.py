"""Keep a long-running device process's memory flat: pin glibc's mmap threshold.

glibc raises its mmap threshold dynamically: once a large block (an encoded keyframe, a decoded frame) is freed,
blocks up to that size come from the heap instead of mmap. With video's mix of 20 kB and 250 kB buffers and FIFO
lifetimes (the pre-roll) the heap then fragments, and resident memory swings by 10+ MB without leaking. Pinning the
threshold (which also turns off the dynamic adjustment) makes every buffer >= 128 kB an mmap that is returned to the
system on free. Measured in BENCHMARKS.md (Foundation, soak): 1080p30 file, 150 s — RSS range 76–90 MB by
default, 80.4–81.2 MB pinned.

This is process-wide, so the runtime never does it on import: the process owner calls it (``doorkeep run``,
``doorkeep demo``, the soak tool; a vendor's own main).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc malloc.h
DEFAULT_MMAP_THRESHOLD = 128 * 1024


def pin_mmap_threshold(threshold: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Pin glibc's mmap threshold to ``threshold`` bytes; returns False (and does nothing) off glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl, macOS: no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not ok:
        log.warning("mallopt(M_MMAP_THRESHOLD, %d) refused", threshold)
    return ok
