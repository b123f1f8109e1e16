"""Decoders against hand-computed anchors and hand-made tensors (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from doorkeep.device.detect.decoders.blazepose import (
    BlazePoseDecoder,
    ssd_anchors,
    weighted_nms,
)
from doorkeep.device.detect.decoders.ssd_postprocess import (
    SsdPostprocessDecoder,
    person_class_from_labels,
)
from doorkeep.device.detect.preprocess import Letterbox


def test_anchor_count_and_hand_computed_positions():
    a = ssd_anchors()
    assert a.shape == (2254, 2)
    # stride 8: 28x28 cells, 2 anchors each, row-major; centre of cell (col, row) = ((col+.5)/28, (row+.5)/28)
    assert a[0] == pytest.approx((0.5 / 28, 0.5 / 28)) and a[1] == pytest.approx(a[0])
    assert a[2] == pytest.approx((1.5 / 28, 0.5 / 28))
    assert a[2 * 28] == pytest.approx((0.5 / 28, 1.5 / 28))
    assert a[1567] == pytest.approx((27.5 / 28, 27.5 / 28))
    # stride 16 starts at 28*28*2 = 1568: 14x14 cells, 2 anchors each
    assert a[1568] == pytest.approx((0.5 / 14, 0.5 / 14))
    assert a[1568 + 2 * 15] == pytest.approx((1.5 / 14, 1.5 / 14))
    # the three stride-32 layers share one 7x7 grid: 6 anchors per cell, starting at 1568 + 392 = 1960
    assert np.allclose(a[1960:1966], (0.5 / 7, 0.5 / 7))
    assert a[1966] == pytest.approx((1.5 / 7, 0.5 / 7))
    assert a[2253] == pytest.approx((6.5 / 7, 6.5 / 7))


def _raw(entries):
    """Hand-made outputs: entries of (anchor, logit, [12 coords in 224-pixel units])."""
    boxes = np.zeros((1, 2254, 12), np.float32)
    scores = np.full((1, 2254, 1), -10.0, np.float32)
    for i, logit, coords in entries:
        boxes[0, i] = coords
        scores[0, i, 0] = logit
    return boxes, scores


def test_blazepose_decodes_one_person_to_the_hand_computed_box():
    a = ssd_anchors()
    i = 1960 + 6 * (3 * 7 + 3)  # stride-32 cell (3, 3): anchor centre (0.5, 0.5)
    assert a[i] == pytest.approx((0.5, 0.5))
    # face box centred 22.4 px right/up of the anchor, 22.4 px wide; hips at the anchor; body radius 44.8 px.
    coords = [22.4, -22.4, 22.4, 22.4, 0, 0, 0, 44.8, 0, 0, 0, 0]
    dec = BlazePoseDecoder(threshold=0.5)
    (d,) = dec.decode(*_raw([(i, 2.0, coords)]), Letterbox())
    assert d.score == pytest.approx(1 / (1 + np.exp(-2.0)))
    # body square: hips (0.5, 0.5) +- 0.2; face box (0.55..0.65, 0.35..0.45) is inside it
    assert (d.x0, d.y0, d.x1, d.y1) == pytest.approx((0.3, 0.3, 0.7, 0.7), abs=1e-5)
    assert dec.max_score == pytest.approx(d.score)


def test_blazepose_undoes_the_letterbox():
    i = 1960 + 6 * (3 * 7 + 3)
    coords = [0, 0, 10, 10, 0, 0, 0, 22.4, 0, 0, 0, 0]  # hips at (0.5, 0.5), radius 0.1
    # a 4:3 frame letterboxed into 224x224: content rows 0.125..0.875 of the input
    (d,) = BlazePoseDecoder().decode(*_raw([(i, 3.0, coords)]), Letterbox(x0=0, y0=0.125, w=1, h=0.75))
    assert (d.x0, d.x1) == pytest.approx((0.4, 0.6), abs=1e-5)
    assert (d.y0, d.y1) == pytest.approx((0.5 - 0.1 / 0.75, 0.5 + 0.1 / 0.75), abs=1e-5)


def test_blazepose_threshold_and_score_clipping():
    i = 100
    dec = BlazePoseDecoder(threshold=0.5)
    assert dec.decode(*_raw([(i, -0.1, [0] * 4 + [0, 0, 0, 10] + [0] * 4)]), Letterbox()) == []
    assert dec.max_score == pytest.approx(1 / (1 + np.exp(0.1)))
    dets = dec.decode(*_raw([(i, 1e9, [0] * 4 + [0, 0, 0, 10] + [0] * 4)]), Letterbox())
    assert len(dets) == 1 and dets[0].score == pytest.approx(1.0) and np.isfinite(dets[0].score)


def test_weighted_nms_merges_overlaps_by_score_and_keeps_separate_people():
    boxes = np.array([[0.0, 0.0, 0.2, 0.2], [0.02, 0.0, 0.22, 0.2], [0.6, 0.6, 0.8, 0.8]], np.float32)
    scores = np.array([0.9, 0.6, 0.7], np.float32)
    rows = np.array([[1.0], [2.0], [5.0]], np.float32)
    out = weighted_nms(boxes, scores, rows, min_suppression=0.3)
    assert [s for s, _ in out] == pytest.approx([0.9, 0.7])
    assert out[0][1][0] == pytest.approx((0.9 * 1 + 0.6 * 2) / 1.5)
    assert out[1][1][0] == pytest.approx(5.0)


def test_two_people_far_apart_give_two_detections():
    a = ssd_anchors()
    left = 1960 + 6 * (3 * 7 + 1)
    right = 1960 + 6 * (3 * 7 + 5)
    kp = [0, 0, 20, 20, 0, 0, 0, 20, 0, 0, 0, 0]  # 20-px face boxes: the two at one anchor overlap fully
    dets = BlazePoseDecoder().decode(*_raw([(left, 2.0, kp), (left + 1, 1.0, kp), (right, 3.0, kp)]), Letterbox())
    assert len(dets) == 2 and dets[0].score > dets[1].score
    assert dets[0].centre[0] == pytest.approx(a[right][0], abs=1e-5)


def _ssd(rows, count=None):
    n = 10
    boxes = np.zeros((1, n, 4), np.float32)
    classes = np.zeros((1, n), np.float32)
    scores = np.zeros((1, n), np.float32)
    for i, (box, cls, score) in enumerate(rows):
        boxes[0, i], classes[0, i], scores[0, i] = box, cls, score
    return {"boxes": boxes, "classes": classes, "scores": scores,
            "count": np.array([len(rows) if count is None else count], np.float32)}


def test_ssd_postprocess_keeps_only_people_above_threshold():
    out = _ssd([((0.1, 0.2, 0.5, 0.4), 0, 0.8), ((0.0, 0.0, 1.0, 1.0), 2, 0.99), ((0.5, 0.5, 0.9, 0.9), 0, 0.3)])
    dec = SsdPostprocessDecoder(threshold=0.5, person_class=0)
    (d,) = dec.decode(out, Letterbox())
    assert (d.score, d.x0, d.y0, d.x1, d.y1) == pytest.approx((0.8, 0.2, 0.1, 0.4, 0.5))
    assert dec.max_score == pytest.approx(0.8)


def test_ssd_postprocess_respects_count_and_letterbox():
    out = _ssd([((0.25, 0.0, 0.75, 0.5), 0, 0.9), ((0.0, 0.0, 1.0, 1.0), 0, 0.95)], count=1)
    (d,) = SsdPostprocessDecoder(threshold=0.5).decode(out, Letterbox(x0=0, y0=0.125, w=1, h=0.75))
    assert (d.y0, d.y1) == pytest.approx(((0.25 - 0.125) / 0.75, (0.75 - 0.125) / 0.75))


def test_ssd_postprocess_names_missing_outputs():
    from doorkeep.device.errors import ModelError

    with pytest.raises(ModelError, match="count"):
        SsdPostprocessDecoder().decode({"boxes": np.zeros((1, 1, 4)), "classes": np.zeros((1, 1)),
                                        "scores": np.zeros((1, 1))}, Letterbox())


def test_person_class_from_labels():
    assert person_class_from_labels(["person", "bicycle"], default=7) == 0
    assert person_class_from_labels(["???", "person"], default=7) == 1
    assert person_class_from_labels(["0  person", "1  bicycle"], default=7) == 0
    assert person_class_from_labels(["cat"], default=7) == 7
