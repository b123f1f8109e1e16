"""Progress on long work (#11 item 12): `scan`, `eval` and `evalset build` show one self-rewriting line on a
terminal and nothing when stderr is not a terminal or with --json; plus `scan` prints no "zone None" (#11 item 15).
Model fetch progress is in test_ux_models.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from doorkeep.tools.progress import Progress
from ux_support import doorkeep, doorkeep_on_tty


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_clears_itself() -> None:
    out = _Tty()
    with Progress("scan door.mp4", total=10, unit="frames", stream=out, min_interval=0) as bar:
        for i in range(1, 11):
            bar.update(i)
        shown = out.getvalue()
    assert shown.startswith("\rscan door.mp4   10%  1/10 frames  (0 s)") and "100%  10/10 frames" in shown
    assert out.getvalue().endswith("\r")  # the line is wiped: the command's own output follows on a clean line
    sized = Progress("fetch", unit="bytes", stream=_Tty(), min_interval=0)
    sized.update(1_500_000, 35_600_000)
    assert "4%  1.5 MB/35.6 MB" in sized.line()
    long = Progress("eval /a/very/long/path/" + "x" * 100, total=3, unit="images", stream=_Tty())
    long.update(1)
    assert long.line(60).endswith("33%  1/3 images  (0 s)") and len(long.line(60)) == 60  # the label gives way


def test_progress_is_silent_off_a_terminal_or_when_disabled() -> None:
    for stream, enabled in ((io.StringIO(), True), (_Tty(), False)):
        with Progress("x", total=3, stream=stream, enabled=enabled, min_interval=0) as bar:
            bar.update(1)
            bar.advance()
        assert stream.getvalue() == ""


@pytest.fixture(scope="module")
def scene_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from doorkeep.device.sources.photo_scene import LOOP_S, photo_scene
    from doorkeep.device.sources.synthetic import write_video

    path = tmp_path_factory.mktemp("scene") / "scene.mp4"
    write_video(str(path), seconds=LOOP_S, width=640, height=480, fps=5, scene=photo_scene(640, 480), noise=2)
    return path


@pytest.mark.detection
def test_scan_shows_progress_on_a_terminal_only(scene_video: Path) -> None:
    rc, out, tty = doorkeep_on_tty("scan", str(scene_video))
    assert rc == 0, tty
    assert "\rscan scene.mp4" in tty and "s of video" in tty and "100%" in tty, tty
    assert "zone None" not in out and "None" not in out, out  # no zones configured: no zone column
    assert out.startswith("person ") and "frames" in out.splitlines()[-1]
    rc, out, tty = doorkeep_on_tty("scan", str(scene_video), "--json")
    assert rc == 0 and "\r" not in tty and "scan scene.mp4" not in tty
    assert all(json.loads(line) for line in out.splitlines())
    piped = doorkeep("scan", str(scene_video))
    assert piped.returncode == 0 and "\r" not in piped.stderr and "s of video" not in piped.stderr


@pytest.mark.detection
def test_eval_shows_progress_on_a_terminal_only(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(2)
    rows = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(tmp_path / f"n{i}.png")
        rows.append(f"n{i}.png,0")
    (tmp_path / "labels.csv").write_text("file,person\n" + "\n".join(rows) + "\n")
    rc, out, tty = doorkeep_on_tty("eval", str(tmp_path))
    assert rc == 0, tty
    assert "\reval " in tty and "100%  3/3 images" in tty, tty
    rc, out, tty = doorkeep_on_tty("eval", str(tmp_path), "--json")
    assert rc == 0 and "images" not in tty and json.loads(out)["tn"] + json.loads(out)["fp"] == 3


def test_evalset_build_shows_progress_on_a_terminal(tmp_path: Path) -> None:
    rc, out, tty = doorkeep_on_tty("evalset", "build", str(tmp_path / "set"))
    assert rc == 0, out + tty
    assert "\revalset night: writing" in tty and " images" in tty, tty
    assert (tmp_path / "set" / "labels.csv").is_file()
    piped = doorkeep("evalset", "build", str(tmp_path / "set2"))
    assert piped.returncode == 0 and "\r" not in piped.stderr and "writing" not in piped.stderr
