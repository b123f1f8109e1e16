"""FrameRing: the last N lores frames in preallocated memory; one producer that never blocks, latest-wins readers.

The capture thread writes straight into the next slot (``begin_write`` → fill → ``commit``) or copies a finished
frame in (``push``). Lores filters (privacy masks) run on the slot *before* commit, so no reader ever sees
unmasked pixels. Readers copy the newest committed frame into their own buffer with :meth:`FrameRing.read_latest`;
the copy is checked seqlock-style, so a slot overwritten mid-copy is detected and retried, never returned torn.

Nothing is allocated per frame: slots, their views and the per-slot sequence/timestamp arrays are made once.

Example::

    ring = FrameRing(width=320, height=240, frames=8)
    slot = ring.begin_write(); slot[...] = 128; ring.commit(time.monotonic())
    out = ring.empty_frame()
    info = ring.read_latest(out, after_seq=-1, timeout=1.0)   # FrameInfo(seq=0, t_capture=..., t_wall=...)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InvalidArgument, UsageError
from .frames import chroma_planes, i420_shape

#: A lores filter edits an I420 frame array in place (a privacy mask, for example).
FrameFilter = Callable[[np.ndarray], None]


@dataclass(frozen=True, slots=True)
class FrameInfo:
    """What a reader got: the frame's sequence number (0, 1, 2, ... per commit) and capture times."""

    seq: int
    t_capture: float
    t_wall: float
    #: Frames committed since the reader's ``after_seq`` that it never saw (latest-wins skips).
    skipped: int = 0


class FrameRing:
    """Preallocated ring of ``frames`` lores I420 frames of ``width`` x ``height``.

    Args:
        width, height: lores frame size in pixels (even).
        frames: number of slots (>= 2). More slots give slow readers more time before their frame is overwritten.
        lores_filters: callables ``f(frame)`` applied in place to every slot before it is committed.

    Counters (plain ints, read any time): ``frames`` committed, ``overruns`` (the producer overwrote a slot a
    reader was copying; the reader retried), ``skipped`` (frames superseded before any reader took them).
    """

    def __init__(self, *, width: int, height: int, frames: int = 8, lores_filters: Sequence[FrameFilter] = ()) -> None:
        if frames < 2:
            raise InvalidArgument(f"FrameRing needs at least 2 frames, got {frames}")
        self.width = width
        self.height = height
        self.shape = i420_shape(width, height)
        self.size = frames
        self.lores_filters: tuple[FrameFilter, ...] = tuple(lores_filters)
        self._buf = np.zeros((frames, *self.shape), dtype=np.uint8)
        self._slots: list[np.ndarray] = [self._buf[i] for i in range(frames)]
        self._planes = [(s[:height], *chroma_planes(s, width, height)) for s in self._slots]
        # Per-slot sequence (-1: empty or being written), capture times, and readers currently copying it. Plain
        # lists, not numpy arrays: the producer touches them on every frame, and a list item costs a fraction of a
        # numpy scalar access (BENCHMARKS.md, ring_push_ratio_lores).
        self._seq = [-1] * frames
        self._t_capture = [0.0] * frames
        self._t_wall = [0.0] * frames
        self._reading = [0] * frames
        self._next_seq = 0
        self._writing = -1
        self._latest = -1
        # The producer takes the bare lock (a C call); readers wait on a Condition over it, and commit notifies only
        # when a reader is waiting (``_waiting``), so an unwatched ring pays no Python-level notify per frame.
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._waiting = 0
        self.overruns = 0
        self.skipped = 0

    @property
    def frames(self) -> int:
        """Frames committed so far."""
        return self._next_seq

    # ------------------------------------------------------------------------------------------------ producer

    def begin_write(self) -> np.ndarray:
        """Claim the next slot and return it (a view of shape ``(h*3/2, w)``) for the producer to fill in place."""
        i = self._next_seq % self.size
        # No lock: only the producer writes ``_seq``, ``_next_seq`` and ``overruns``, and one list store is atomic
        # under the GIL. A reader holding this slot checks ``_seq[i]`` under the lock after its copy, so it sees
        # the -1 stored here whenever the rewrite began before its check (the seqlock).
        if self._reading[i]:
            self.overruns += 1
        self._seq[i] = -1  # readers that copy this slot from now on see it change and retry
        self._writing = i
        return self._slots[i]

    def begin_write_planes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like :meth:`begin_write` but returns the slot's (Y, U, V) plane views (precomputed, no allocation)."""
        self.begin_write()
        return self._planes[self._writing]

    def commit(self, t_capture: float, t_wall: float | None = None) -> int:
        """Publish the slot from :meth:`begin_write` (after running the lores filters on it); returns its seq."""
        i = self._writing
        if i < 0:
            raise UsageError("FrameRing.commit() without begin_write()")
        self._writing = -1
        return self._publish(i, t_capture, t_wall)

    def push(self, frame: np.ndarray, t_capture: float, t_wall: float | None = None) -> int:
        """Copy a finished I420 ``frame`` into the next slot and commit it; returns its seq."""
        # begin_write inlined: at the lores size the copy takes a few microseconds, so every Python call counts
        # (BENCHMARKS.md, ring_push_ratio_lores).
        i = self._next_seq % self.size
        if self._reading[i]:
            self.overruns += 1
        self._seq[i] = -1  # as in begin_write
        np.copyto(self._slots[i], frame)
        return self._publish(i, t_capture, t_wall)

    def _publish(self, i: int, t_capture: float, t_wall: float | None) -> int:
        if self.lores_filters:
            slot = self._slots[i]
            for f in self.lores_filters:
                f(slot)
        if t_wall is None:
            t_wall = time.time()
        with self._lock:
            seq = self._next_seq
            self._seq[i] = seq
            self._t_capture[i] = t_capture
            self._t_wall[i] = t_wall
            self._latest = i
            self._next_seq = seq + 1
            if self._waiting:
                self._cond.notify_all()
        return seq

    # ------------------------------------------------------------------------------------------------- readers

    def empty_frame(self) -> np.ndarray:
        """A new buffer of the ring's frame shape, for :meth:`read_latest`. Allocate once per reader."""
        return np.zeros(self.shape, dtype=np.uint8)

    @property
    def latest_seq(self) -> int:
        """Sequence number of the newest committed frame (-1 before the first)."""
        return self._next_seq - 1

    def read_latest(self, out: np.ndarray, *, after_seq: int = -1, timeout: float | None = None) -> FrameInfo | None:
        """Copy the newest frame newer than ``after_seq`` into ``out``; wait up to ``timeout`` s for one.

        Returns ``None`` on timeout. Never returns a frame the producer overwrote while it was being copied.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._cond:
                while self._next_seq - 1 <= after_seq or self._latest < 0:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._waiting += 1
                    try:
                        self._cond.wait(remaining)
                    finally:
                        self._waiting -= 1
                i = self._latest
                seq = self._seq[i]
                self._reading[i] += 1
            np.copyto(out, self._slots[i])
            with self._cond:
                self._reading[i] -= 1
                if self._seq[i] == seq:  # the seqlock check: nobody began rewriting the slot during the copy
                    skipped = max(0, seq - after_seq - 1) if after_seq >= 0 else 0
                    self.skipped += skipped
                    return FrameInfo(seq, self._t_capture[i], self._t_wall[i], skipped)
            # Overwritten during the copy: take the newer frame instead.

    def fps(self) -> float:
        """Capture rate over the frames now in the ring (no bookkeeping on the producer's path)."""
        with self._lock:
            t = [tc for sq, tc in zip(self._seq, self._t_capture, strict=True) if sq >= 0]
        if len(t) < 2:
            return 0.0
        span = max(t) - min(t)
        return (len(t) - 1) / span if span > 0 else 0.0

    def wake_readers(self) -> None:
        """Wake blocked readers (used on stop so a worker notices promptly)."""
        with self._cond:
            self._cond.notify_all()
