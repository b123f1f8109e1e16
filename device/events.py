"""Events: what the device tells the owner's hub happened. The person state machine lives in person_events.py."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

EventKind = Literal["person", "doorbell"]
EventPhase = Literal["start", "end", "press"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event transition. Times are wall-clock seconds (``time.time()``): labels only — the device decides on
    monotonic time (device/person_events.py).

    ``phase`` is ``start``/``end`` for a person event and ``press`` for the doorbell. An ``end`` carries the same
    ``event_id`` as its ``start``. ``zone`` is the owner's zone name the person was seen in (``None``: anywhere).
    ``clip`` says whether the vault is recording/has recorded a clip for this event. ``mono_end`` is the monotonic
    time of ``t_end`` on this device (the vault's post-roll runs from it); it never leaves the device.
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
    mono_end: float | None = None


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

    def update(self, t: float, detections: list[Any] | None, *, wall: float | None = None) -> list[Event]:
        """``t``: the frame's monotonic capture time (every rule runs on it); ``wall``: its wall-clock time (labels
        only; default ``t``)."""
