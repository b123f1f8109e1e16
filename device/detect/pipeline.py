"""The detection path of one lores frame, in order: privacy mask -> motion gate -> detector -> person events.

The device loop, ``doorkeep scan`` (footage replay) and the tests all run this same object, so what an owner tunes
on recorded footage is what the doorbell does.

Example::

    path = DetectionPipeline.from_config(config, detector=build_detector(config))
    for t, frame in frames:                       # lores I420 frames, t in seconds
        for event in path.step(frame, t):
            print(event)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..detections import Detection, Detector
from ..events import Event
from ..person_events import PersonTracker


@dataclass
class PipelineCounts:
    frames: int = 0
    inferences: int = 0
    skipped: int = 0


@dataclass
class DetectionPipeline:
    """Mask (optional), gate (optional: ``None`` = infer on every frame), detector and tracker for one frame size."""

    detector: Detector
    tracker: PersonTracker
    width: int
    height: int
    mask: Any = None
    gate: Any = None
    counts: PipelineCounts = field(default_factory=PipelineCounts)
    #: Detections of the last inference (``None`` when the gate skipped the frame).
    last: list[Detection] | None = None

    @classmethod
    def from_config(cls, config: Any, *, detector: Detector, gate: bool = True) -> DetectionPipeline:
        from ..gate import MotionGate
        from ..masks import PrivacyMask

        w, h = config.capture.lores_width, config.capture.lores_height
        return cls(detector=detector, tracker=PersonTracker.from_config(config), width=w, height=h,
                   mask=PrivacyMask.from_config(config.masks, width=w, height=h),
                   gate=MotionGate.from_config(config.motion, width=w, height=h) if gate else None)

    def step(self, frame: np.ndarray, t: float) -> list[Event]:
        """Run one frame (modified in place by the mask) captured at ``t`` seconds; returns event transitions."""
        self.counts.frames += 1
        if self.mask is not None:
            self.mask(frame)
        motion = True if self.gate is None else self.gate.update(frame, t)
        # While a person event is open, keep looking even without motion: a visitor standing still at the door
        # fades into the gate's background, and "not looked" must not end their event.
        if not motion and self.tracker.active is None:
            self.counts.skipped += 1
            self.last = None
        else:
            self.counts.inferences += 1
            self.last = self.detector.detect(frame, width=self.width, height=self.height)
        return self.tracker.update(t, self.last)


def doorbell_stages(config: Any, *, main_size: tuple[int, int], lores_size: tuple[int, int],
                    fetch: bool = True) -> dict[str, Any]:
    """The detection area's keyword arguments for ``Doorbell.from_config``: ``detector``, ``tracker`` and the
    privacy masks as ``lores_filters`` (before the gate and detector) and ``main_filters`` (before encoding).

    Example::

        bell = Doorbell.from_config(config, **doorbell_stages(config, main_size=(1920, 1080), lores_size=(320, 240)))
    """
    from ..masks import PrivacyMask
    from .detector import build_detector

    main_mask = PrivacyMask.from_config(config.masks, width=main_size[0], height=main_size[1])
    lores_mask = PrivacyMask.from_config(config.masks, width=lores_size[0], height=lores_size[1])
    return {"detector": build_detector(config, fetch=fetch), "tracker": PersonTracker.from_config(config),
            "lores_filters": [lores_mask] if lores_mask else [], "main_filters": [main_mask] if main_mask else []}
