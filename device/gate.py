"""Motion gate: decides from the lores luma which frames deserve inference.

The Y plane is averaged over ``step`` x ``step`` blocks (cells; averaging, unlike picking one pixel per block,
divides the sensor noise by ``step``) and each cell is compared with a slowly learned background. Three things
that are not a person must not open the gate:

* **sensor noise** (night gain): the block average, and a per-pixel threshold above the noise;
* **light changes**: the difference's local mean is removed (a box blur over ``light_px`` pixels) before
  thresholding, so auto-exposure, a cloud, a porch lamp or headlights sweeping slowly do not count — only changes
  with edges at the scale of a person do;
* **restless background** (foliage in the wind, rain, a flag): each cell learns how much it usually changes (a
  running variance over ``restless_s``), and must change by more than ``restless_k`` times that typical amount.

A cell counts as changed when the remaining difference passes the larger of ``pixel_threshold`` and its own
restless threshold; a frame is motion when more than ``min_changed`` of the cells changed. After motion the gate
stays open for ``hold_s`` seconds, because a person may stand still at the door. Changed cells learn the background
``changed_slower`` times slower than the others, and nothing is learned while the caller tracks a person
(``update(..., learn=False)``): a visitor leaves no ghost, and one who keeps coming back is not learned away.

All buffers are preallocated; one ``update`` is a few dozen numpy passes over ``(h/step) x (w/step)`` values
(BENCHMARKS.md: ``lores_loop_ms``; the noisy-scene figures ``gate_skip_ratio_noisy``, ``gate_missed_events_noisy``).

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
    """Background-difference motion detector with light compensation, learned restlessness and a hold time.

    Args:
        width, height: lores frame size.
        pixel_threshold: luma change (0..255) that counts as changed.
        min_changed: share of cells that must change for motion.
        step: cell size in pixels (the luma is averaged over ``step`` x ``step`` blocks).
        hold_s: stay open this long after the last motion.
        background_s: time constant of the learned background (seconds); shorter forgets still objects faster.
        light_px: width in pixels of the local mean removed from the difference (light changes smoother than this
            are ignored; a person is several times wider).
        restless_s: time constant of each cell's learned typical change.
        restless_k: a cell must change by more than this many times its typical change.
        restless_px: cells learn the restlessness of their neighbourhood (this wide, in pixels) too.
        restless_growth: one frame teaches a cell at most this many times its typical squared change, so a region
            is learned as restless within seconds of steady movement but not from a few frames of a person arriving.
        changed_slower: changed cells learn the background this many times slower than ``background_s``.
    """

    def __init__(self, *, width: int, height: int, pixel_threshold: int = 20, min_changed: float = 0.003,
                 step: int = 2, hold_s: float = 3.0, background_s: float = 2.0, light_px: int = 24,
                 restless_s: float = 10.0, restless_k: float = 4.0, restless_px: int = 8,
                 restless_growth: float = 8.0, changed_slower: float = 10.0) -> None:
        self.width = width
        self.height = height
        self.pixel_threshold = float(pixel_threshold)
        self.min_changed = min_changed
        self.step = step
        self.hold_s = hold_s
        self.background_s = background_s
        self.restless_s = restless_s
        self.restless_k = restless_k
        self.restless_growth = restless_growth
        self.changed_slower = changed_slower
        rows, cols = max(1, height // step), max(1, width // step)
        shape = (rows, cols)
        self._n = rows * cols
        self._cur = np.zeros(shape, dtype=np.float32)
        self._bg = np.zeros(shape, dtype=np.float32)
        self._diff = np.zeros(shape, dtype=np.float32)
        self._var = np.zeros(shape, dtype=np.float32)  # each cell's typical squared change (restlessness)
        self._sq = np.zeros(shape, dtype=np.float32)
        self._raw = np.zeros(shape, dtype=np.float32)
        self._thr = np.zeros(shape, dtype=np.float32)
        self._var_near = np.zeros(shape, dtype=np.float32)
        self._mask = np.zeros(shape, dtype=bool)
        self._blur = _BoxBlur(shape, radius=max(1, round(light_px / step / 2)))
        self._spread = _BoxBlur(shape, radius=round(restless_px / step / 2)) if restless_px else None
        self._t_last: float | None = None
        self._t_motion = -math.inf
        #: Share of cells that changed in the last update.
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
        """Forget the background (the next frame becomes it) and what each cell learned about its restlessness."""
        self._t_last = None
        self._t_motion = -math.inf

    def _cells(self, frame: np.ndarray) -> None:
        """Average the Y plane over step x step blocks into ``_cur`` (a handful of strided adds, no allocation)."""
        s = self.step
        rows, cols = self._cur.shape
        y = frame[: rows * s, : cols * s]
        cur = self._cur
        np.copyto(cur, y[::s, ::s], casting="unsafe")
        tmp = self._sq  # free until update squares the difference into it
        for dy in range(s):
            for dx in range(s):
                if dy or dx:  # cast into a float buffer first: a mixed-type add would allocate ufunc buffers
                    np.copyto(tmp, y[dy::s, dx::s], casting="unsafe")
                    cur += tmp
        if s > 1:
            cur *= 1.0 / (s * s)

    def update(self, frame: np.ndarray, t: float, *, learn: bool = True) -> bool:
        """Feed one lores I420 frame captured at monotonic time ``t``; True when inference should run.

        ``learn=False`` while a person is being tracked: the gate then learns nothing from the frame (neither
        background nor restlessness), because what changes is the person. Otherwise a visitor standing at the door
        leaves a ghost in the background when they go, and a visitor who comes back (a courier walking to and fro)
        teaches the doorstep to ignore people.
        """
        self._cells(frame)
        if self._t_last is None:
            np.copyto(self._bg, self._cur)
            self._var.fill(0.0)
            self._t_last = t
            self.changed = 0.0
            self.motion = False
            return False
        dt = max(0.0, t - self._t_last)
        self._t_last = t
        d = self._diff
        np.subtract(self._cur, self._bg, out=d)
        np.copyto(self._raw, d)  # kept for the background update below
        # Light: remove the difference's local mean (smooth in space), keep what has edges.
        d -= self._blur(d)
        sq = np.square(d, out=self._sq)
        # Restlessness: threshold each cell at max(pixel_threshold, k * its typical change), then learn from this
        # frame. What a frame teaches is capped at ``restless_growth`` x the cell's typical squared change, so the
        # typical change can grow by at most e^((growth-1)/restless_s) per second: swaying leaves are learned within
        # seconds, while the few frames of a person arriving (before the tracker takes over) teach almost nothing.
        var = self._var if self._spread is None else np.maximum(self._var, self._spread(self._var), out=self._var_near)
        thr = np.multiply(var, self.restless_k ** 2, out=self._thr)
        np.maximum(thr, self.pixel_threshold ** 2, out=thr)
        np.greater(sq, thr, out=self._mask)
        self.changed = np.count_nonzero(self._mask) / self._n
        self.motion = bool(self.changed > self.min_changed)
        # Learn the background: bg += alpha * (cur - bg), alpha from the elapsed time (frame-rate independent).
        # Changed cells learn ``changed_slower`` times slower (something new is absorbed in tens of seconds, and a
        # person arriving leaves no ghost in the background); nothing is learned while a person is tracked.
        alpha = 0.0 if not learn else 1.0 - math.exp(-dt / self.background_s) if self.background_s > 0 else 1.0
        raw = np.multiply(self._raw, alpha, out=self._raw)
        np.multiply(raw, 1.0 / self.changed_slower, out=raw, where=self._mask)
        self._bg += raw
        beta = 1.0 - math.exp(-dt / self.restless_s) if self.restless_s > 0 and learn else 0.0
        thr *= self.restless_growth / self.restless_k ** 2  # = growth x the cell's typical change (or its floor)
        np.minimum(sq, thr, out=sq)
        sq -= self._var
        sq *= beta
        self._var += sq
        if self.motion:
            self._t_motion = t
        return t - self._t_motion <= self.hold_s


class _BoxBlur:
    """Mean over a ``(2r+1)`` x ``(2r+1)`` window (clipped at the edges) of a float32 array, by cumulative sums into
    preallocated buffers: O(1) per cell whatever the radius, no allocation per call."""

    def __init__(self, shape: tuple[int, int], *, radius: int) -> None:
        rows, cols = shape
        self._cs_r = np.zeros((rows + 1, cols), np.float32)
        self._cs_c = np.zeros((rows, cols + 1), np.float32)
        self._a = np.zeros(shape, np.float32)
        self._b = np.zeros(shape, np.float32)
        self._out = np.zeros(shape, np.float32)
        self._hi_r, self._lo_r = _window(rows, radius)
        self._hi_c, self._lo_c = _window(cols, radius)
        n = np.outer(self._hi_r - self._lo_r, self._hi_c - self._lo_c).astype(np.float32)
        self._inv_n = 1.0 / n

    def __call__(self, src: np.ndarray) -> np.ndarray:
        a, b, out = self._a, self._b, self._out
        np.cumsum(src, axis=0, out=self._cs_r[1:])
        np.take(self._cs_r, self._hi_r, axis=0, out=a, mode="clip")
        np.take(self._cs_r, self._lo_r, axis=0, out=b, mode="clip")
        np.subtract(a, b, out=a)  # column sums over the row window
        np.cumsum(a, axis=1, out=self._cs_c[:, 1:])
        np.take(self._cs_c, self._hi_c, axis=1, out=out, mode="clip")
        np.take(self._cs_c, self._lo_c, axis=1, out=b, mode="clip")
        np.subtract(out, b, out=out)
        out *= self._inv_n
        return out


def _window(n: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """End (exclusive) and start of each index's window in a cumulative sum with a leading zero."""
    i = np.arange(n)
    return np.minimum(i + r + 1, n), np.maximum(i - r, 0)
