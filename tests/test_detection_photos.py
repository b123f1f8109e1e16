"""The real model on real photos, through the device's own path (lores I420 -> preprocess -> model -> decoder)."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.detection


@pytest.fixture(scope="module")
def eval_result(photo_dir, person_detector):
    from doorkeep.device.config import Config
    from doorkeep.tools.evaluate import evaluate

    return evaluate(photo_dir, Config(), detector=person_detector)


def test_every_person_photo_is_detected(eval_result):
    missed = [r for r in eval_result["scores"] if r["person"] and not r["detected"]]
    assert eval_result["tp"] == 3 and not missed, missed


def test_at_most_one_false_alarm(eval_result):
    alarms = [r for r in eval_result["scores"] if not r["person"] and r["detected"]]
    assert eval_result["tn"] + eval_result["fp"] == 18
    assert len(alarms) <= 1, alarms


def test_scores_separate_the_classes(eval_result):
    assert eval_result["auc"] is not None and eval_result["auc"] >= 0.95


def test_person_box_covers_the_astronaut(person_detector):
    from doorkeep.device.detect.preprocess import rgb_to_i420
    from fixtures_detect import load_photo
    from PIL import Image

    rgb = load_photo("skimage", "astronaut.png")
    frame = rgb_to_i420(__import__("numpy").asarray(Image.fromarray(rgb).resize((240, 240))))
    dets = person_detector.detect(frame)
    assert dets, "no person in the astronaut photo"
    d = dets[0]
    # The astronaut's face is around (0.45, 0.2) of the photo; the body fills the lower left.
    assert d.x0 < 0.45 < d.x1 and d.y0 < 0.2 < d.y1
    assert d.area > 0.2


def test_expected_runtime_is_loaded(person_detector):
    """./run test sets DOORKEEP_EXPECT_RUNTIME=tflite_runtime in the fallback venv: the fallback must really run."""
    expected = os.environ.get("DOORKEEP_EXPECT_RUNTIME")
    if not expected:
        pytest.skip("DOORKEEP_EXPECT_RUNTIME not set")
    assert person_detector.interpreter.runtime.name == expected


def test_eval_cli_json_and_plot(photo_dir, tmp_path, capsys):
    from doorkeep.tools.cli import main

    assert main(["eval", str(photo_dir), "--json", "--plot", str(tmp_path / "scores.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"threshold", "tp", "fp", "tn", "fn", "auc", "scores"} <= out.keys()
    assert out["tp"] + out["fn"] == 3 and len(out["scores"]) == 21
    assert (tmp_path / "scores.png").stat().st_size > 1000
