"""The person event state machine: per-inference detections in, event start/end transitions out. Pure: no clock,
no I/O — time comes in with every call, so it is tested exhaustively and replays footage faster than real time.

Every rule runs on the frame's MONOTONIC capture time; the wall clock only labels events. A wall clock stepped back
(NTP after boot) therefore never holds an event open, and one stepped forward never ends it early. An event's labels
are anchored at the wall time of its first hit and advance by monotonic time from there, so ``t_end - t_start`` is
the true duration even across a step; ``mono_end`` carries the monotonic end for the vault's post-roll.

Rules (defaults in docs/detection.md, measured on the demo scene):

* A detection counts when its box covers at least ``min_box_area`` of the frame and, with ``require_zone``, its
  anchor point is inside one of the zones.
* An event STARTS when a counting detection occurred on at least ``k`` of the last ``n`` inferences (one noisy
  frame is not a visitor). Its ``t_start`` is the time of the first of those hits.
* An event ENDS when no counting detection has been seen for ``end_after_s`` seconds — judged on every call,
  including frames where no inference ran (``detections is None``, the motion gate skipped them), so a person who
  walks off and leaves a still scene still ends the event. ``t_end`` is the last time a person was seen.
* An event also ends once it has lasted ``max_event_s`` (``t_end`` = now): a visitor who stays, or a static false
  positive (a poster of a person), gives a series of bounded events — each next one starts at the next counting
  detection — never one event that never ends.
* Each event has a unique random id (``secrets.token_hex(8)``), the best score seen and the zone of its first hit.

Example::

    tracker = PersonTracker(k=2, n=3, end_after_s=4.0)
    for t, dets in stream:
        for ev in tracker.update(t, dets):
            publish(ev)
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable, Sequence

from .detections import Detection
from .errors import EventError
from .events import Event
from .zones import Zone, zone_of

log = logging.getLogger(__name__)


class PersonTracker:
    """Implements :class:`~doorkeep.device.events.Tracker` for person events."""

    def __init__(self, *, k: int = 2, n: int = 3, end_after_s: float = 4.0, max_event_s: float = 300.0,
                 min_box_area: float = 0.01, zones: Sequence[Zone] = (), require_zone: bool = False,
                 zone_point: str = "foot", new_id: Callable[[], str] = lambda: secrets.token_hex(8)) -> None:
        if not 1 <= k <= n:
            raise EventError(f"person events need 1 <= k <= n, got k={k}, n={n}")
        if end_after_s <= 0:
            raise EventError(f"end_after_s must be positive, got {end_after_s}")
        if max_event_s <= 0:
            raise EventError(f"max_event_s must be positive, got {max_event_s}")
        if require_zone and not zones:
            raise EventError("require_zone is set but no zones are defined")
        self.k, self.n, self.end_after_s, self.max_event_s = k, n, end_after_s, max_event_s
        self.min_box_area = min_box_area
        self.zones = tuple(zones)
        self.require_zone = require_zone
        self.zone_point = zone_point
        self._new_id = new_id
        self._window: deque[tuple[float, float, bool]] = deque(maxlen=n)  # (monotonic, wall, hit)
        self._last_t: float | None = None
        self._active: Event | None = None
        self._active_since = 0.0
        self._anchor = (0.0, 0.0)  # (monotonic, wall) the open event's labels are counted from
        self._cut_at = (float("-inf"), 0.0)  # (monotonic, wall) the last event was cut at max_event_s
        self._last_seen = 0.0
        self._best = 0.0
        self._clock_warned = False

    @classmethod
    def from_config(cls, config: object) -> PersonTracker:
        """From a :class:`~doorkeep.device.config.Config` (``events`` and ``zones``)."""
        from .zones import zones_from_config

        e = config.events  # type: ignore[attr-defined]
        return cls(k=e.k, n=e.n, end_after_s=e.end_after_s, max_event_s=e.max_event_s, min_box_area=e.min_box_area,
                   zones=zones_from_config(config.zones), require_zone=e.require_zone,  # type: ignore[attr-defined]
                   zone_point=e.zone_point)

    def _label(self, t: float) -> float:
        """The wall-clock label of monotonic time ``t`` in the open event."""
        return self._anchor[1] + (t - self._anchor[0])

    def _end(self, a: Event, t: float, t_end: float) -> Event:
        self._active = None
        return Event(event_id=a.event_id, kind="person", phase="end", t=self._label(t), t_start=a.t_start,
                     t_end=self._label(t_end), score=self._best, zone=a.zone, mono_end=t_end)

    @property
    def active(self) -> Event | None:
        """The start event of the person event in progress, if any."""
        return self._active

    def _counting(self, dets: Sequence[Detection]) -> tuple[Detection | None, str | None]:
        best: tuple[Detection | None, str | None] = (None, None)
        for d in dets:
            if d.area < self.min_box_area:
                continue
            zone = zone_of(d, self.zones, self.zone_point) if self.zones else None
            if self.require_zone and zone is None:
                continue
            if best[0] is None or d.score > best[0].score:
                best = (d, zone)
        return best

    def update(self, t: float, detections: list[Detection] | None, *, wall: float | None = None) -> list[Event]:
        """Feed one frame's result; returns the transitions it caused.

        ``t`` is the frame's monotonic capture time in seconds (footage time when replaying): every rule runs on it.
        ``wall`` is the frame's wall-clock time (default ``t``), used only to label the events. A ``t`` earlier than
        the previous one (not a monotonic clock) is treated as the previous one, so events never run backwards.
        """
        if self._last_t is not None and t < self._last_t:
            if not self._clock_warned:
                log.warning("frame time went back %.3f s; holding event time at %.3f", self._last_t - t, self._last_t)
                self._clock_warned = True
            t = self._last_t
        self._last_t = t
        wall = t if wall is None else wall
        out: list[Event] = []
        hit: Detection | None = None
        zone: str | None = None
        if detections is not None:
            hit, zone = self._counting(detections)
            self._window.append((t, wall, hit is not None))
            if hit is not None:
                self._last_seen = t
                if self._active is not None:
                    self._best = max(self._best, hit.score)
        a = self._active
        if a is not None and t - self._last_seen >= self.end_after_s:
            out.append(self._end(a, t, self._last_seen))
            self._window.clear()
        elif a is not None and t - self._active_since >= self.max_event_s:
            self._cut_at = (t, self._label(t))
            out.append(self._end(a, t, t))  # still there: the next counting detection starts the next event
        elif a is None and hit is not None and sum(h for _, _, h in self._window) >= self.k:
            first = next((tt, ww) for tt, ww, h in self._window if h)
            self._anchor = first if first[0] >= self._cut_at[0] else self._cut_at
            self._best = hit.score
            self._active_since = t
            self._active = Event(event_id=self._new_id(), kind="person", phase="start", t=self._label(t),
                                 t_start=self._anchor[1], score=hit.score, zone=zone)
            out.append(self._active)
        return out
