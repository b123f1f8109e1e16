"""``Worker``: the one base for every long-running doorkeep thread.

Every thread that lives as long as the device (capture, detect, events, outbox sender, heartbeat, clip writer,
owner channel, ...) is a :class:`Worker`, so they all behave the same way:

* **named** ``doorkeep-<x>`` (``ps -L``/``py-spy`` show which one is busy; the prefix is added if missing);
* :meth:`~Worker.start` / :meth:`~Worker.stop` — ``stop(timeout=...)`` sets the stop event, calls :meth:`~Worker._wake`
  (so a thread blocked on a queue or a condition returns at once) and joins **with a bound**; it returns whether the
  thread ended, and a thread that did not is logged and counted (``worker_stop_timeouts``);
* a **catch-all**: an exception escaping :meth:`~Worker._run` is logged once with its traceback, recorded in
  :class:`~doorkeep.device.stats.Stats` (``worker_crashes`` and the worker/exception under ``crashes`` in the
  snapshot) and marks the worker ``failed`` (``error`` holds the exception, ``alive`` is False);
* optional **progress marks** (:meth:`~Worker.mark`): a worker with ``stall_s`` set is judged hung by the
  supervisor when it has not marked progress for that long.

The :class:`~doorkeep.device.supervisor.Supervisor` watches registered workers: it restarts a failed ``restartable``
worker with backoff (via :meth:`~Worker.restart`) or asks the process to exit so systemd restarts it, and pings the
systemd watchdog only while every worker is alive and capture is advancing.

Subclassing (the stable API — keep to these names)::

    class Ticker(Worker):
        stall_s = 30.0                     # optional: the supervisor flags me hung after 30 s without mark()

        def __init__(self, queue, *, stats=None):
            super().__init__("ticker", stats=stats)          # thread name "doorkeep-ticker"
            self.queue = queue

        def _run(self) -> None:            # runs until stop(); an exception here is recorded, never silent
            while not self.stopping:
                item = self.queue.get()    # blocking is fine: _wake() unblocks it
                if item is None:
                    continue
                handle(item)
                self.mark()                # progress for the supervisor
                self.wait(0.1)             # sleeps, returns True at once when stop() is called

        def _wake(self) -> None:           # called by stop() after the stop flag is set
            self.queue.put(None)

    t = Ticker(q, stats=stats)
    t.start()
    ...
    ended = t.stop(timeout=5)              # False: the thread is stuck (logged and counted)

Attributes read by supervisors and tests: ``name``, ``alive``, ``failed``, ``error``, ``ended`` (``_run`` returned
by itself, without a stop), ``stopping``, ``progress`` (count of marks), ``last_progress`` (monotonic time),
``restartable``, ``restarts``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .stats import Stats

log = logging.getLogger(__name__)

PREFIX = "doorkeep-"

#: Default bound of :meth:`Worker.stop`'s join.
STOP_TIMEOUT_S = 5.0


class Worker:
    """A supervised thread running :meth:`_run` until :meth:`stop`. Subclass and implement ``_run``.

    Args:
        name: thread name; ``doorkeep-`` is prefixed if missing.
        stats: where crashes and stop timeouts are recorded (a supervisor fills it in when ``None``).
        restartable: the supervisor may run ``_run`` again after a crash (``False``: the process must exit —
            e.g. a camera whose state cannot be rebuilt in-process).

    Class attributes: ``stall_s`` (``None``: no hang detection; else the supervisor treats a worker that has not
    called :meth:`mark` for this long as hung).
    """

    stall_s: float | None = None

    def __init__(self, name: str, *, stats: Stats | None = None, restartable: bool = True) -> None:
        self.name = name if name.startswith(PREFIX) else PREFIX + name
        self.stats = stats
        self.restartable = restartable
        self.failed = False
        self.error: BaseException | None = None
        self.ended = False
        self.restarts = 0
        self.progress = 0
        self.last_progress = time.monotonic()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------------ state

    @property
    def alive(self) -> bool:
        """The thread is running and has not failed."""
        t = self._thread
        return t is not None and t.is_alive() and not self.failed

    @property
    def started(self) -> bool:
        """:meth:`start` was called and :meth:`stop` not yet."""
        return self._thread is not None

    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called: ``_run`` should return soon."""
        return self._stop_event.is_set()

    def stalled(self, now: float | None = None) -> bool:
        """The worker has ``stall_s`` set and has not marked progress for that long."""
        if self.stall_s is None or not self.alive:
            return False
        return (time.monotonic() if now is None else now) - self.last_progress > self.stall_s

    # -------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the thread (no-op if it is running)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._launch()

    def restart(self) -> None:
        """Run ``_run`` again on a new thread after it failed or ended (the supervisor calls this)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.restarts += 1
            self._launch()

    def _launch(self) -> None:
        self._stop_event.clear()
        self.failed = False
        self.error = None
        self.ended = False
        self.last_progress = time.monotonic()
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = STOP_TIMEOUT_S) -> bool:
        """Ask the thread to end, wake it, and join for at most ``timeout`` s. Idempotent.

        Returns True when the thread has ended (or never ran); False when it is still running after ``timeout``
        (logged, and counted as ``worker_stop_timeouts``). Called from the worker's own thread it does not join.
        """
        self._stop_event.set()
        try:
            self._wake()
        except Exception:
            log.exception("%s: wake on stop failed", self.name)
        with self._lock:
            t = self._thread
        if t is None or t is threading.current_thread():
            return True
        t.join(timeout)
        if t.is_alive():
            log.error("%s did not stop within %.1f s", self.name, timeout or 0.0)
            if self.stats is not None:
                self.stats.count("worker_stop_timeouts")
            return False
        with self._lock:
            if self._thread is t:
                self._thread = None
        return True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end by itself (no stop request). True if it has ended."""
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
            return not t.is_alive()
        return True

    # ------------------------------------------------------------------------------------- for the thread

    def wait(self, timeout: float | None) -> bool:
        """Sleep up to ``timeout`` s; returns True (at once) when stop was requested."""
        return self._stop_event.wait(timeout)

    def mark(self) -> None:
        """Record progress (cheap: two stores). Workers with ``stall_s`` must call this regularly."""
        self.progress += 1
        self.last_progress = time.monotonic()

    # ----------------------------------------------------------------------------------------- for subclasses

    def _run(self) -> None:
        """The thread body: loop until :attr:`stopping`. Exceptions escaping it are recorded as a crash."""
        raise NotImplementedError

    def _wake(self) -> None:
        """Unblock ``_run`` after the stop flag is set (put a sentinel, notify a condition). Default: nothing —
        :meth:`wait` already returns on stop."""

    def _crashed(self, exc: BaseException) -> None:
        """Called on the worker thread after a crash was recorded (e.g. a source sets its ``error``)."""

    # ------------------------------------------------------------------------------------------------ internal

    def _main(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the catch-all: every crash is recorded, never silent
            self.error = exc
            log.exception("%s crashed", self.name)
            if self.stats is not None:
                self.stats.record_crash(self.name, exc)
            try:
                self._crashed(exc)
            except Exception:
                log.exception("%s: crash handler failed", self.name)
            self.failed = True  # last: whoever sees ``failed`` also sees the crash recorded
        else:
            self.ended = not self.stopping

    def __repr__(self) -> str:
        state = "failed" if self.failed else "alive" if self.alive else "ended" if self.ended else "stopped"
        return f"<{type(self).__name__} {self.name} {state}>"
