"""``Supervisor``: watches every :class:`~doorkeep.device.worker.Worker` and feeds the systemd watchdog.

Once per ``interval_s`` it checks each registered worker:

* **failed** (crashed) or **ended** by itself: a ``restartable`` worker is restarted after a backoff (``backoff_s``
  doubling per recent restart, capped at ``max_backoff_s``); after ``max_restarts`` restarts within ``window_s``, or
  for a worker that cannot be restarted, the supervisor gives up: it sets :attr:`exit_requested` (with
  :attr:`exit_reason`) and the service exits non-zero so systemd restarts the whole process;
* **stalled** (``stall_s`` set and no :meth:`~Worker.mark` for that long): counted as unhealthy, never restarted
  (its thread still runs; only a process restart can recover a hung thread — the watchdog does that).

It pings the watchdog (``WATCHDOG=1``) only when every worker is alive and not stalled **and** capture is advancing
(``progress()`` — the ring's frame count — grew within ``stall_s``). A dead outbox, heartbeat, recorder or camera
therefore stops the pings, and systemd restarts the service after ``WatchdogSec``.

A worker that ended cleanly while not being restartable (a file source at its end) is not a failure: the service
notices the source finishing by itself. The supervisor is itself a worker (``doorkeep-supervisor``); if it dies,
the pings stop too.

Example::

    sup = Supervisor(stats=stats, notifier=Notifier.from_env(), progress=lambda: ring.frames)
    sup.add(loop.detect_worker, loop.events_worker, publisher.sender, ...)
    sup.start()
    exit_requested = sup.exit_requested.wait()   # or poll it alongside a stop signal
    sup.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from .stats import Stats
from .worker import Worker

log = logging.getLogger(__name__)


class Watchdog(Protocol):
    """What the supervisor needs of :class:`~doorkeep.device.sd_notify.Notifier`."""

    def watchdog(self) -> bool: ...


class Supervisor(Worker):
    """Restarts failed workers with backoff (or requests a process exit) and pings the watchdog while healthy.

    Args:
        stats: crashes, ``worker_restarts`` and ``watchdog_pings`` go here; given to registered workers without one.
        notifier: the systemd notifier (``None``: no watchdog, e.g. in a test or off systemd).
        progress: ``() -> int`` that grows while capture runs (``lambda: ring.frames``); ``None``: not checked.
        interval_s: seconds between checks. stall_s: capture counts as stopped after this long without progress.
        backoff_s, max_backoff_s: first restart delay and its cap (doubling per restart within ``window_s``).
        max_restarts: restarts of one worker within ``window_s`` before giving up (exit requested).
        clock: monotonic clock (tests pass their own and call :meth:`check` directly).
        discover: ``() -> workers`` asked on every check, for parts whose workers come and go (the vault's clip
            writer exists only once an owner is pinned); they are added like :meth:`add`.
    """

    def __init__(self, *, stats: Stats | None = None, notifier: Watchdog | None = None,
                 progress: Callable[[], int] | None = None, interval_s: float = 1.0, stall_s: float = 10.0,
                 backoff_s: float = 1.0, max_backoff_s: float = 60.0, max_restarts: int = 5,
                 window_s: float = 600.0, clock: Callable[[], float] = time.monotonic,
                 discover: Callable[[], Iterable[Worker]] | None = None) -> None:
        self.stats: Stats = stats or Stats()
        super().__init__("supervisor", stats=self.stats, restartable=False)
        self.notifier = notifier
        self.progress_fn = progress
        self.interval_s = interval_s
        self.capture_stall_s = stall_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.clock = clock
        self.discover = discover
        #: Set when a failure can only be cured by restarting the process; ``exit_reason`` says which.
        self.exit_requested = threading.Event()
        self.exit_reason = ""
        #: Result of the last :meth:`check`: every worker alive and capture advancing.
        self.healthy = False
        self.pings = 0
        self._workers: list[Worker] = []
        self._restart_times: dict[str, list[float]] = {}
        self._due: dict[str, float] = {}
        self._last_progress: int | None = None
        self._progress_at = clock()
        self._wlock = threading.Lock()

    def add(self, *workers: Worker) -> None:
        """Register workers (started or not yet); those without ``stats`` get the supervisor's."""
        with self._wlock:
            for w in workers:
                if w.stats is None:
                    w.stats = self.stats
                    if w.failed and w.error is not None:  # crashed before anyone could count it
                        self.stats.record_crash(w.name, w.error)
                if w not in self._workers:
                    self._workers.append(w)

    def remove(self, worker: Worker) -> None:
        with self._wlock:
            if worker in self._workers:
                self._workers.remove(worker)

    @property
    def workers(self) -> list[Worker]:
        """Registered workers (and those ``discover`` returns now)."""
        if self.discover is not None:
            self.add(*self.discover())
        with self._wlock:
            return list(self._workers)

    # ------------------------------------------------------------------------------------------------ checks

    def check(self) -> bool:
        """One pass: handle failed workers, then ping the watchdog if everything is healthy. Returns health."""
        now = self.clock()
        healthy = True
        for w in self.workers:
            if w.stopping:  # being stopped on purpose (device shutting down)
                continue
            if w.failed or w.ended:
                healthy = False
                self._handle_down(w, now)
            elif not w.alive:
                healthy = False  # not started yet, or ended cleanly and not restartable (a file at its end)
            elif w.stalled():
                healthy = False
                log.warning("%s has made no progress for %.0f s", w.name, time.monotonic() - w.last_progress)
        if not self._capture_advancing(now):
            healthy = False
        self.healthy = healthy and not self.exit_requested.is_set()
        if self.healthy and self.notifier is not None and self.notifier.watchdog():
            self.pings += 1
        return self.healthy

    def _capture_advancing(self, now: float) -> bool:
        if self.progress_fn is None:
            return True
        value = self.progress_fn()
        if value != self._last_progress:
            self._last_progress = value
            self._progress_at = now
            return True
        return now - self._progress_at <= self.capture_stall_s

    def _handle_down(self, w: Worker, now: float) -> None:
        what = f"{w.name} {'crashed: ' + repr(w.error) if w.failed else 'ended unexpectedly'}"
        if not w.restartable:
            if w.failed:
                self._give_up(f"{what} (cannot be restarted in-process)")
            return
        recent = [t for t in self._restart_times.get(w.name, []) if now - t < self.window_s]
        self._restart_times[w.name] = recent
        if len(recent) >= self.max_restarts:
            self._give_up(f"{what}; {len(recent)} restarts within {self.window_s:.0f} s")
            return
        due = self._due.get(w.name)
        if due is None:
            delay = min(self.max_backoff_s, self.backoff_s * (2 ** len(recent)))
            self._due[w.name] = now + delay
            log.error("%s; restarting in %.1f s", what, delay)
            return
        if now >= due:
            del self._due[w.name]
            recent.append(now)
            self.stats.count("worker_restarts")
            log.warning("restarting %s (restart %d within %.0f s)", w.name, len(recent), self.window_s)
            w.restart()

    def _give_up(self, reason: str) -> None:
        if not self.exit_requested.is_set():
            self.exit_reason = reason
            log.critical("%s: exiting so that the service manager restarts the process", reason)
            self.exit_requested.set()

    # ------------------------------------------------------------------------------------------------ thread

    def _crashed(self, exc: BaseException) -> None:
        self._give_up(f"{self.name} crashed: {exc!r}")  # nobody watches the watcher: restart the process

    def _run(self) -> None:
        while not self.stopping:
            self.check()
            self.mark()
            self.wait(self.interval_s)
