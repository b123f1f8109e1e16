"""Events: what the device tells the owner's hub happened. The person state machine lives in person_events.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

EventKind = Literal["person", "doorbell"]
EventPhase = Literal["start", "end", "press"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event transition. Times are wall-clock seconds (``time.time()``).

    ``phase`` is ``start``/``end`` for a person event and ``press`` for the doorbell. An ``end`` carries the same
    ``event_id`` as its ``start``. ``zone`` is the owner's zone name the person was seen in (``None``: anywhere).
    ``clip`` says whether the vault is recording/has recorded a clip for this event.
    """

    event_id: str
    kind: EventKind
    phase: EventPhase
    t: float
    t_start: float
    t_end: float | None = None
    score: float = 0.0
    zone: str | None = None
    clip: bool = False


class EventSink(Protocol):
    """Anything that consumes events: the MQTT publisher, the vault's clip writer, the audit log."""

    def on_event(self, event: Event) -> None: ...


class Tracker(Protocol):
    """Turns per-inference detections into event transitions (the person state machine implements this).

    ``detections`` is ``None`` when no inference ran for this frame (the motion gate skipped it), so the machine
    can still end an event by time.
    """

    @property
    def active(self) -> object | None:
        """The open event's id-bearing state, or ``None`` when none is open (the loop keeps inferring while open)."""

    def update(self, t: float, detections: list[Any] | None) -> list[Event]: ...
