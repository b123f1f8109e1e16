"""The demo scene (a real photo of a person walking past a real wall) through the whole detection path."""

from __future__ import annotations

import json

import pytest
from doorkeep.device.sources.photo_scene import LOOP_S, PERSON_VISIBLE_S, photo_scene

pytestmark = pytest.mark.detection


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory):
    """One loop of the demo scene as a real H.264 file (PyAV/libx264), 640x480 at 10 fps, with sensor noise."""
    from doorkeep.device.sources.synthetic import write_video

    path = tmp_path_factory.mktemp("scene") / "scene.mp4"
    write_video(str(path), seconds=LOOP_S, width=640, height=480, fps=10, scene=photo_scene(640, 480), noise=2)
    return path


def _scan(path, person_detector, config_dict, *, gate=True):
    from doorkeep.device.config import Config
    from doorkeep.tools.scan import scan_video

    return scan_video(path, Config.from_dict(config_dict), detector=person_detector, gate=gate)


def test_person_walking_through_gives_exactly_one_event(scene_video, person_detector):
    events, summary = _scan(scene_video, person_detector, {})
    assert len(events) == 1, events
    (e,) = events
    assert e["end_s"] is not None
    assert PERSON_VISIBLE_S[0] <= e["start_s"] < 10.0  # the demo shows a person within its first 10 s
    assert e["start_s"] < e["end_s"] <= PERSON_VISIBLE_S[1]
    assert e["score"] >= 0.5
    assert summary["frames"] == round(LOOP_S * 10) and summary["events"] == 1
    assert summary["inferences"] < summary["frames"]  # the gate skipped the empty wall


def test_mask_over_the_persons_path_gives_no_event(scene_video, person_detector):
    mask = {"masks": [{"name": "path", "polygon": [[0, 0.1], [1, 0.1], [1, 1], [0, 1]]}]}
    events, summary = _scan(scene_video, person_detector, mask, gate=False)
    assert events == [] and summary["inferences"] == summary["frames"]


def test_zone_is_reported_and_required_zone_elsewhere_suppresses(scene_video, person_detector):
    porch = {"zones": [{"name": "porch", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}]}
    events, _ = _scan(scene_video, person_detector, porch)
    assert [e["zone"] for e in events] == ["porch"]
    sky = {"zones": [{"name": "sky", "polygon": [[0, 0], [1, 0], [1, 0.2], [0, 0.2]]}],
           "events": {"require_zone": True}}
    assert _scan(scene_video, person_detector, sky)[0] == []


def test_scan_cli_prints_event_lines_and_a_summary(scene_video, capsys):
    from doorkeep.tools.cli import main

    assert main(["scan", str(scene_video), "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    assert {"start_s", "end_s", "score", "zone"} <= lines[0].keys()
    assert lines[-1]["events"] == 1 and lines[-1]["frames"] == round(LOOP_S * 10)


def test_visitor_standing_still_stays_one_event(tmp_path, person_detector):
    """The gate stops seeing motion from a still visitor; the open event keeps inference running, so no split."""
    from doorkeep.device.sources.synthetic import Scene, write_video

    base = photo_scene(640, 480)
    path = ((0.0, -0.6, 0.55), (1.0, -0.35, 0.55), (3.0, 0.5, 0.55), (23.0, 0.5, 0.55), (25.0, 1.35, 0.55),
            (32.0, 1.6, 0.55))
    video = tmp_path / "still.mp4"
    write_video(str(video), seconds=32, width=640, height=480, fps=5,
                scene=Scene(background=base.background, sprite=base.sprite, path=path), noise=2)
    events, _ = _scan(video, person_detector, {})
    assert len(events) == 1, events
    assert events[0]["end_s"] is not None and events[0]["end_s"] >= 23.0
