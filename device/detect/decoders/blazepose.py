"""Decoder for MediaPipe's BlazePose person detector (pose_detection.tflite): SSD anchors, sigmoid, weighted NMS.

The model predicts, per anchor, a box (centre x, y, width, height) and 4 keypoints in 224-pixel units relative to
the anchor centre, plus one score logit. The anchor grid is MediaPipe's SSD scheme for pose detection: 5 layers with
strides 8, 16, 32, 32, 32 over a 224x224 input, anchor offset 0.5, fixed anchor size (width = height = 1) and two
anchors per layer and cell (aspect ratio 1 plus the interpolated scale), layers of equal stride sharing one grid:
28*28*2 + 14*14*2 + 7*7*6 = 2254 anchors.

The predicted box is the FACE box; keypoint 0 is the hip midpoint and keypoint 1 lies on the circle that encloses
the whole body (MediaPipe's pose ROI is centred on keypoint 0 with radius |kp1 - kp0|). A doorbell needs the person,
so :class:`Detection` boxes here are that body circle's square, united with the face box, in FRAME coordinates.
"""

from __future__ import annotations

import numpy as np

from ...detections import Detection
from ..preprocess import Letterbox

INPUT_SIZE = 224
STRIDES = (8, 16, 32, 32, 32)
ANCHOR_OFFSET = 0.5
NUM_ANCHORS = 2254
NUM_COORDS = 12
SCORE_CLIP = 100.0
MIN_SUPPRESSION = 0.3


def ssd_anchors(*, input_size: int = INPUT_SIZE, strides: tuple[int, ...] = STRIDES,
                offset: float = ANCHOR_OFFSET) -> np.ndarray:
    """Anchor centres ``(N, 2)`` as normalised ``(x, y)`` (fixed anchor size: every width and height is 1).

    Consecutive layers with the same stride share one feature map; each layer adds 2 anchors per cell. Order:
    stride group, then row, then column, then anchor within the cell.
    """
    out: list[np.ndarray] = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        fm = -(-input_size // strides[i])  # ceil
        ys, xs = np.meshgrid((np.arange(fm) + offset) / fm, (np.arange(fm) + offset) / fm, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(grid, per_cell, axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, rows: np.ndarray, *,
                 min_suppression: float = MIN_SUPPRESSION) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression.

    ``boxes`` ``(N, 4)`` are ``x0, y0, x1, y1`` used for overlap; ``rows`` ``(N, K)`` are the values averaged (by
    score) over each cluster of boxes overlapping the best remaining one by IoU > ``min_suppression``. Returns
    ``(best score, averaged row)`` per cluster, best first.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, rows = boxes[order], scores[order], rows[order]
    area = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    alive = np.ones(len(scores), dtype=bool)
    out: list[tuple[float, np.ndarray]] = []
    for i in range(len(scores)):
        if not alive[i]:
            continue
        b = boxes[i]
        iw = np.clip(np.minimum(boxes[:, 2], b[2]) - np.maximum(boxes[:, 0], b[0]), 0, None)
        ih = np.clip(np.minimum(boxes[:, 3], b[3]) - np.maximum(boxes[:, 1], b[1]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(area + area[i] - inter, 1e-9)
        member = alive & (iou > min_suppression)
        member[i] = True
        w = scores[member]
        out.append((float(scores[i]), (rows[member] * w[:, None]).sum(axis=0) / w.sum()))
        alive &= ~member
    return out


class BlazePoseDecoder:
    """Raw outputs ``[1,2254,12]`` + ``[1,2254,1]`` -> person :class:`Detection` list in frame coordinates.

    ``max_score`` holds the best sigmoid score of the last call (what ``doorkeep eval`` reports per image).
    """

    def __init__(self, *, threshold: float = 0.5, min_suppression: float = MIN_SUPPRESSION) -> None:
        self.threshold = threshold
        self.min_suppression = min_suppression
        self.anchors = ssd_anchors()
        self.max_score = 0.0

    def decode(self, raw_boxes: np.ndarray, raw_scores: np.ndarray, letterbox: Letterbox) -> list[Detection]:
        logits = np.clip(raw_scores.reshape(-1), -SCORE_CLIP, SCORE_CLIP)
        best = int(np.argmax(logits))
        self.max_score = float(1.0 / (1.0 + np.exp(-logits[best])))
        # Sigmoid is monotonic: filter on the logit, compute sigmoid only for the survivors.
        thr_logit = np.log(self.threshold / (1.0 - self.threshold))
        keep = np.flatnonzero(logits >= thr_logit)
        if keep.size == 0:
            return []
        raw = raw_boxes.reshape(-1, NUM_COORDS)[keep].astype(np.float32) / INPUT_SIZE
        anchors = self.anchors[keep]
        scores = 1.0 / (1.0 + np.exp(-logits[keep]))
        # coords: [xc, yc, w, h, kx0, ky0, ..., kx3, ky3]; offsets are relative to the anchor centre.
        pts = raw.copy()
        pts[:, 0:2] += anchors
        pts[:, 4::2] += anchors[:, :1]
        pts[:, 5::2] += anchors[:, 1:]
        face = np.stack([pts[:, 0] - pts[:, 2] / 2, pts[:, 1] - pts[:, 3] / 2,
                         pts[:, 0] + pts[:, 2] / 2, pts[:, 1] + pts[:, 3] / 2], axis=1)
        rows = np.concatenate([face, pts[:, 4:]], axis=1)
        result: list[Detection] = []
        for score, row in weighted_nms(face, scores, rows, min_suppression=self.min_suppression):
            result.append(_person_box(score, row, letterbox))
        return result


def _person_box(score: float, row: np.ndarray, lb: Letterbox) -> Detection:
    fx0, fy0, fx1, fy1, hx, hy, ex, ey = (float(v) for v in row[:8])
    r = float(np.hypot(ex - hx, ey - hy))
    x0, y0 = min(hx - r, fx0), min(hy - r, fy0)
    x1, y1 = max(hx + r, fx1), max(hy + r, fy1)

    def fx(x: float) -> float:
        return min(max((x - lb.x0) / lb.w, 0.0), 1.0)

    def fy(y: float) -> float:
        return min(max((y - lb.y0) / lb.h, 0.0), 1.0)

    return Detection(score=score, x0=fx(x0), y0=fy(y0), x1=fx(x1), y1=fy(y1))
