"""What the console knows about the device, from verified messages only: visits, health, the request inbox.

Everything here arrives on a network thread (the MQTT feed) and is read by the web app's event loop; one lock
guards it and every change is announced to listeners (the live page stream) as ``(kind, key)``. Nothing here
holds imagery or key material. Bounded: the newest :data:`MAX_VISITS` visits and :data:`MAX_REQUESTS` requests.

A *visit* is one person event (its ``start`` and ``end`` share the event id) or one doorbell press.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from doorkeep.device.publish.payload import VerifiedEvent

log = logging.getLogger(__name__)

MAX_VISITS = 5000
MAX_REQUESTS = 500
Listener = Callable[[str, str], None]


@dataclass(frozen=True)
class Visit:
    """One person event or doorbell press, as the device signed it."""

    event_id: str
    kind: str  # person | doorbell
    t_start: float
    t_end: float | None
    score: float
    zone: str | None
    clip: bool
    verified: bool = True
    clip_id: str | None = None
    #: time.time() when the console first saw it (latency figures).
    seen_at: float = 0.0

    @property
    def day(self) -> str:
        return dt.datetime.fromtimestamp(self.t_start).strftime("%Y-%m-%d")

    @property
    def ongoing(self) -> bool:
        return self.kind == "person" and self.t_end is None

    @property
    def duration_s(self) -> float | None:
        return None if self.t_end is None else max(0.0, self.t_end - self.t_start)


@dataclass(frozen=True)
class FootageRequest:
    """A footage request relayed by the device (verified by it and by us), and what the owner did with it."""

    request_id: str
    requester: str
    incident: str
    purpose: str
    window: tuple[float, float]
    issued_at: float
    received_at: float
    recipient_key: dict[str, Any]
    status: str = "pending"  # pending | approved | declined
    detail: str = ""


@dataclass
class Health:
    """The device's last heartbeat and availability."""

    availability: str = "unknown"
    availability_at: float | None = None
    heartbeat: dict[str, Any] = field(default_factory=dict)
    heartbeat_at: float | None = None
    heartbeat_signed: bool = False
    #: Set when a signed heartbeat reports an audit head that went back (rollback, truncation, replay) or forked.
    audit_warning: str = ""
    firmware: str = ""
    rejected: int = 0
    last_rejection: str = ""


class LiveState:
    """The console's verified view of one device.

    Args:
        device_id: the paired device (``dk-…``).
        clock: wall clock (tests).
    """

    def __init__(self, device_id: str, *, clock: Callable[[], float] = time.time) -> None:
        self.device_id = device_id
        self._clock = clock
        self._lock = threading.Lock()
        self._visits: OrderedDict[str, Visit] = OrderedDict()
        #: Every change to a visit gets the next number, so a page rendered at number N can ask the live stream
        #: for what changed after N (a change between the page's render and its stream connecting is not lost).
        self._seq = 0
        self._changed: dict[str, int] = {}
        self._requests: OrderedDict[str, FootageRequest] = OrderedDict()
        self.health = Health()
        self._listeners: list[Listener] = []

    # ------------------------------------------------------------------------------------------ listeners
    def subscribe(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn(kind, key)`` after every change (any thread; keep it short); returns an unsubscribe."""
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def _notify(self, kind: str, key: str) -> None:
        for fn in list(self._listeners):
            try:
                fn(kind, key)
            except Exception:
                log.exception("console listener failed")

    # ------------------------------------------------------------------------------------------ visits
    def add_event(self, ev: VerifiedEvent) -> Visit:
        """Merge one verified event into its visit (start/end of a person, or a press)."""
        with self._lock:
            old = self._visits.get(ev.event_id)
            if old is None:
                v = Visit(ev.event_id, ev.kind, ev.t_start, ev.t_end, ev.score, ev.zone, ev.clip,
                          seen_at=self._clock())
            else:
                v = replace(old, t_start=min(old.t_start, ev.t_start), t_end=ev.t_end or old.t_end,
                            score=max(old.score, ev.score), zone=old.zone or ev.zone, clip=old.clip or ev.clip)
            self._put(v)
        self._notify("visit", ev.event_id)
        return v

    def _put(self, v: Visit) -> None:
        """Store ``v`` (lock held), dropping the oldest visits beyond :data:`MAX_VISITS`."""
        self._visits[v.event_id] = v
        self._changed_locked(v.event_id)
        while len(self._visits) > MAX_VISITS:
            gone, _ = self._visits.popitem(last=False)
            self._changed.pop(gone, None)

    def _changed_locked(self, event_id: str) -> None:
        self._seq += 1
        self._changed[event_id] = self._seq

    def add_visit(self, v: Visit) -> None:
        """A visit known from elsewhere than a live event (a clip the device listed): kept unless already known."""
        with self._lock:
            if v.event_id in self._visits:
                return
            self._put(v)
        self._notify("visit", v.event_id)

    def attach_clip(self, event_id: str, clip_id: str) -> None:
        """Link a visit to the clip whose signed manifest names its event."""
        with self._lock:
            v = self._visits.get(event_id)
            if v is None or v.clip_id == clip_id:
                return
            self._visits[event_id] = replace(v, clip_id=clip_id, clip=True)
            self._changed_locked(event_id)
        self._notify("visit", event_id)

    def visit(self, event_id: str) -> Visit | None:
        with self._lock:
            return self._visits.get(event_id)

    def version(self) -> int:
        """The number of the latest change to any visit (see :meth:`changed_since`)."""
        with self._lock:
            return self._seq

    def changed_since(self, version: int) -> list[str]:
        """The visits changed after ``version`` (oldest change first)."""
        with self._lock:
            return sorted((k for k, n in self._changed.items() if n > version), key=self._changed.__getitem__)

    def visits(self) -> list[Visit]:
        """Newest first."""
        with self._lock:
            return sorted(self._visits.values(), key=lambda v: v.t_start, reverse=True)

    def days(self) -> list[tuple[str, list[Visit]]]:
        """Visits grouped by local day, newest day and newest visit first."""
        out: OrderedDict[str, list[Visit]] = OrderedDict()
        for v in self.visits():
            out.setdefault(v.day, []).append(v)
        return list(out.items())

    # ------------------------------------------------------------------------------------------ health
    def set_availability(self, value: str) -> None:
        with self._lock:
            self.health.availability = value
            self.health.availability_at = self._clock()
        self._notify("device", "availability")

    def set_heartbeat(self, hb: dict[str, Any], *, signed: bool, warning: str = "") -> None:
        with self._lock:
            self.health.heartbeat = dict(hb)
            self.health.heartbeat_at = self._clock()
            self.health.heartbeat_signed = signed
            if warning:
                self.health.audit_warning = warning
        self._notify("device", "heartbeat")

    def set_firmware(self, version: str) -> None:
        with self._lock:
            self.health.firmware = version
        self._notify("device", "firmware")

    def rejected(self, what: str) -> None:
        """A message that failed verification: counted and shown, never used."""
        with self._lock:
            self.health.rejected += 1
            self.health.last_rejection = what
        log.warning("console: rejected %s", what)
        self._notify("device", "rejected")

    # ------------------------------------------------------------------------------------------ requests
    def add_request(self, r: FootageRequest) -> None:
        with self._lock:
            if r.request_id in self._requests:
                return  # at-least-once delivery: the first copy counts
            self._requests[r.request_id] = r
            while len(self._requests) > MAX_REQUESTS:
                self._requests.popitem(last=False)
        self._notify("request", r.request_id)

    def set_request_status(self, request_id: str, status: str, detail: str = "") -> None:
        with self._lock:
            r = self._requests.get(request_id)
            if r is None:
                return
            self._requests[request_id] = replace(r, status=status, detail=detail)
        self._notify("request", request_id)

    def request(self, request_id: str) -> FootageRequest | None:
        with self._lock:
            return self._requests.get(request_id)

    def requests(self) -> list[FootageRequest]:
        """Pending first, then newest first."""
        with self._lock:
            items = list(self._requests.values())
        return sorted(items, key=lambda r: (r.status != "pending", -r.received_at))
