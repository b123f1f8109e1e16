"""Privacy masks: owner-drawn polygons blacked out of every frame, lores (before detection) and main (before encode).

What a mask covers never reaches the detector, the encoder or any clip. A mask is built once per frame size: the
polygons are rasterised (pixel centres, even-odd rule) into ROW SPANS per plane — Y at full resolution, U and V at
half resolution, a chroma sample masked when any of its 2x2 luma pixels is — and consecutive rows with the same
spans are merged into rectangles. Per frame that is a few slice fills (one for a rectangular mask); a mask whose
outline changes on most rows falls back to one ``np.copyto(..., where=)`` per plane, whichever is cheaper.

Example::

    mask = PrivacyMask([[(0, 0), (1, 0), (1, 0.3), (0, 0.3)]], width=1920, height=1080)
    source = open_source(capture, main_filters=[mask])       # a mask is a frame filter: mask(frame) in place
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import EventError, FrameError
from .frames import chroma_planes, i420_shape

Polygon = Sequence[tuple[float, float]]
#: Limited-range black and neutral chroma: what a blacked-out region holds.
BLACK_Y = 16
NEUTRAL_UV = 128
#: Above this many rectangles a plane is filled with one masked copy instead.
_MAX_BLOCKS = 160


def rasterise(polygons: Sequence[Polygon], *, width: int, height: int) -> np.ndarray:
    """Boolean ``(height, width)`` mask of the pixels whose centres lie inside any polygon (normalised coords).

    Raises:
        EventError: a polygon has fewer than 3 points or a point outside 0..1.
    """
    out = np.zeros((height, width), dtype=bool)
    yc = (np.arange(height) + 0.5) / height
    for i, poly in enumerate(polygons):
        pts = np.asarray(poly, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[0] < 3 or pts.shape[1] != 2:
            raise EventError(f"mask polygon {i}: needs at least 3 (x, y) points, got {poly!r}")
        if (pts < 0).any() or (pts > 1).any():
            raise EventError(f"mask polygon {i}: points are normalised and must lie within 0..1, got {poly!r}")
        x0, y0 = pts[:, 0], pts[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        # Edge e crosses the row centre line y when y0 <= y < y1 (or the reverse): half-open, so vertices count once.
        lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
        crosses = (yc[:, None] >= lo[None, :]) & (yc[:, None] < hi[None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            xs = x0[None, :] + (yc[:, None] - y0[None, :]) * ((x1 - x0) / (y1 - y0))[None, :]
        xs = np.where(crosses, xs, np.inf)
        xs.sort(axis=1)
        n_cross = crosses.sum(axis=1)
        for k in range(0, int(n_cross.max(initial=0)) - 1, 2):
            rows = np.flatnonzero(n_cross >= k + 2)
            a = np.ceil(xs[rows, k] * width - 0.5).astype(np.int64).clip(0, width)
            b = (np.floor(xs[rows, k + 1] * width - 0.5).astype(np.int64) + 1).clip(0, width)
            for r, ca, cb in zip(rows.tolist(), a.tolist(), b.tolist(), strict=True):
                if cb > ca:
                    out[r, ca:cb] ^= True  # even-odd within one polygon
    return out


def row_spans(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Rectangles ``(y0, y1, x0, x1)`` (half-open) covering ``mask``: per-row runs, equal consecutive rows merged."""
    h, w = mask.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    d = np.diff(padded, axis=1)
    rows_s, cols_s = np.nonzero(d == 1)
    _, cols_e = np.nonzero(d == -1)
    per_row: dict[int, list[tuple[int, int]]] = {}
    for r, a, b in zip(rows_s.tolist(), cols_s.tolist(), cols_e.tolist(), strict=True):
        per_row.setdefault(r, []).append((a, b))
    blocks: list[tuple[int, int, int, int]] = []
    open_: dict[tuple[int, int], int] = {}
    prev: list[tuple[int, int]] = []
    for r in range(h + 1):
        cur = per_row.get(r, []) if r < h else []
        if cur != prev:
            for span, start in open_.items():
                blocks.append((start, r, span[0], span[1]))
            open_ = {span: r for span in cur}
            prev = cur
    return blocks


class _PlanePlan:
    """How one plane is filled: a list of rectangles, or one masked copy when that is cheaper."""

    def __init__(self, mask: np.ndarray, value: int) -> None:
        self.value = value
        self.blocks = row_spans(mask)
        self.where = mask.copy() if len(self.blocks) > _MAX_BLOCKS else None

    def fill(self, plane: np.ndarray) -> None:
        if self.where is not None:
            np.copyto(plane, self.value, where=self.where)
            return
        v = self.value
        for y0, y1, x0, x1 in self.blocks:
            plane[y0:y1, x0:x1] = v


class PrivacyMask:
    """Blacks out polygons in I420 frames of one size, in place. Callable, so it plugs in as a frame filter.

    Args:
        polygons: each a sequence of ``(x, y)`` points normalised to the frame (0..1, origin top left).
        width, height: the frame size this mask is precomputed for (even).
    """

    def __init__(self, polygons: Sequence[Polygon], *, width: int, height: int) -> None:
        self.shape = i420_shape(width, height)
        self.width, self.height = width, height
        y = rasterise(polygons, width=width, height=height)
        c: np.ndarray = np.asarray(y.reshape(height // 2, 2, width // 2, 2).any(axis=(1, 3)))
        self.coverage = float(y.mean())
        self._y = _PlanePlan(y, BLACK_Y)
        self._c = _PlanePlan(c, NEUTRAL_UV)
        self.empty = not y.any()

    @classmethod
    def from_config(cls, masks: Sequence[object], *, width: int, height: int) -> PrivacyMask | None:
        """From ``config.masks`` ([[masks]] entries with ``polygon``); ``None`` when there are none."""
        polys = [m.polygon for m in masks]  # type: ignore[attr-defined]
        return cls(polys, width=width, height=height) if polys else None

    def apply(self, frame: np.ndarray) -> None:
        """Black out the masked region of ``frame`` (an I420 array of this mask's size) in place."""
        if frame.shape != self.shape:
            raise FrameError(f"mask built for {self.width}x{self.height} I420 {self.shape}, "
                             f"got a frame of {frame.shape}")
        if self.empty:
            return
        self._y.fill(frame[: self.height])
        u, v = chroma_planes(frame, self.width, self.height)
        self._c.fill(u)
        self._c.fill(v)

    __call__ = apply
