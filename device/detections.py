"""The seam between the loop and any person detector: ``detect(frame) -> list[Detection]``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Detection:
    """One person found in a frame. Box in normalised frame coordinates (0..1), ``x0 < x1``, ``y0 < y1``."""

    score: float
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    @property
    def centre(self) -> tuple[float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2)


class Detector(Protocol):
    """Anything that finds people in a lores I420 frame."""

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Return the people found in ``frame``: a lores I420 array of shape ``(height * 3 // 2, width)`` (its
        size is its shape; see :mod:`doorkeep.device.frames` and ``frames.i420_size``)."""
        ...
