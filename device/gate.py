"""Motion gate: decides from the lores luma which frames deserve inference.

Every ``step``-th pixel of the Y plane is compared with a slowly learned background. A pixel counts as changed when
it differs by more than ``pixel_threshold`` after removing the frame's mean shift (auto-exposure, a cloud);
a frame is motion when more than ``min_changed`` of the sampled pixels changed. After motion the gate stays open
for ``hold_s`` seconds, because a person may stand still at the door. Sensor noise stays under the pixel threshold;
a single hot pixel stays under the changed fraction.

All buffers are preallocated; one ``update`` is a handful of numpy passes over ``(h/step) x (w/step)`` values.

Example::

    gate = MotionGate.from_config(config.motion, width=320, height=240)
    if gate.update(frame, t):       # frame: lores I420 array
        detections = detector.detect(frame)
"""

from __future__ import annotations

import math

import numpy as np

from .config import MotionSection


class MotionGate:
    """Background-difference motion detector with hold time.

    Args:
        width, height: lores frame size.
        pixel_threshold: luma change (0..255) that counts as changed.
        min_changed: share of sampled pixels that must change for motion.
        step: sample every ``step``-th pixel in each direction.
        hold_s: stay open this long after the last motion.
        background_s: time constant of the learned background (seconds); shorter forgets still objects faster.
    """

    def __init__(self, *, width: int, height: int, pixel_threshold: int = 20, min_changed: float = 0.003,
                 step: int = 2, hold_s: float = 3.0, background_s: float = 2.0) -> None:
        self.width = width
        self.height = height
        self.pixel_threshold = float(pixel_threshold)
        self.min_changed = min_changed
        self.step = step
        self.hold_s = hold_s
        self.background_s = background_s
        shape = (len(range(0, height, step)), len(range(0, width, step)))
        self._n = shape[0] * shape[1]
        self._bg = np.zeros(shape, dtype=np.float32)
        self._cur = np.zeros(shape, dtype=np.float32)
        self._diff = np.zeros(shape, dtype=np.float32)
        self._mask = np.zeros(shape, dtype=bool)
        self._t_last: float | None = None
        self._t_motion = -math.inf
        #: Share of sampled pixels that changed in the last update.
        self.changed = 0.0
        #: Whether the last update saw motion itself (not just the hold).
        self.motion = False

    @classmethod
    def from_config(cls, section: MotionSection, *, width: int, height: int) -> MotionGate:
        """Build a gate from the ``[motion]`` config section."""
        return cls(width=width, height=height, pixel_threshold=section.pixel_threshold,
                   min_changed=section.min_changed, step=section.step, hold_s=section.hold_s,
                   background_s=section.background_s)

    def reset(self) -> None:
        """Forget the background (the next frame becomes it)."""
        self._t_last = None
        self._t_motion = -math.inf

    def update(self, frame: np.ndarray, t: float) -> bool:
        """Feed one lores I420 frame captured at monotonic time ``t``; True when inference should run."""
        y = frame[: self.height : self.step, :: self.step]
        np.copyto(self._cur, y, casting="unsafe")
        if self._t_last is None:
            np.copyto(self._bg, self._cur)
            self._t_last = t
            self.changed = 0.0
            self.motion = False
            return False
        d = self._diff
        np.subtract(self._cur, self._bg, out=d)
        shift = float(d.mean())
        # Learn the background: bg += alpha * (cur - bg), alpha from the elapsed time (frame-rate independent).
        dt = max(0.0, t - self._t_last)
        self._t_last = t
        alpha = 1.0 - math.exp(-dt / self.background_s) if self.background_s > 0 else 1.0
        d -= shift
        np.abs(d, out=d)
        np.greater(d, self.pixel_threshold, out=self._mask)
        self.changed = np.count_nonzero(self._mask) / self._n
        self.motion = bool(self.changed > self.min_changed)
        np.subtract(self._cur, self._bg, out=d)
        d *= alpha
        self._bg += d
        if self.motion:
            self._t_motion = t
        return t - self._t_motion <= self.hold_s
