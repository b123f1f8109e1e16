"""FrameRing: wrap, overrun and latest-wins under a real concurrent producer; no allocation per push; lores filters."""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest
from doorkeep.device.rings import FrameRing

W, H = 64, 48


def _stamp(frame: np.ndarray, seq: int) -> None:
    """Write ``seq`` into every pixel of the frame (so a torn frame would show two values)."""
    frame[...] = seq % 251


def test_push_and_latest_wins_single_thread() -> None:
    ring = FrameRing(width=W, height=H, frames=4)
    out = ring.empty_frame()
    assert ring.read_latest(out, timeout=0) is None
    for seq in range(10):  # wraps 2.5 times
        f = np.full(ring.shape, seq, np.uint8)
        assert ring.push(f, t_capture=float(seq), t_wall=100.0 + seq) == seq
    info = ring.read_latest(out, after_seq=-1, timeout=0)
    assert info is not None and info.seq == 9 and info.t_capture == 9.0 and info.t_wall == 109.0
    assert (out == 9).all()
    assert ring.read_latest(out, after_seq=9, timeout=0) is None  # nothing newer
    ring.push(np.full(ring.shape, 10, np.uint8), 10.0)
    info = ring.read_latest(out, after_seq=5, timeout=0)
    assert info is not None and info.seq == 10 and info.skipped == 4  # 6..9 were superseded
    assert ring.frames == 11


def test_begin_write_commit_in_place_and_filters_run_before_readers() -> None:
    def mask(frame: np.ndarray) -> None:
        frame[:H // 2, : W // 2] = 0

    ring = FrameRing(width=W, height=H, frames=3, lores_filters=[mask])
    slot = ring.begin_write()
    slot[...] = 200
    ring.commit(1.0)
    out = ring.empty_frame()
    info = ring.read_latest(out, timeout=0)
    assert info is not None and info.seq == 0
    assert (out[: H // 2, : W // 2] == 0).all() and (out[H // 2 :] == 200).all()
    y, u, v = ring.begin_write_planes()
    assert y.shape == (H, W) and u.shape == v.shape == (H // 2, W // 2)
    assert np.shares_memory(y, ring._buf) and np.shares_memory(v, ring._buf)


def test_concurrent_producer_never_torn_latest_wins_and_counters() -> None:
    """A producer thread pushing flat out; a slow reader must only ever get whole, increasing frames."""
    ring = FrameRing(width=W, height=H, frames=3)
    total = 3000
    done = threading.Event()

    def produce() -> None:
        for seq in range(total):
            _stamp(ring.begin_write(), seq)
            ring.commit(float(seq))
        done.set()

    producer = threading.Thread(target=produce)
    out = ring.empty_frame()
    got: list[int] = []
    producer.start()
    last = -1
    while not (done.is_set() and ring.latest_seq == last):
        info = ring.read_latest(out, after_seq=last, timeout=0.5)
        if info is None:
            continue
        assert info.seq > last, "latest-wins reader went backwards"
        assert (out == info.seq % 251).all(), f"torn frame at seq {info.seq}"
        assert info.t_capture == float(info.seq)
        got.append(info.seq)
        last = info.seq
        time.sleep(0.0005)  # slower than the producer: forces skips and overwrites
    producer.join()
    assert got[-1] == total - 1  # the reader ends on the newest frame
    assert ring.frames == total
    assert ring.skipped == total - len(got) - got[0]  # every frame was read or counted as skipped
    assert len(got) < total  # the reader really fell behind (latest-wins dropped frames)


def test_seqlock_never_returns_a_torn_frame_while_the_producer_laps_the_reader() -> None:
    """The seqlock check under real parallelism: 1080p frames, so numpy copies and fills them with the GIL
    released and the producer really does rewrite the slot a reader is copying (counted in ``overruns``). Without
    the check in read_latest such an overrun comes back as a torn frame (two stamps in one frame); with it the
    reader retries. The run lasts until enough overruns were seen, so a loaded machine only makes it longer."""
    ring = FrameRing(width=1920, height=1080, frames=2)
    stop = threading.Event()

    def produce() -> None:
        seq = 0
        while not stop.is_set():
            _stamp(ring.begin_write(), seq)  # ~3 MB fill, GIL released
            ring.commit(float(seq))
            seq += 1

    producer = threading.Thread(target=produce, daemon=True)
    out = ring.empty_frame()
    reads, last = 0, -1
    producer.start()
    deadline = time.monotonic() + 60
    try:
        while ring.overruns < 30 and reads < 5000 and time.monotonic() < deadline:
            info = ring.read_latest(out, after_seq=-1, timeout=5)  # the newest, whether seen or not
            assert info is not None
            assert info.seq >= last, "latest-wins reader went backwards"
            assert (out == info.seq % 251).all(), f"torn frame at seq {info.seq} (overruns so far {ring.overruns})"
            reads, last = reads + 1, info.seq
    finally:
        stop.set()
        producer.join(10)
    assert ring.overruns >= 30, f"the producer lapped the reader only {ring.overruns} times in {reads} reads"


class _PausingNumpy:
    """numpy, except that the first ``copyto`` on the reader thread stops halfway until the test resumes it: a
    reader preempted in the middle of copying a frame, made deterministic."""

    def __init__(self) -> None:
        self.reader: threading.Thread | None = None
        self.half = threading.Event()
        self.resume = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(np, name)

    def copyto(self, dst: np.ndarray, src: np.ndarray) -> None:
        if threading.current_thread() is self.reader and not self.half.is_set():
            n = len(dst) // 2
            np.copyto(dst[:n], src[:n])
            self.half.set()
            assert self.resume.wait(30)
            np.copyto(dst[n:], src[n:])
        else:
            np.copyto(dst, src)


def test_seqlock_a_slot_rewritten_during_a_copy_is_never_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleaving the seqlock exists for, step by step: a reader is halfway through copying frame 0 when the
    producer commits frame 1 and starts rewriting frame 0's slot (it has filled it but not committed: its lores
    filter, the privacy mask, is still to run). The reader must notice and return frame 1, whole — not half of
    frame 0 and half of an unmasked, uncommitted frame."""
    from doorkeep.device import rings

    shim = _PausingNumpy()
    monkeypatch.setattr(rings, "np", shim)
    ring = FrameRing(width=W, height=H, frames=2)
    _stamp(ring.begin_write(), 0)
    ring.commit(0.0)
    got: list[tuple[int, np.ndarray]] = []

    def read() -> None:
        out = ring.empty_frame()
        info = ring.read_latest(out, after_seq=-1, timeout=5)
        assert info is not None
        got.append((info.seq, out))

    shim.reader = threading.Thread(target=read, daemon=True)
    shim.reader.start()
    assert shim.half.wait(30)  # the reader holds half of frame 0
    _stamp(ring.begin_write(), 1)
    ring.commit(1.0)  # frame 1 in slot 1
    _stamp(ring.begin_write(), 2)  # slot 0 rewritten, not committed
    shim.resume.set()
    shim.reader.join(30)
    ring.commit(2.0)
    assert ring.overruns == 1
    ((seq, out),) = got
    assert seq == 1 and (out == 1).all(), f"got seq {seq} holding values {np.unique(out).tolist()}"


def test_seqlock_a_slot_rewritten_by_push_during_a_copy_is_never_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same interleaving through ``push`` (the path a decoded frame takes): the reader is halfway through frame 0
    when the producer pushes frame 1 and then copies frame 2 into frame 0's slot, and is still running that slot's
    lores filter (the privacy mask) when the reader finishes. The reader must return frame 1 whole — not half of
    frame 0 and half of frame 2 before its mask."""
    from doorkeep.device import rings

    shim = _PausingNumpy()
    monkeypatch.setattr(rings, "np", shim)
    in_filter, release = threading.Event(), threading.Event()

    def mask(slot: np.ndarray) -> None:
        if slot[0, 0] == 2:  # frame 2: copied in, not yet masked nor committed
            in_filter.set()
            assert release.wait(30)

    ring = FrameRing(width=W, height=H, frames=2, lores_filters=[mask])
    ring.push(np.full(ring.shape, 0, np.uint8), 0.0)
    got: list[tuple[int, np.ndarray]] = []

    def read() -> None:
        out = ring.empty_frame()
        info = ring.read_latest(out, after_seq=-1, timeout=5)
        assert info is not None
        got.append((info.seq, out))

    shim.reader = threading.Thread(target=read, daemon=True)
    shim.reader.start()
    assert shim.half.wait(30)  # the reader holds half of frame 0
    ring.push(np.full(ring.shape, 1, np.uint8), 1.0)  # frame 1 in slot 1
    producer = threading.Thread(target=ring.push, args=(np.full(ring.shape, 2, np.uint8), 2.0), daemon=True)
    producer.start()
    assert in_filter.wait(30)  # slot 0 holds frame 2, unmasked, uncommitted
    shim.resume.set()
    shim.reader.join(30)
    release.set()
    producer.join(30)
    ((seq, out),) = got
    assert seq == 1 and (out == 1).all(), f"got seq {seq} holding values {np.unique(out).tolist()}"


def test_overrun_counted_when_producer_laps_a_reader() -> None:
    ring = FrameRing(width=W, height=H, frames=2)
    ring.push(np.zeros(ring.shape, np.uint8), 0.0)
    # Simulate a reader in the middle of copying slot 0 while the producer laps it.
    ring._reading[0] += 1
    ring.push(np.zeros(ring.shape, np.uint8), 1.0)  # slot 1
    ring.push(np.zeros(ring.shape, np.uint8), 2.0)  # slot 0 again: overrun
    ring._reading[0] -= 1
    assert ring.overruns == 1


def test_no_allocation_per_push() -> None:
    ring = FrameRing(width=320, height=240, frames=4)
    frame = np.full(ring.shape, 7, np.uint8)
    for i in range(50):  # warm up (first-call caches)
        ring.push(frame, float(i))
        ring.begin_write()
        ring.commit(float(i))
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        for i in range(2000):
            ring.push(frame, float(i), 1.0)
            ring.begin_write_planes()
            ring.commit(float(i), 1.0)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current - base < 1024, f"ring grew by {current - base} bytes over 4000 pushes"
    assert peak - base < 4096, f"a push allocated {peak - base} bytes (a frame is {frame.nbytes})"


def test_ring_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError):
        FrameRing(width=W, height=H, frames=1)
    with pytest.raises(ValueError):
        FrameRing(width=63, height=H)
    ring = FrameRing(width=W, height=H)
    with pytest.raises(RuntimeError):
        ring.commit(0.0)


def test_a_blocked_reader_is_woken_by_the_next_commit() -> None:
    """A reader waiting without a timeout returns as soon as a frame is committed (commit notifies waiters)."""
    ring = FrameRing(width=W, height=H, frames=2)
    got: list[int] = []
    waiting = threading.Event()

    def read() -> None:
        waiting.set()
        info = ring.read_latest(ring.empty_frame(), after_seq=-1, timeout=None)
        got.append(-1 if info is None else info.seq)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert waiting.wait(10)
    while ring._waiting == 0:  # the reader is inside the wait, not on its way to it
        time.sleep(0.001)
    ring.push(np.full(ring.shape, 3, np.uint8), 1.0)
    reader.join(20)
    assert got == [0], "the reader slept through the commit"


def test_fps_over_the_frames_in_the_ring() -> None:
    ring = FrameRing(width=W, height=H, frames=4)
    assert ring.fps() == 0.0
    for i in range(6):  # 10 fps; the ring keeps the last 4 frames
        ring.push(np.zeros(ring.shape, np.uint8), 100.0 + i / 10)
    assert ring.fps() == pytest.approx(10.0)
