"""Privacy masks: rasterisation, row spans, in-place blackout of both planes."""

from __future__ import annotations

import numpy as np
import pytest
from doorkeep.device.errors import EventError
from doorkeep.device.frames import chroma_planes
from doorkeep.device.masks import BLACK_Y, NEUTRAL_UV, PrivacyMask, rasterise, row_spans
from hypothesis import given, settings
from hypothesis import strategies as st


def test_rectangle_rasterises_to_pixel_centres_and_one_span():
    m = rasterise([[(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)]], width=8, height=8)
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    assert (m == expected).all()
    assert row_spans(m) == [(2, 6, 2, 6)]


def test_triangle_and_union_of_polygons():
    tri = rasterise([[(0, 0), (1, 1), (0, 1)]], width=4, height=4)
    assert tri.sum(axis=1).tolist() == [1, 2, 3, 4]
    two = rasterise([[(0, 0), (0.5, 0), (0.5, 0.5)], [(0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1)]], width=4, height=4)
    assert two[2:, 2:].all() and not two[2:, :2].any()


def test_apply_blacks_out_luma_and_neutralises_chroma_in_place():
    w, h = 64, 48
    frame = np.full((h * 3 // 2, w), 200, np.uint8)
    mask = PrivacyMask([[(0, 0), (0.5, 0), (0.5, 0.5), (0, 0.5)]], width=w, height=h)
    mask(frame)
    y = frame[:h]
    u, v = chroma_planes(frame, w, h)
    assert (y[:24, :32] == BLACK_Y).all() and (y[24:] == 200).all() and (y[:, 32:] == 200).all()
    assert (u[:12, :16] == NEUTRAL_UV).all() and (v[:12, :16] == NEUTRAL_UV).all() and (u[12:] == 200).all()


def test_chroma_is_masked_wherever_any_luma_pixel_is():
    w, h = 16, 16
    mask = PrivacyMask([[(0, 0), (3 / 16, 0), (3 / 16, 3 / 16), (0, 3 / 16)]], width=w, height=h)  # 3x3 pixels
    frame = np.full((24, 16), 200, np.uint8)
    mask(frame)
    u, _ = chroma_planes(frame, w, h)
    assert (u[:2, :2] == NEUTRAL_UV).all() and (u[2:, :] == 200).all() and (u[:, 2:] == 200).all()


def test_bad_polygon_and_wrong_frame_size_are_refused():
    with pytest.raises(EventError, match="3"):
        PrivacyMask([[(0, 0), (1, 1)]], width=16, height=16)
    with pytest.raises(EventError, match=r"0\.\.1"):
        PrivacyMask([[(0, 0), (1.5, 0), (1, 1)]], width=16, height=16)
    with pytest.raises(ValueError, match="mask built for"):
        PrivacyMask([[(0, 0), (1, 0), (1, 1)]], width=16, height=16)(np.zeros((36, 32), np.uint8))


def test_slanted_polygon_uses_the_masked_copy_path_with_the_same_result():
    w, h = 640, 480
    poly = [(0.1, 0.05), (0.6, 0.1), (0.9, 0.9), (0.2, 0.7)]
    mask = PrivacyMask([poly], width=w, height=h)
    frame = np.full((h * 3 // 2, w), 99, np.uint8)
    mask(frame)
    assert ((frame[:h] == BLACK_Y) == rasterise([poly], width=w, height=h)).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=3, max_size=7))
def test_row_spans_cover_exactly_the_raster(poly):
    m = rasterise([poly], width=24, height=18)
    back = np.zeros_like(m)
    for y0, y1, x0, x1 in row_spans(m):
        assert not back[y0:y1, x0:x1].any()  # no overlap
        back[y0:y1, x0:x1] = True
    assert (back == m).all()
