"""The vault's storage health: what a clip write error means, and the fault state the rest of the device sees.

:meth:`VaultHealth.classify` is the vault's one decision point for an ``OSError`` met while writing, closing or
recovering a clip (the rule itself is :func:`doorkeep.device.disk.is_disk_full`):

* ``"full"`` (ENOSPC/EDQUOT): the caller asks the keeper for space; retention shreds the oldest clips and
  recording resumes in a new clip linked to the interrupted one.
* ``"fault"`` (anything else: EACCES, EIO, EROFS, EMFILE, ...): recording stops — capture, detection and events go
  on — with one warning, the ``vault_faults`` counter, ``vault_fault`` (the errno name) in the heartbeat and one
  ``vault_fault`` audit record per episode; the keeper retries with backoff (at most ``max_retry_s`` apart) and
  recording resumes by itself once a probe write succeeds (audited ``vault_fault_cleared``). Nothing is shredded.

A full disk that retention cannot cure (nothing left to shred) is reported the same way, as ``ENOSPC``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..disk import Backoff, errno_name, is_disk_full

if TYPE_CHECKING:
    from ..stats import Stats
    from .audit import AuditLog, AuditRecord

log = logging.getLogger(__name__)

Verdict = Literal["full", "fault"]
AuditFn = Callable[..., object]


class Auditor(Protocol):
    """What records an audit entry: :class:`~doorkeep.device.vault.audit.AuditLog` or :class:`GuardedAudit`."""

    def append(self, kind: str, /, **fields: Any) -> object: ...


class VaultHealth:
    """Fault state of the clip store (thread-safe). ``fault`` is the errno name while recording is stopped.

    Args:
        audit: ``audit(kind, **fields)`` that never raises (the vault's guarded append).
        stats: where ``vault_faults`` is counted (may be set later: ``health.stats = ...``).
        first_retry_s, max_retry_s: the retry backoff (doubling, capped).
        clock: monotonic clock (tests pass their own).
    """

    def __init__(self, *, audit: AuditFn, stats: Stats | None = None, first_retry_s: float = 1.0,
                 max_retry_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._audit = audit
        self.stats = stats
        self.clock = clock
        self.backoff = Backoff(first_s=first_retry_s, max_s=max_retry_s)
        self.fault: str | None = None
        self.faults = 0  # episodes
        #: Called (no arguments) after a fault is reported, e.g. to wake the thread that retries.
        self.on_report: Callable[[], object] | None = None
        self._since = 0.0
        self._op = ""
        self._lock = threading.Lock()

    @property
    def ok(self) -> bool:
        """No fault: clips may be written."""
        return self.fault is None

    def classify(self, exc: OSError, *, op: str, clip_id: str | None = None) -> Verdict:
        """Decide what ``exc`` (met during ``op``: open/write/close/recover/...) means. A fault is recorded."""
        if is_disk_full(exc):
            return "full"
        self.report(exc, op=op, clip_id=clip_id)
        return "fault"

    def report(self, exc: BaseException, *, op: str, clip_id: str | None = None) -> None:
        """Enter (or stay in) a fault episode because of ``exc``; schedules the next retry."""
        name = errno_name(exc)
        with self._lock:
            new = self.fault is None
            self.fault = name
            delay = self.backoff.fail(self.clock())
            if new:
                self.faults += 1
                self._since, self._op = self.clock(), op
        if self.on_report is not None:
            self.on_report()
        if not new:
            log.info("vault still faulted (%s during %s); next try in %.0f s", name, op, delay)
            return
        detail = getattr(exc, "strerror", None) or str(exc)
        log.warning("vault storage fault: %s during %s%s (%s); recording stopped, capture and events go on; "
                    "retrying every %.0f s at most", name, op, f" of clip {clip_id}" if clip_id else "", detail,
                    self.backoff.max_s)
        if self.stats is not None:
            self.stats.count("vault_faults")
        fields: dict[str, object] = {"errno": name, "op": op, "detail": str(detail)[:200]}
        if clip_id:
            fields["clip_id"] = clip_id
        self._audit("vault_fault", **fields)

    def retry_due(self) -> bool:
        """A fault is pending and its next retry time has come."""
        with self._lock:
            return self.fault is not None and self.backoff.due(self.clock())

    @property
    def next_retry(self) -> float | None:
        """Monotonic time of the next retry (``None`` when healthy)."""
        return self.backoff.next_at if self.fault is not None else None

    def clear(self) -> None:
        """The fault is gone (a probe write succeeded): audited once, recording may resume."""
        with self._lock:
            name, self.fault = self.fault, None
            tries, self.backoff.failures = self.backoff.failures, 0
            self.backoff.next_at = 0.0
            after = self.clock() - self._since
        if name is None:
            return
        log.warning("vault storage fault %s cleared after %.0f s; recording resumes", name, after)
        self._audit("vault_fault_cleared", errno=name, after_s=round(after, 1), tries=tries)

    def flags(self) -> dict[str, str]:
        """For the heartbeat: ``{"vault_fault": "EIO"}`` while faulted, ``{}`` when healthy."""
        name = self.fault
        return {"vault_fault": name} if name is not None else {}


class GuardedAudit:
    """Audit appends that never stop the caller (recording, retention, events): a full disk releases the space
    reserve and retries once; any other failure is logged and counted (``audit_failed``) and the record is lost —
    the chain itself stays valid (a failed append never moves the head).

    Releases and other decisions that must not happen unaudited call the :class:`AuditLog` directly instead.
    """

    def __init__(self, log_: AuditLog, *, release_space: Callable[[], object] | None = None,
                 stats: Stats | None = None) -> None:
        self.log = log_
        self.release_space = release_space
        self.stats = stats

    def append(self, kind: str, /, **fields: object) -> AuditRecord | None:
        for attempt in (1, 2):
            try:
                return self.log.append(kind, **fields)
            except OSError as exc:
                if attempt == 1 and is_disk_full(exc) and self.release_space is not None:
                    self.release_space()
                    continue
                log.error("audit record %s lost: %s (%s)", kind, errno_name(exc), exc.strerror or exc)
            except Exception:
                log.exception("audit record %s lost", kind)
            break
        if self.stats is not None:
            self.stats.count("audit_failed")
        return None

    __call__ = append
