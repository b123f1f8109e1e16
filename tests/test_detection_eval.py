"""``doorkeep eval`` input handling and AUC (the scoring itself runs in test_detection_photos.py)."""

from __future__ import annotations

import numpy as np
import pytest
from doorkeep.tools.evaluate import EvalError, auc, image_to_lores, read_labels


def test_auc_hand_computed():
    assert auc([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert auc([1, 0], [0.2, 0.9]) == 0.0
    assert auc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert auc([1, 1], [0.3, 0.4]) is None


def test_labels_csv_errors_name_the_line(tmp_path):
    with pytest.raises(EvalError, match=r"labels\.csv"):
        read_labels(tmp_path)
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text("file,person\na.png,1\nb.png,0\n")
    with pytest.raises(EvalError, match=r"labels.csv:3: image 'b.png' not found"):
        read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("a.png,yes\n")
    with pytest.raises(EvalError, match=r":1: expected `file,person`"):
        read_labels(tmp_path)
    (tmp_path / "labels.csv").write_text("# comment\na.png,1\n")
    assert read_labels(tmp_path) == [("a.png", 1)]


def test_image_is_fitted_into_the_lores_size_keeping_its_aspect(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((600, 512, 3), np.uint8)).save(tmp_path / "tall.png")
    frame, w, h = image_to_lores(tmp_path / "tall.png", width=320, height=240)
    assert (w, h) == (204, 240) and frame.shape == (360, 204)


@pytest.mark.detection
def test_detection_parts_wire_masks_for_both_sizes():
    from doorkeep.device.config import Config
    from doorkeep.device.detect.pipeline import detection_parts
    from doorkeep.device.masks import PrivacyMask

    cfg = Config.from_dict({"masks": [{"name": "street", "polygon": [[0, 0], [1, 0], [1, 0.2], [0, 0.2]]}]})
    parts = detection_parts(cfg, main_size=(1280, 720), lores_size=(320, 240))
    (main,), (lores,) = parts.main_filters, parts.lores_filters
    assert isinstance(main, PrivacyMask) and main.shape == (1080, 1280) and lores.shape == (360, 320)
    assert parts.tracker.k == cfg.events.k and hasattr(parts.detector, "detect")  # type: ignore[attr-defined]
    assert detection_parts(Config(), main_size=(1280, 720), lores_size=(320, 240)).main_filters == []
