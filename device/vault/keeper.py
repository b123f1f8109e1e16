"""``doorkeep-vault-keeper``: retention on a timer and on a full disk, fault retries, the space reserve.

The clip writer only writes; everything slow or recurring about the vault's storage happens here, on one supervised
thread:

* **retention** every ``interval_s`` (age and size limits hold even when no clip is being recorded), and at once when
  a write met ENOSPC/EDQUOT (:meth:`VaultKeeper.need_space`): the oldest clips are shredded until the disk has
  ``headroom`` bytes free again, then the space reserve (device/disk.py) is taken back and recording resumes. When
  nothing is left to shred the vault reports the fault ``ENOSPC`` and tries again with backoff;
* **fault retries**: while :class:`~doorkeep.device.vault.faults.VaultHealth` holds a fault, a probe write through the
  vault's disk seam is tried with backoff (at most ``max_retry_s`` apart); when it succeeds the fault clears and
  recording resumes;
* **recovery** of clips torn by a write error (cut back to the last complete chunk, ``complete: false``), once the
  disk allows it.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..disk import Backoff, errno_name, free_bytes, is_disk_full
from ..worker import Worker

if TYPE_CHECKING:
    from .vault import Vault

log = logging.getLogger(__name__)


class VaultKeeper(Worker):
    """The vault's housekeeping thread. ``tick()`` is one pass (tests call it directly with their own clock).

    Args:
        vault: the vault it keeps.
        interval_s: seconds between timed retention passes.
        headroom: bytes that must be free on the vault's filesystem before recording resumes after ENOSPC.
        clock: monotonic clock.
    """

    def __init__(self, vault: Vault, *, interval_s: float = 60.0, headroom: int = 1 << 20,
                 max_retry_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__("vault-keeper")
        self.vault = vault
        self.interval_s = interval_s
        self.headroom = headroom
        self.clock = clock
        self.passes = 0
        self._space_wanted = threading.Event()
        self._wakeup = threading.Event()
        self._next_retention = 0.0
        self._lock = threading.Lock()  # one pass at a time (the thread, or a test calling tick())
        self._req_lock = threading.Lock()
        self._full_backoff = Backoff(first_s=1.0, max_s=max_retry_s)
        self._resume_at = 0.0
        self._free_now = False

    # ------------------------------------------------------------------------------------------- requests
    @property
    def waiting_for_space(self) -> bool:
        """A full disk was met and has not been cured yet: no clip is opened meanwhile."""
        return self._space_wanted.is_set()

    def need_space(self) -> None:
        """A write met a full disk: free space now (any thread; returns at once). Recording resumes once there is
        room again, and — when full disks keep coming back — not sooner than a backoff (1 s doubling to
        ``max_retry_s``) after the previous one, so a disk that fills at once again is not thrashed."""
        with self._req_lock:
            if not self._space_wanted.is_set():
                now = self.clock()
                self._resume_at = now + self._full_backoff.fail(now)
            self._free_now = True
            self._space_wanted.set()
        self._wakeup.set()

    def wake(self) -> None:
        """Re-plan now (a fault was reported: its first retry is due within a second)."""
        self._wakeup.set()

    def clip_written(self) -> None:
        """A clip closed normally: the disk takes writes again (resets the full-disk backoff); retention runs
        soon (on this thread, never the writer's)."""
        self._full_backoff.reset()
        self._next_retention = 0.0
        self._wakeup.set()

    # ----------------------------------------------------------------------------------------------- pass
    def tick(self) -> None:
        """One pass: fault retry, then retention if due or wanted, then recovery and the reserve."""
        with self._lock:
            now = self.clock()
            health = self.vault.health
            if health.fault is not None and health.fault != "ENOSPC":
                if health.retry_due():
                    self._probe()
                return  # a faulted store is not touched: no retention, no recovery
            if self._space_wanted.is_set():
                self._full(now)
            elif now >= self._next_retention:
                self._next_retention = now + self.interval_s
                self.passes += 1
                if self._housekeep(disk_full=False):
                    self.vault.reserve.ensure()

    def _housekeep(self, *, disk_full: bool) -> bool:
        """Retention, then recovery of torn clips. False when the disk failed (reported)."""
        target = self.headroom if disk_full else 0
        try:
            freed = self.vault.enforce_retention(disk_full=disk_full, free_target=target)
            self.vault.recover_torn()
            if disk_full and not freed:  # clips just recovered from a full disk may be the oldest left
                self.vault.enforce_retention(disk_full=True, free_target=target)
        except OSError as exc:
            if not is_disk_full(exc):
                self.vault.health.report(exc, op="retention")
                return False
        return True

    def _full(self, now: float) -> None:
        """A full disk: free space once per request, then resume recording when there is room and the backoff
        allows; report ENOSPC when nothing more can be freed (retried with the fault backoff)."""
        vault, health = self.vault, self.vault.health
        if health.fault == "ENOSPC" and health.retry_due():
            self._free_now = True
        if self._free_now:
            self._free_now = False
            self.passes += 1
            if not self._housekeep(disk_full=True):
                return
        held = vault.reserve.ensure()
        try:
            room = free_bytes(vault.store.root) >= self.headroom
        except OSError:
            room = False
        if not (held and room):
            if health.fault != "ENOSPC" or health.retry_due():
                health.report(OSError(errno.ENOSPC, "disk full and nothing left to shred"), op="retention")
            return
        if now < self._resume_at:
            return
        self._space_wanted.clear()
        if health.fault == "ENOSPC":
            health.clear()
        else:
            log.info("disk space freed by retention; recording resumes")

    def _probe(self) -> None:
        vault, health = self.vault, self.vault.health
        try:
            vault.store.disk.probe(vault.store.root)
        except OSError as exc:
            if is_disk_full(exc):  # the fault turned into a full disk: retention can work on it
                health.clear()
                self.need_space()
            else:
                health.report(exc, op="probe")
            return
        log.info("vault probe write succeeded (was %s)", health.fault)
        health.clear()
        try:
            vault.recover_torn()
        except OSError as exc:
            log.error("recovering torn clips after the fault failed (%s); retried at the next pass", errno_name(exc))
        self._next_retention = 0.0  # catch up on retention skipped while faulted

    # ----------------------------------------------------------------------------------------------- thread
    def _wait_s(self) -> float:
        now = self.clock()
        nxt = self._next_retention
        if self._space_wanted.is_set():
            nxt = min(nxt, max(self._resume_at, now + 0.2))
        retry = self.vault.health.next_retry
        if retry is not None:
            nxt = min(nxt, retry)
        return max(0.05, min(self.interval_s, nxt - now))

    def _wake(self) -> None:
        self._wakeup.set()

    def _run(self) -> None:
        while not self.stopping:
            try:
                self.tick()
            except Exception:  # a bug in one pass must not end housekeeping; counted by the log
                log.exception("vault keeper pass failed")
            self.mark()
            self._wakeup.wait(self._wait_s())
            self._wakeup.clear()
