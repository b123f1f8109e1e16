"""Worker base and Supervisor: named threads, bounded stop, crashes recorded, restart with backoff or exit, and the
watchdog fed only while every worker is alive and capture advances."""

from __future__ import annotations

import threading
import time

import pytest
from doorkeep.device.stats import Stats
from doorkeep.device.supervisor import Supervisor
from doorkeep.device.worker import Worker
from worker_faults import FakeClock as Clock
from worker_faults import Pings, wait_until


class Flaky(Worker):
    """Raises on its first ``fail`` passes, then loops marking progress."""

    def __init__(self, *, fail: int = 1, restartable: bool = True, stats: Stats | None = None) -> None:
        super().__init__("flaky", stats=stats, restartable=restartable)
        self.fail = fail
        self.runs = 0
        self.steps = 0

    def _run(self) -> None:
        self.runs += 1
        if self.runs <= self.fail:
            raise RuntimeError(f"boom {self.runs}")
        while not self.stopping:
            self.steps += 1
            self.mark()
            self.wait(0.01)


class Stubborn(Worker):
    """Ignores the stop flag until released (a thread stuck in a blocking call)."""

    def __init__(self) -> None:
        super().__init__("doorkeep-stubborn")
        self.release = threading.Event()

    def _run(self) -> None:
        self.release.wait()


class Queued(Worker):
    """Blocks on a condition; only ``_wake`` gets it out promptly."""

    def __init__(self) -> None:
        super().__init__("queued")
        self.cond = threading.Condition()

    def _run(self) -> None:
        with self.cond:
            while not self.stopping:
                self.cond.wait()  # no timeout: without _wake, stop would time out

    def _wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


def test_worker_is_named_and_stops_within_the_bound() -> None:
    w = Flaky(fail=0)
    w.start()
    wait_until(lambda: w.steps > 2)
    assert w.name == "doorkeep-flaky" and w.alive
    assert w.name in [t.name for t in threading.enumerate()]
    assert w.stop(timeout=2) is True
    assert not w.alive and not w.failed and not w.ended
    assert "doorkeep-flaky" not in [t.name for t in threading.enumerate()]
    assert w.stop() is True  # idempotent


def test_stop_wakes_a_blocked_worker_through_wake() -> None:
    w = Queued()
    w.start()
    wait_until(lambda: w.alive)
    t0 = time.monotonic()
    assert w.stop(timeout=5) is True
    assert time.monotonic() - t0 < 2


def test_stop_is_bounded_and_reports_a_stuck_thread() -> None:
    stats = Stats()
    w = Stubborn()
    w.stats = stats
    w.start()
    t0 = time.monotonic()
    assert w.stop(timeout=0.2) is False
    assert time.monotonic() - t0 < 2
    assert stats.snapshot()["counters"]["worker_stop_timeouts"] == 1
    w.release.set()
    assert w.join(5)


def test_a_crash_is_recorded_and_marks_the_worker_failed() -> None:
    stats = Stats()
    w = Flaky(fail=1, stats=stats)
    w.start()
    wait_until(lambda: w.failed)
    assert not w.alive and isinstance(w.error, RuntimeError)
    snap = stats.snapshot()
    assert snap["counters"]["worker_crashes"] == 1
    assert snap["crashes"]["doorkeep-flaky"] == {"count": 1, "error": "RuntimeError: boom 1"}
    w.restart()
    wait_until(lambda: w.steps > 0)
    assert w.alive and not w.failed and w.error is None and w.restarts == 1
    w.stop()


def _supervised(worker: Worker, **kw: object) -> tuple[Supervisor, Pings, Clock, list[int]]:
    frames = [0]
    pings, clock = Pings(), Clock()
    sup = Supervisor(notifier=pings, progress=lambda: frames[0], clock=clock, **kw)  # type: ignore[arg-type]
    sup.add(worker)
    return sup, pings, clock, frames


def _advance(clock: Clock, frames: list[int], s: float) -> None:
    clock.t += s
    frames[0] += 30


def test_supervisor_restarts_a_crashed_worker_after_backoff_and_no_pings_while_it_is_down() -> None:
    w = Flaky(fail=1)
    sup, pings, clock, frames = _supervised(w, backoff_s=2.0)
    w.start()
    wait_until(lambda: w.failed)
    assert w.stats is sup.stats  # the supervisor lends its stats to workers that have none
    assert sup.check() is False and pings.count == 0  # crashed: no ping, restart scheduled
    _advance(clock, frames, 1.0)
    assert sup.check() is False and pings.count == 0 and w.restarts == 0  # backoff not over
    _advance(clock, frames, 1.5)
    sup.check()  # due: restarted
    assert w.restarts == 1
    wait_until(lambda: w.steps > 0)
    _advance(clock, frames, 1.0)
    assert sup.check() is True and pings.count == 1  # healthy again: pinged
    snap = sup.stats.snapshot()
    assert snap["counters"]["worker_crashes"] == 1 and snap["counters"]["worker_restarts"] == 1
    assert not sup.exit_requested.is_set()
    w.stop()


def test_backoff_doubles_and_repeated_crashes_end_in_an_exit_request() -> None:
    w = Flaky(fail=100)
    sup, pings, clock, frames = _supervised(w, backoff_s=1.0, max_restarts=3)
    w.start()
    delays = []
    for _ in range(3):
        wait_until(lambda: w.failed)
        sup.check()  # schedules
        t_fail = clock.t
        restarts = w.restarts
        for _ in range(100):
            _advance(clock, frames, 0.25)
            sup.check()
            if w.restarts != restarts:
                break
        delays.append(clock.t - t_fail)
    assert delays == [1.0, 2.0, 4.0]
    wait_until(lambda: w.failed)
    sup.check()
    assert sup.exit_requested.is_set() and "doorkeep-flaky" in sup.exit_reason and "3 restarts" in sup.exit_reason
    assert pings.count == 0


def test_a_worker_that_cannot_be_restarted_requests_a_process_exit() -> None:
    w = Flaky(fail=1, restartable=False)
    sup, pings, _clock, _frames = _supervised(w)
    w.start()
    wait_until(lambda: w.failed)
    assert sup.check() is False
    assert sup.exit_requested.is_set() and "cannot be restarted" in sup.exit_reason
    assert w.restarts == 0 and pings.count == 0


def test_no_ping_while_capture_is_not_advancing_or_a_worker_is_hung() -> None:
    w = Flaky(fail=0)
    sup, pings, clock, frames = _supervised(w, stall_s=5.0)
    w.start()
    wait_until(lambda: w.steps > 0)
    assert sup.check() and pings.count == 1
    clock.t += 3  # no new frames, within stall_s: still fine
    assert sup.check() and pings.count == 2
    clock.t += 3  # 6 s without a frame: capture has stopped
    assert not sup.check() and pings.count == 2
    _advance(clock, frames, 1)
    assert sup.check() and pings.count == 3
    w.stop()
    w2 = Stubborn()  # a worker that stopped marking progress (hung in a call) counts as down
    w2.stall_s = 0.05
    sup.add(w2)
    w2.start()
    time.sleep(0.1)
    _advance(clock, frames, 1)
    assert not sup.check() and pings.count == 3
    w2.release.set()
    w2.stop()


def test_a_worker_stopped_on_purpose_is_neither_restarted_nor_unhealthy() -> None:
    w = Flaky(fail=0)
    sup, _pings, clock, frames = _supervised(w)
    w.start()
    w.stop()
    _advance(clock, frames, 1)
    assert sup.check() and w.restarts == 0


def test_supervisor_thread_restarts_a_worker_on_its_own() -> None:
    w = Flaky(fail=1)
    sup = Supervisor(interval_s=0.01, backoff_s=0.01)
    sup.add(w)
    w.start()
    sup.start()
    try:
        wait_until(lambda: w.restarts == 1 and w.steps > 0)
        assert sup.name == "doorkeep-supervisor" and sup.alive
    finally:
        assert sup.stop() and w.stop()


@pytest.mark.parametrize("name", ["x", "doorkeep-x"])
def test_names_are_prefixed_once(name: str) -> None:
    assert Worker(name).name == "doorkeep-x"
