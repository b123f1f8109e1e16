"""Night mode: is the camera seeing in colour (day) or in grayscale/infrared (night)?

Two kinds of evidence, one state machine:

* **Chroma** (any source): a NoIR camera under an IR illuminator, or a camera switched to grayscale, gives lores
  I420 frames whose U and V planes sit flat around 128. :class:`ChromaMeter` measures the mean absolute deviation of
  a subsampled grid of U and V from 128 (0 = perfectly gray; 0..127) into preallocated buffers, in microseconds.
* **Lux** (the Pi): libcamera reports an estimated scene brightness in each frame's metadata (``"Lux"``); picamera2
  sources pass it through their ``on_metadata`` hook to :meth:`NightMode.on_metadata`.

:class:`NightMode` smooths the chosen measure (exponential moving average, time constant ``smooth_s``) and switches
with hysteresis: into night when the measure falls below the *enter* threshold, back to day only above the higher
*leave* threshold, and never sooner than ``dwell_s`` after the last switch — so a noisy dusk does not flap the mode
(and the IR illuminator and IR-cut filter that follow it). With ``source = "auto"`` lux decides once the camera has
reported it (an IR-cut filter left out turns a daylit frame gray, so chroma alone could never leave night on such a
camera); without lux, chroma decides.

Example::

    mode = NightMode(NightSection())
    night = mode.update(frame, width=320, height=240)      # True in night mode
    source = PicameraSource(..., on_metadata=mode.on_metadata)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .config import NightSection
from .errors import FrameError, InvalidArgument

DAY = "day"
NIGHT = "night"

#: |x - 128| for every uint8 value (the chroma deviation table).
_ABS_DEV = np.abs(np.arange(256, dtype=np.int16) - 128).astype(np.uint8)


class ChromaMeter:
    """Mean absolute deviation of the (subsampled) chroma planes of an I420 frame from neutral 128.

    The U and V planes are contiguous after the Y plane, so one strided view of the frame rows ``[height, 1.5 *
    height)`` samples both without copying; the per-frame cost is one ``np.take`` into a preallocated buffer and
    one sum. ``step`` samples every ``step``-th row and column of that region (8 → 1/64 of the chroma).

    Example::

        meter = ChromaMeter(width=320, height=240, step=8)
        meter(frame)        # 0.0 for a gray frame, ~10-40 for ordinary colour scenes
    """

    def __init__(self, *, width: int, height: int, step: int = 8) -> None:
        if step < 1:
            raise InvalidArgument(f"step must be >= 1, got {step}")
        self.width, self.height, self.step = width, height, step
        rows = len(range(height, height * 3 // 2, step))
        cols = len(range(0, width, step))
        self._buf = np.empty((rows, cols), np.uint8)
        self._n = float(rows * cols)

    def __call__(self, frame: np.ndarray) -> float:
        """Chroma deviation of ``frame`` (I420 ``(1.5 * height, width)`` uint8), 0..127."""
        view = frame[self.height :: self.step, :: self.step]
        if view.shape != self._buf.shape:
            raise FrameError(f"expected an I420 frame of {self.width}x{self.height}, got shape {frame.shape}")
        np.take(_ABS_DEV, view, out=self._buf)
        return float(self._buf.sum(dtype=np.uint32)) / self._n


class Clock(Protocol):
    def __call__(self) -> float: ...


class NightMode:
    """Day/night state with hysteresis and minimum dwell, fed by frames (chroma) and camera metadata (lux).

    Thread-safe: frames arrive on the detection thread and metadata on the capture thread. ``mode`` is ``"day"``
    or ``"night"``; ``listeners`` are called with the new mode on every switch (the IR outputs subscribe there).
    A configured ``mode = "day"`` or ``"night"`` pins the state and ignores all evidence.
    """

    def __init__(self, config: NightSection | None = None, *, clock: Clock = time.monotonic) -> None:
        self.config = config or NightSection()
        #: Time source for smoothing and dwell: monotonic seconds on a device; footage replay sets the video's time.
        self.clock = clock
        self._lock = threading.Lock()
        self._meter: ChromaMeter | None = None
        self.listeners: list[Callable[[str], None]] = []
        self.switches = 0
        self.reset()

    def reset(self) -> None:
        """Forget all evidence: the next measurement decides the mode directly (used between still images)."""
        with self._lock:
            pinned = self.config.mode if self.config.mode in (DAY, NIGHT) else None
            self.mode: str = pinned or DAY
            self._pinned = pinned is not None
            self._since = -float("inf")
            self._decided = self._pinned
            self.chroma: float | None = None
            self.lux: float | None = None
            self._t_chroma = self._t_lux = None  # type: float | None

    @property
    def night(self) -> bool:
        return self.mode == NIGHT

    # ------------------------------------------------------------------------------------------------ evidence

    def update(self, frame: np.ndarray, *, width: int, height: int, t: float | None = None) -> bool:
        """Measure ``frame``'s chroma, update the mode, and return True in night mode."""
        meter = self._meter
        if meter is None or meter.width != width or meter.height != height:
            meter = self._meter = ChromaMeter(width=width, height=height, step=self.config.chroma_step)
        value = meter(frame)
        with self._lock:
            now = self.clock() if t is None else t
            self.chroma, self._t_chroma = self._smooth(self.chroma, self._t_chroma, value, now)
            if not self._use_lux():
                self._decide(self.chroma, self.config.chroma_enter, self.config.chroma_leave, now)
            return self.mode == NIGHT

    def on_metadata(self, metadata: dict[str, Any]) -> None:
        """Camera metadata hook (picamera2 ``capture_metadata()`` dicts): uses ``"Lux"`` when present."""
        lux = metadata.get("Lux")
        if isinstance(lux, int | float):
            self.update_lux(float(lux))

    def update_lux(self, lux: float, *, t: float | None = None) -> bool:
        """Feed one lux reading; returns True in night mode."""
        with self._lock:
            now = self.clock() if t is None else t
            self.lux, self._t_lux = self._smooth(self.lux, self._t_lux, lux, now)
            if self._use_lux():
                self._decide(self.lux, self.config.lux_enter, self.config.lux_leave, now)
            return self.mode == NIGHT

    # -------------------------------------------------------------------------------------------------- inside

    def _use_lux(self) -> bool:
        src = self.config.source
        return src == "lux" or (src == "auto" and self.lux is not None)

    def _smooth(self, old: float | None, t_old: float | None, value: float, now: float) -> tuple[float, float]:
        if old is None or t_old is None or self.config.smooth_s <= 0:
            return value, now
        dt = max(0.0, now - t_old)
        a = 1.0 - float(np.exp(-dt / self.config.smooth_s))
        return old + a * (value - old), now

    def _decide(self, value: float, enter: float, leave: float, now: float) -> None:
        if self._pinned:
            return
        if not self._decided:
            # First evidence: no history to hold on to, so the midpoint of the hysteresis band decides.
            self._decided = True
            self._set(NIGHT if value < (enter + leave) / 2 else DAY, now)
            return
        if now - self._since < self.config.dwell_s:
            return
        if self.mode == DAY and value < enter:
            self._set(NIGHT, now)
        elif self.mode == NIGHT and value > leave:
            self._set(DAY, now)

    def _set(self, mode: str, now: float) -> None:
        if mode != self.mode:
            self.switches += 1
        self.mode = mode
        self._since = now
        for fn in list(self.listeners):
            fn(mode)
