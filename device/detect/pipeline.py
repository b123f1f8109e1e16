"""The detection path of one lores frame, in order: privacy mask -> motion gate -> detector -> person events.

:class:`DetectionPipeline` is the ONLY place the rule "run the detector when the gate sees motion, or while a person
event is open" lives. The device's detect thread (:class:`~doorkeep.device.loop.CaptureLoop`), ``doorkeep scan``
(footage replay), ``doorkeep eval`` (:meth:`DetectionPipeline.infer` on stills) and the demo all run this same
class, so what an owner tunes on recorded footage is what the doorbell does.

:class:`DetectionParts` are the typed detection parts the device is assembled from (detector, tracker, and the
privacy mask at both frame sizes), built by :func:`detection_parts` from the source's real frame sizes.

Example::

    path = DetectionPipeline.from_config(config, detector=build_detector(config), size=(320, 240))
    for t, frame in frames:                       # lores I420 frames, t in seconds
        for event in path.step(frame, t):
            print(event)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..detections import Detection, Detector
from ..events import Event, Tracker

if TYPE_CHECKING:
    from ..gate import MotionGate
    from ..masks import PrivacyMask
    from ..stats import Stats


@dataclass
class PipelineCounts:
    frames: int = 0
    inferences: int = 0
    skipped: int = 0


@dataclass
class DetectionPipeline:
    """Mask, gate, detector and tracker for lores I420 frames; each part optional.

    Args:
        detector: the person detector (``None``: the gate alone runs; the tracker gets ``None`` each frame).
        tracker: turns detections into events (``None``: no events).
        gate: motion gate (``None``: infer on every frame).
        mask: privacy mask applied in place first (``None`` on the device, where the ring applies it before the
            frame is committed; ``scan`` applies it here).
        stats: where gate/detect/events latencies and ``gate_open``/``inferences`` counts go (optional).

    After each :meth:`step`: ``motion`` (the gate's verdict) and ``last`` (detections, ``None`` when not looked).
    """

    detector: Detector | None = None
    tracker: Tracker | None = None
    gate: MotionGate | None = None
    mask: Callable[[np.ndarray], None] | None = None
    stats: Stats | None = None
    counts: PipelineCounts = field(default_factory=PipelineCounts)
    #: Detections of the last inference (``None`` when the gate skipped the frame).
    last: list[Detection] | None = None
    #: The gate's verdict on the last frame.
    motion: bool = False

    @classmethod
    def from_config(cls, config: Any, *, detector: Detector, size: tuple[int, int] | None = None,
                    gate: bool = True, mask: bool = True) -> DetectionPipeline:
        """Mask, gate and person tracker from ``config`` for lores frames of ``size`` (default the configured
        lores size — what every source delivers)."""
        from ..gate import MotionGate
        from ..masks import PrivacyMask
        from ..person_events import PersonTracker

        w, h = size or (config.capture.lores_width, config.capture.lores_height)
        return cls(detector=detector, tracker=PersonTracker.from_config(config),
                   mask=PrivacyMask.from_config(config.masks, width=w, height=h) if mask else None,
                   gate=MotionGate.from_config(config.motion, width=w, height=h) if gate else None)

    def step(self, frame: np.ndarray, t: float, *, t_wall: float | None = None) -> list[Event]:
        """Run one frame (modified in place by the mask) captured at ``t`` seconds (monotonic or footage time: every
        rule runs on it); ``t_wall`` (default ``t``) only labels the events. Returns the event transitions."""
        stats = self.stats
        self.counts.frames += 1
        if self.mask is not None:
            self.mask(frame)
        tracker = self.tracker
        tracking = tracker is not None and tracker.active is not None
        t0 = time.perf_counter()
        # While a person is tracked the gate learns nothing: what changes is the person (device/gate.py).
        motion = self.motion = True if self.gate is None else self.gate.update(frame, t, learn=not tracking)
        if stats is not None:
            stats.observe("gate", time.perf_counter() - t0)
            if motion:
                stats.count("gate_open")
        # While a person event is open, keep looking even without motion: a visitor standing still at the door
        # fades into the gate's background, and "not looked" must not end or split their event.
        if self.detector is not None and (motion or tracking):
            self.last = self.infer(frame)
        else:
            self.counts.skipped += 1
            self.last = None
        if tracker is None:
            return []
        t2 = time.perf_counter()
        events = tracker.update(t, self.last, wall=t_wall)
        if stats is not None:
            stats.observe("events", time.perf_counter() - t2)
        return events

    def infer(self, frame: np.ndarray) -> list[Detection]:
        """One inference on ``frame`` (no gate, no tracker): what ``doorkeep eval`` scores on stills."""
        if self.detector is None:
            return []
        t0 = time.perf_counter()
        found = self.detector.detect(frame)
        self.counts.inferences += 1
        if self.stats is not None:
            self.stats.observe("detect", time.perf_counter() - t0)
            self.stats.count("inferences")
        return found


@dataclass
class DetectionParts:
    """The detection area's parts of a device, for one source: what :func:`detection_parts` builds and
    ``assemble`` wires into :meth:`Doorbell.from_config <doorkeep.device.app.Doorbell.from_config>`.

    ``lores_mask`` runs on ring slots before commit (so neither the detector nor any reader sees the masked
    region); ``main_mask`` runs on main frames before encoding (so no clip contains it).
    """

    detector: Detector
    tracker: Tracker
    lores_mask: PrivacyMask | None = None
    main_mask: PrivacyMask | None = None
    #: More lores frame filters after the mask (e.g. day/night judging), in order.
    lores_extra: list[Callable[[np.ndarray], None]] = field(default_factory=list)

    @property
    def lores_filters(self) -> list[Callable[[np.ndarray], None]]:
        return [*([self.lores_mask] if self.lores_mask else []), *self.lores_extra]

    @property
    def main_filters(self) -> list[Callable[[np.ndarray], None]]:
        return [self.main_mask] if self.main_mask else []


def detection_parts(config: Any, *, main_size: tuple[int, int], lores_size: tuple[int, int],
                    fetch: bool = True, detector: Detector | None = None) -> DetectionParts:
    """Detector (``config.detect``; or ``detector``), person tracker, and privacy masks built for the source's
    REAL frame sizes (``source.main_size``/``source.lores_size``: a 640x480 file gets 640x480 masks whatever
    ``[capture]`` says).

    Example::

        parts = detection_parts(config, main_size=source.main_size, lores_size=source.lores_size)
        bell = Doorbell.from_config(config, source=source, detector=parts.detector, tracker=parts.tracker,
                                    lores_filters=parts.lores_filters, main_filters=parts.main_filters)
    """
    from ..masks import PrivacyMask
    from ..person_events import PersonTracker
    from .detector import build_detector

    return DetectionParts(
        detector=detector if detector is not None else build_detector(config, fetch=fetch),
        tracker=PersonTracker.from_config(config),
        lores_mask=PrivacyMask.from_config(config.masks, width=lores_size[0], height=lores_size[1]),
        main_mask=PrivacyMask.from_config(config.masks, width=main_size[0], height=main_size[1]))
