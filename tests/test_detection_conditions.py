"""`doorkeep eval`'s per-condition report (split x variant), tiling, and the model chosen per runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from doorkeep.device.detect.tiles import merge, tile_grid, to_frame
from doorkeep.device.detections import Detection
from doorkeep.tools.conditions import conditions, split_name


def _row(photo: str, variant: str, person: int, score: float, thr: float = 0.5) -> dict:
    return {"photo": photo, "variant": variant, "person": person, "score": score, "detected": score >= thr}


def test_conditions_hand_computed() -> None:
    rows = [_row("a", "color", 1, 0.9), _row("a", "gray", 1, 0.4), _row("b", "color", 1, 0.6),
            _row("b", "gray", 1, 0.7), _row("z", "color", 0, 0.7), _row("z", "gray", 0, 0.1)]
    c = conditions(rows, splits={"a": "dev", "z": "dev", "b": "test"}, threshold=0.5)
    assert set(c) == {"all", "dev", "test"} and set(c["all"]) == {"all", "color", "gray"}
    colour = c["all"]["color"]  # people 0.9, 0.6; no person 0.7
    assert (colour["people"], colour["found"], colour["false_alarms"]) == (2, 2, 1)
    assert colour["auc"] == 0.5 and colour["recall_at_zero_false_alarms"] == 0.5
    gray = c["all"]["gray"]  # people 0.4, 0.7; no person 0.1
    assert (gray["found"], gray["false_alarms"]) == (1, 0)
    assert (gray["auc"], gray["recall_at_zero_false_alarms"]) == (1.0, 1.0)
    assert c["dev"]["all"]["images"] == 4 and c["test"]["all"]["without_people"] == 0
    assert c["test"]["all"]["auc"] is None  # one class only: no AUC, no invented number
    assert split_name("vtest_f400__verydark.png") == ("vtest_f400", "verydark")


def test_tile_grid_covers_the_frame_with_overlap() -> None:
    tiles = tile_grid(320, 240, cols=2, rows=2, overlap=0.2)
    assert len(tiles) == 4 and all(x % 2 == 0 and y % 2 == 0 and w % 2 == 0 and h % 2 == 0 for x, y, w, h in tiles)
    cover = np.zeros((240, 320), bool)
    for x, y, w, h in tiles:
        assert x + w <= 320 and y + h <= 240
        cover[y : y + h, x : x + w] = True
    assert cover.all()
    assert tiles[1][0] < tiles[0][0] + tiles[0][2]  # neighbours overlap
    assert tile_grid(320, 240, cols=1, rows=1) == [(0, 0, 320, 240)]
    with pytest.raises(ValueError):
        tile_grid(320, 240, cols=0, rows=2)


def test_tile_detections_map_back_and_merge() -> None:
    d = to_frame(Detection(0.9, 0.5, 0.5, 1.0, 1.0), (160, 120, 160, 120), 320, 240)
    assert (d.x0, d.y0, d.x1, d.y1) == (0.75, 0.75, 1.0, 1.0)
    a, b = Detection(0.9, 0.1, 0.1, 0.3, 0.5), Detection(0.7, 0.11, 0.1, 0.31, 0.52)
    far = Detection(0.8, 0.6, 0, 0.7, 1)
    assert merge([b, far, a]) == [a, far]  # the same person seen twice is one; best first


@pytest.mark.detection
def test_tiled_detector_finds_the_astronaut_where_the_whole_frame_does() -> None:
    from doorkeep.device.detect.detector import PersonDetector
    from doorkeep.device.detect.models import builtin_manifests, ensure_model
    from doorkeep.device.detect.preprocess import rgb_to_i420
    from fixtures_detect import load_photo
    from PIL import Image

    rgb = np.asarray(Image.fromarray(load_photo("skimage", "astronaut.png")).resize((240, 240)))
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, 40:280] = rgb
    i420 = rgb_to_i420(frame)
    m = builtin_manifests()["ssdlite"]
    whole = PersonDetector(m, ensure_model(m)).detect(i420)
    tiled = PersonDetector(m, ensure_model(m), tiles=(2, 2)).detect(i420)
    assert whole and tiled
    best = max(tiled, key=lambda d: d.area)
    assert abs(best.x0 - whole[0].x0) < 0.1 and abs(best.x1 - whole[0].x1) < 0.1


@pytest.mark.detection
def test_the_default_model_is_int8_except_where_int8_is_slow() -> None:
    import platform

    from doorkeep.device.config import Config
    from doorkeep.device.detect.detector import build_detector
    from doorkeep.device.detect.runtime import int8_is_slow, load_runtime

    det = build_detector(Config())
    slow = load_runtime().name == "tflite_runtime" and platform.machine().lower() in ("x86_64", "amd64")
    assert int8_is_slow() is slow
    assert det.manifest.name == ("ssdlite-fp16" if slow else "ssdlite")
    assert det.threshold == det.manifest.default_threshold  # threshold 0 = the model's own, chosen on dev


def test_eval_json_keeps_its_keys_and_adds_conditions(tmp_path: Path, capsys) -> None:
    """Any folder with labels.csv: the same top-level keys as before, plus per split and variant figures."""
    from doorkeep.tools.cli import main
    from fixtures_detect import load_photo
    from PIL import Image

    rows = ["file,person"]
    for photo, name, person in (("astronaut", "astronaut.png", 1), ("chelsea", "chelsea.png", 0)):
        rgb = load_photo("skimage", name)
        Image.fromarray(rgb).save(tmp_path / f"{photo}__color.png")
        Image.fromarray(np.repeat(rgb.mean(axis=2, keepdims=True).astype(np.uint8) // 3, 3, axis=2)).save(
            tmp_path / f"{photo}__dark.png")
        rows += [f"{photo}__color.png,{person}", f"{photo}__dark.png,{person}"]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "splits.csv").write_text("photo,split\nastronaut,test\nchelsea,test\n")
    assert main(["eval", str(tmp_path), "--json", "--plot", str(tmp_path / "p.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"threshold", "tp", "fp", "tn", "fn", "auc", "scores"} <= set(result)
    cells = result["conditions"]
    assert set(cells) == {"all", "test"} and set(cells["test"]) == {"all", "color", "dark"}
    for cell in cells["test"].values():
        assert {"people", "found", "false_alarms", "auc", "recall_at_zero_false_alarms"} <= set(cell)
    assert cells["test"]["color"]["found"] == 1 and cells["test"]["color"]["false_alarms"] == 0
    assert (tmp_path / "p.png").stat().st_size > 10_000


@pytest.mark.detection
def test_bench_reports_the_day_and_night_steps_and_their_budget() -> None:
    """Keys only (figures live in BENCHMARKS.md, never as timed assertions)."""
    from doorkeep.tools.bench_detection import detect_figures

    fig = detect_figures(rounds=1, per_round=2)
    assert {"detect_step_ms", "detect_step_ms_night", "detect_budget_ms", "detect_budget_ratio"} <= set(fig)
    assert all(v > 0 for v in fig.values())
