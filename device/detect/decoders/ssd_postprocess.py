"""Decoder for the standard four-output ``TFLite_Detection_PostProcess`` format (Frigate's and Coral's COCO models).

Outputs (already non-max suppressed inside the model): ``boxes`` ``[1, N, 4]`` as ``ymin, xmin, ymax, xmax``
normalised to the model input, ``classes`` ``[1, N]`` (float class indices into the labels file), ``scores``
``[1, N]`` and ``count`` ``[1]`` (valid rows). Output order differs between exporters, so the manifest names them
(``[output] names``). Only rows of the person class at or above the threshold become :class:`Detection` s.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ...detections import Detection
from ...errors import ModelError
from ..preprocess import Letterbox

OUTPUT_NAMES = ("boxes", "classes", "scores", "count")


def person_class_from_labels(labels: tuple[str, ...] | list[str], *, default: int) -> int:
    """Index of the ``person`` label (Coral-style ``"0 person"`` lines too), else ``default``."""
    for i, line in enumerate(labels):
        parts = line.split(maxsplit=1)
        if parts and parts[-1].strip().lower() == "person":
            return int(parts[0]) if len(parts) == 2 and parts[0].isdigit() else i
    return default


class SsdPostprocessDecoder:
    """``{boxes, classes, scores, count}`` -> person detections in frame coordinates (letterbox undone)."""

    def __init__(self, *, threshold: float = 0.5, person_class: int = 0) -> None:
        self.threshold = threshold
        self.person_class = person_class
        self.max_score = 0.0

    def decode(self, outputs: Mapping[str, np.ndarray], letterbox: Letterbox) -> list[Detection]:
        missing = [n for n in OUTPUT_NAMES if n not in outputs]
        if missing:
            raise ModelError(f"ssd_postprocess decoder needs outputs {OUTPUT_NAMES}, missing {missing}")
        boxes = np.asarray(outputs["boxes"], np.float32).reshape(-1, 4)
        classes = np.asarray(outputs["classes"]).reshape(-1)
        scores = np.asarray(outputs["scores"], np.float32).reshape(-1)
        n = min(int(np.asarray(outputs["count"]).reshape(-1)[0]), len(scores), len(boxes))
        person = np.rint(classes[:n]).astype(np.int64) == self.person_class
        self.max_score = float(scores[:n][person].max()) if person.any() else 0.0
        keep = np.flatnonzero(person & (scores[:n] >= self.threshold))
        lb = letterbox
        out = []
        for i in keep[np.argsort(-scores[keep], kind="stable")]:
            ymin, xmin, ymax, xmax = (float(v) for v in boxes[i])
            x0 = min(max((xmin - lb.x0) / lb.w, 0.0), 1.0)
            x1 = min(max((xmax - lb.x0) / lb.w, 0.0), 1.0)
            y0 = min(max((ymin - lb.y0) / lb.h, 0.0), 1.0)
            y1 = min(max((ymax - lb.y0) / lb.h, 0.0), 1.0)
            out.append(Detection(score=float(scores[i]), x0=min(x0, x1), y0=min(y0, y1),
                                 x1=max(x0, x1), y1=max(y0, y1)))
        return out
