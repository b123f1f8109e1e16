"""Fault-test helpers for supervised workers: make a worker raise once, then check what the supervisor does.

Use from any area's tests::

    from worker_faults import raise_once, check_restarted_after_one_crash

    raise_once(publisher._sender, "_step")          # the next call of _sender._step raises RuntimeError
    check_restarted_after_one_crash(publisher._sender, progress=lambda: ring.frames)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from doorkeep.device.supervisor import Supervisor
from doorkeep.device.worker import Worker


class Fault(RuntimeError):
    """The injected failure."""


def wait_until(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def raise_once(obj: Any, method: str, exc: BaseException | None = None) -> None:
    """Replace ``obj.method`` (on the instance) so its next call raises, later calls behave normally."""
    original = getattr(obj, method)
    state = {"armed": True}

    def broken(*a: Any, **kw: Any) -> Any:
        if state["armed"]:
            state["armed"] = False
            raise exc or Fault(f"injected fault in {method}")
        return original(*a, **kw)

    setattr(obj, method, broken)


class Pings:
    """A watchdog that records each ping."""

    def __init__(self) -> None:
        self.count = 0

    def watchdog(self) -> bool:
        self.count += 1
        return True


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def manual(sup: Supervisor) -> tuple[Pings, FakeClock]:
    """Drive an existing supervisor (its thread stopped) by hand: fake clock, recorded pings, 1 s backoff."""
    sup.stop()
    pings, clock = Pings(), FakeClock()
    sup.notifier, sup.clock, sup.backoff_s, sup.capture_stall_s = pings, clock, 1.0, 1e9
    sup._progress_at = clock.t
    return pings, clock


def check_restarted_after_one_crash(worker: Worker, *, sup: Supervisor | None = None, others: tuple[Worker, ...] = (),
                                    progress: Callable[[], int] | None = None,
                                    after_restart: Callable[[], object] | None = None) -> Supervisor:
    """``worker`` (already started, fault armed) crashes once: no watchdog ping while it is down, a restart after
    the backoff, pings again once it runs. ``sup``: a device's own supervisor (driven by hand from here on), else
    a new one watching ``worker`` and ``others``. Returns the supervisor (for more checks)."""
    if sup is None:
        sup = Supervisor(progress=progress)
    sup.add(worker, *others)
    pings, clock = manual(sup)
    wait_until(lambda: worker.failed, what=f"{worker.name} to crash")
    assert isinstance(worker.error, Fault), repr(worker.error)
    assert worker.stats is not None and worker.stats.snapshot()["counters"]["worker_crashes"] >= 1
    assert not sup.check() and pings.count == 0, "watchdog pinged while a worker is down"
    clock.t += 0.5
    assert not sup.check() and pings.count == 0 and worker.restarts == 0
    clock.t += 1.0
    sup.check()
    assert worker.restarts == 1, "not restarted after the backoff"
    wait_until(lambda: worker.alive, what=f"{worker.name} to run again")
    p0 = worker.progress
    wait_until(after_restart or (lambda: worker.progress > p0), what=f"{worker.name} to work again")
    clock.t += 1.0
    assert sup.check() and pings.count == 1, "watchdog not pinged once every worker runs again"
    return sup


def check_exit_requested_after_crash(worker: Worker, *, sup: Supervisor | None = None,
                                     progress: Callable[[], int] | None = None) -> Supervisor:
    """``worker`` cannot be restarted in-process: after its crash the supervisor requests a process exit."""
    if sup is None:
        sup = Supervisor(progress=progress)
    sup.add(worker)
    pings, _clock = manual(sup)
    wait_until(lambda: worker.failed, what=f"{worker.name} to crash")
    assert not sup.check() and pings.count == 0
    assert sup.exit_requested.is_set() and worker.name in sup.exit_reason
    return sup
