"""Tiling for small, far-away people: the model also looks at overlapping parts of the frame, magnified.

A 300x300 detector sees a 320x240 lores frame at ~0.94x; a pedestrian 20 pixels tall across a plaza is below what
its smallest anchors resolve. Each tile is preprocessed like a frame of its own (its own letterbox), so a 2x2 grid
shows the model every part of the frame at ~1.6x. Detections of the whole frame and of every tile are mapped back to
frame coordinates and merged by greedy non-maximum suppression (a person seen in two tiles is one person).

Example::

    tile_grid(320, 240, cols=2, rows=2, overlap=0.2)   # [(0, 0, 192, 144), (128, 0, 192, 144), ...]
"""

from __future__ import annotations

from ..detections import Detection
from ..errors import InvalidArgument

#: Boxes overlapping more than this (intersection over union) are one person.
MERGE_IOU = 0.5


def _even(v: float) -> int:
    return round(v / 2) * 2


def tile_grid(width: int, height: int, *, cols: int, rows: int,
              overlap: float = 0.2) -> list[tuple[int, int, int, int]]:
    """``cols`` x ``rows`` even-aligned tiles ``(x0, y0, w, h)`` covering the frame, neighbours sharing ``overlap``
    of a tile's size."""
    if cols < 1 or rows < 1 or not 0.0 <= overlap < 1.0:
        raise InvalidArgument(f"tiles: cols {cols} and rows {rows} must be >= 1 and overlap {overlap} within [0, 1)")

    def axis(n: int, size: int) -> list[tuple[int, int]]:
        if n == 1:
            return [(0, size)]
        span = size / (n - (n - 1) * overlap)
        t = min(size, _even(span))
        return [(min(_even(i * span * (1 - overlap)), size - t), t) for i in range(n)]

    return [(x, y, w, h) for (y, h) in axis(rows, height) for (x, w) in axis(cols, width)]


def to_frame(d: Detection, tile: tuple[int, int, int, int], width: int, height: int) -> Detection:
    """A detection in tile coordinates (normalised to the tile) -> normalised frame coordinates."""
    tx, ty, tw, th = tile
    return Detection(score=d.score, x0=(tx + d.x0 * tw) / width, y0=(ty + d.y0 * th) / height,
                     x1=(tx + d.x1 * tw) / width, y1=(ty + d.y1 * th) / height)


def _iou(a: Detection, b: Detection) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def merge(dets: list[Detection], *, iou: float = MERGE_IOU) -> list[Detection]:
    """Greedy NMS over a handful of boxes: best first; a box overlapping a kept one by more than ``iou`` is dropped."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(_iou(d, k) <= iou for k in kept):
            kept.append(d)
    return kept
