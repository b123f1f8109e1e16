"""Night mode: is it night (dark, the camera seeing grayscale/infrared) or day?

Two kinds of evidence, one state machine:

* **The frame** (any source: files, webcams, the Pi): at night a NoIR camera under an IR illuminator, or a camera
  switched to grayscale, gives lores I420 frames whose U and V planes sit flat around 128 AND whose luma is low.
  Chroma alone is not enough: a daylit colour scene of a grey wall (the demo's brick wall) is flat too, but bright.
  :class:`FrameMeter` measures both on a subsampled grid into preallocated buffers, in microseconds: the mean
  absolute deviation of U and V from 128 (0 = perfectly gray; 0..127) and the mean luma (16 = black .. 235 = white).
  Night = chroma below ``chroma_enter`` and luma below ``luma_enter``; day again = chroma above ``chroma_leave``
  or luma above ``luma_leave``.
* **The camera** (the Pi): libcamera reports in each frame's metadata an estimated scene brightness (``"Lux"``)
  and the exposure it needed (``"ExposureTime"`` in microseconds, ``"AnalogueGain"``). picamera2 sources pass it
  through their ``on_metadata`` hook to :meth:`NightMode.on_metadata`. Night = lux below ``lux_enter`` or the
  exposure (milliseconds x gain) above ``exposure_enter``; day again = lux above ``lux_leave`` and the exposure
  below ``exposure_leave`` (either measure alone when the camera reports only one).

:class:`NightMode` smooths every measure (exponential moving average, time constant ``smooth_s``) and switches with
hysteresis, never sooner than ``dwell_s`` after the last switch, so a noisy dusk does not flap the mode (and the IR
illuminator and IR-cut filter that follow it). With ``source = "auto"`` the camera decides once it has reported
(an IR-cut filter left out turns a daylit frame gray, so the frame alone could never leave night on such a camera);
without camera metadata, the frame decides. Every switch is logged once at INFO with the evidence.

Example::

    mode = NightMode(NightSection())
    night = mode.update(frame)                           # True in night mode; frame: I420 uint8
    source = PicameraSource(..., on_metadata=mode.on_metadata)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from .activity import log as activity
from .config import NightSection
from .errors import FrameError, InvalidArgument

log = logging.getLogger(__name__)

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


class FrameMeter:
    """Chroma deviation (:class:`ChromaMeter`) and mean luma of the same subsampled grid, per frame.

    Example::

        meter = FrameMeter(width=320, height=240)
        chroma, luma = meter(frame)     # (0.0, 118.3) for a bright gray frame
    """

    def __init__(self, *, width: int, height: int, step: int = 8) -> None:
        self.width, self.height, self.step = width, height, step
        self.chroma = ChromaMeter(width=width, height=height, step=step)
        self._n = float(len(range(0, height, step)) * len(range(0, width, step)))

    def __call__(self, frame: np.ndarray) -> tuple[float, float]:
        c = self.chroma(frame)
        luma = float(frame[: self.height : self.step, :: self.step].sum(dtype=np.uint32)) / self._n
        return c, luma


class Clock(Protocol):
    def __call__(self) -> float: ...


class _Ema:
    """One smoothed measure (exponential moving average on the mode's clock)."""

    __slots__ = ("t", "value")

    def __init__(self) -> None:
        self.value: float | None = None
        self.t: float | None = None

    def add(self, v: float, now: float, smooth_s: float) -> float:
        if self.value is None or self.t is None or smooth_s <= 0:
            self.value = v
        else:
            self.value += (1.0 - float(np.exp(-max(0.0, now - self.t) / smooth_s))) * (v - self.value)
        self.t = now
        return self.value


class NightMode:
    """Day/night state with hysteresis and minimum dwell, fed by frames (chroma + luma) and camera metadata (lux,
    exposure time x analogue gain).

    Thread-safe: frames arrive on the detection thread and metadata on the capture thread. ``mode`` is ``"day"``
    or ``"night"``; ``listeners`` are called with the new mode on every switch (the IR outputs subscribe there).
    A configured ``mode = "day"`` or ``"night"`` pins the state and ignores all evidence.
    """

    def __init__(self, config: NightSection | None = None, *, clock: Clock = time.monotonic) -> None:
        self.config = config or NightSection()
        #: Time source for smoothing and dwell: monotonic seconds on a device; footage replay sets the video's time.
        self.clock = clock
        self._lock = threading.Lock()
        self._meter: FrameMeter | None = None
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
            self._chroma, self._luma, self._lux, self._exposure = _Ema(), _Ema(), _Ema(), _Ema()

    @property
    def night(self) -> bool:
        return self.mode == NIGHT

    @property
    def chroma(self) -> float | None:
        return self._chroma.value

    @property
    def luma(self) -> float | None:
        return self._luma.value

    @property
    def lux(self) -> float | None:
        return self._lux.value

    @property
    def exposure(self) -> float | None:
        """Smoothed exposure time (ms) x analogue gain, when the camera reports them."""
        return self._exposure.value

    # ------------------------------------------------------------------------------------------------ evidence

    def update(self, frame: np.ndarray, *, width: int | None = None, height: int | None = None,
               t: float | None = None) -> bool:
        """Measure ``frame`` (I420; its size comes from the array), update the mode, and return True at night."""
        h, w = frame.shape[0] * 2 // 3, frame.shape[1]
        meter = self._meter
        if meter is None or meter.width != w or meter.height != h:
            meter = self._meter = FrameMeter(width=w, height=h, step=self.config.chroma_step)
        chroma, luma = meter(frame)
        cfg = self.config
        with self._lock:
            now = self.clock() if t is None else t
            c = self._chroma.add(chroma, now, cfg.smooth_s)
            y = self._luma.add(luma, now, cfg.smooth_s)
            if not self._use_camera():
                self._decide(enter=c < cfg.chroma_enter and y < cfg.luma_enter,
                             leave=c > cfg.chroma_leave or y > cfg.luma_leave,
                             first=c < (cfg.chroma_enter + cfg.chroma_leave) / 2
                             and y < (cfg.luma_enter + cfg.luma_leave) / 2,
                             now=now, why=f"chroma {c:.1f}, luma {y:.0f}")
            return self.mode == NIGHT

    def on_metadata(self, metadata: dict[str, Any]) -> None:
        """Camera metadata hook (picamera2 ``capture_metadata()`` dicts): ``Lux``, ``ExposureTime`` (µs) and
        ``AnalogueGain``; a dict with none of them is ignored."""
        lux = metadata.get("Lux")
        et, gain = metadata.get("ExposureTime"), metadata.get("AnalogueGain")
        exposure = et / 1000.0 * gain if isinstance(et, int | float) and isinstance(gain, int | float) else None
        if isinstance(lux, int | float) or exposure is not None:
            self.update_camera(lux=float(lux) if isinstance(lux, int | float) else None, exposure=exposure)

    def update_lux(self, lux: float, *, t: float | None = None) -> bool:
        """Feed one lux reading; returns True in night mode."""
        return self.update_camera(lux=lux, t=t)

    def update_camera(self, *, lux: float | None = None, exposure: float | None = None,
                      t: float | None = None) -> bool:
        """Feed the camera's lux and/or exposure (ms x analogue gain); returns True in night mode."""
        cfg = self.config
        with self._lock:
            now = self.clock() if t is None else t
            lx = self._lux.add(lux, now, cfg.smooth_s) if lux is not None else self._lux.value
            ex = self._exposure.add(exposure, now, cfg.smooth_s) if exposure is not None else self._exposure.value
            if self._use_camera():
                dark = [v < cfg.lux_enter for v in (lx,) if v is not None] + \
                       [v > cfg.exposure_enter for v in (ex,) if v is not None]
                bright = [v > cfg.lux_leave for v in (lx,) if v is not None] + \
                         [v < cfg.exposure_leave for v in (ex,) if v is not None]
                first = [v < (cfg.lux_enter + cfg.lux_leave) / 2 for v in (lx,) if v is not None] + \
                        [v > (cfg.exposure_enter + cfg.exposure_leave) / 2 for v in (ex,) if v is not None]
                self._decide(enter=any(dark), leave=all(bright), first=any(first), now=now,
                             why=f"lux {lx if lx is None else round(lx, 1)}, exposure "
                                 f"{ex if ex is None else round(ex, 1)} ms x gain")
            return self.mode == NIGHT

    # -------------------------------------------------------------------------------------------------- inside

    def _use_camera(self) -> bool:
        src = self.config.source
        return src == "lux" or (src == "auto" and (self._lux.value is not None or self._exposure.value is not None))

    def _decide(self, *, enter: bool, leave: bool, first: bool, now: float, why: str) -> None:
        if self._pinned:
            return
        if not self._decided:
            # First evidence: no history to hold on to, so the midpoint of each hysteresis band decides.
            self._decided = True
            self._set(NIGHT if first else DAY, now, why, first=True)
            return
        if now - self._since < self.config.dwell_s:
            return
        if self.mode == DAY and enter:
            self._set(NIGHT, now, why)
        elif self.mode == NIGHT and leave:
            self._set(DAY, now, why)

    def _set(self, mode: str, now: float, why: str, *, first: bool = False) -> None:
        if mode != self.mode:
            self.switches += 1
            # Once per switch; a first judgement (start, or a reset between still images) is not news.
            (log.debug if first else activity.info)("night mode: %s -> %s (%s)", self.mode, mode, why)
        self.mode = mode
        self._since = now
        for fn in list(self.listeners):
            fn(mode)
