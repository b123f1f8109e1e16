"""I420 -> model input: colour, letterbox, value range; and the RGB <-> I420 helpers."""

from __future__ import annotations

import numpy as np
import pytest
from doorkeep.device.detect.preprocess import (
    Preprocessor,
    i420_to_rgb,
    letterbox_for,
    rgb_to_i420,
)


def _solid(rgb, w=320, h=240):
    return rgb_to_i420(np.broadcast_to(np.array(rgb, np.uint8), (h, w, 3)).copy())


@pytest.mark.parametrize("rgb", [(0, 0, 0), (255, 255, 255), (200, 30, 90), (10, 180, 240)])
def test_solid_colour_maps_to_the_value_range(rgb):
    pre = Preprocessor(width=320, height=240, in_w=224, in_h=224, value_range=(-1.0, 1.0))
    out = pre(_solid(rgb))
    x0, y0, w, h = letterbox_for(320, 240, 224, 224)
    assert (x0, y0, w, h) == (0, 28, 224, 168)
    content = out[0, y0 : y0 + h, x0 : x0 + w]
    # 8-bit YUV round trip: within a couple of levels of the original colour
    assert content.reshape(-1, 3).mean(axis=0) == pytest.approx(np.array(rgb) / 127.5 - 1, abs=0.03)
    assert (out[0, :y0] == -1.0).all() and (out[0, y0 + h :] == -1.0).all()  # black letterbox bars


def test_uint8_model_input_and_stretch():
    pre = Preprocessor(width=320, height=240, in_w=300, in_h=300, value_range=(0, 255), dtype="uint8",
                       letterbox=False)
    out = pre(_solid((200, 30, 90)))
    assert out.dtype == np.uint8 and out.shape == (1, 300, 300, 3)
    assert out.reshape(-1, 3).mean(axis=0) == pytest.approx((200, 30, 90), abs=4)
    assert pre.letterbox.w == 1.0 and pre.letterbox.h == 1.0


def test_output_buffer_is_reused_and_geometry_is_kept():
    pre = Preprocessor(width=320, height=240, in_w=224, in_h=224, value_range=(-1.0, 1.0))
    rgb = np.zeros((240, 320, 3), np.uint8)
    rgb[:, 160:] = 255  # right half white
    a = pre(rgb_to_i420(rgb))
    b = pre(rgb_to_i420(rgb))
    assert a is b
    row = a[0, 112, :, 0]
    assert row[:100].max() < -0.9 and row[124:].min() > 0.9


def test_wrong_frame_shape_is_refused():
    pre = Preprocessor(width=320, height=240, in_w=224, in_h=224, value_range=(-1.0, 1.0))
    with pytest.raises(ValueError, match="I420"):
        pre(np.zeros((240, 320), np.uint8))


def test_rgb_i420_round_trip():
    rng = np.random.default_rng(1)
    rgb = np.repeat(np.repeat(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), 2, 0), 2, 1)  # 2x2 blocks
    back = i420_to_rgb(rgb_to_i420(rgb), 32, 24)
    assert np.abs(back.astype(int) - rgb).max() <= 3
