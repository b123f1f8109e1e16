"""Config errors name the key path, the value and why; `doorkeep run` / `doorkeep demo` from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from doorkeep.device.config import Config
from doorkeep.device.errors import ConfigError
from doorkeep.tools.cli import main


@pytest.mark.parametrize(("data", "path", "why"), [
    ({"capture": {"fps": 0}}, "capture.fps", "must be >= 1"),
    ({"capture": {"fsp": 30}}, "capture.fsp", "unknown key"),
    ({"capture": {"source": "webcam"}}, "capture.source", "must be one of"),
    ({"capture": {"lores_width": 321}}, "capture.lores_width", "positive even"),
    ({"capture": {"ring_frames": 1}}, "capture.ring_frames", "must be >= 2"),
    ({"capture": {"realtime": "yes"}}, "capture.realtime", "true or false"),
    ({"capture": {"preroll_max_mb": 0}}, "capture.preroll_max_mb", "must be >= 1"),
    ({"motion": {"step": "2"}}, "motion.step", "must be an integer"),
    ({"motion": {"min_changed": 1.5}}, "motion.min_changed", "must be <= 1.0"),
    ({"motion": {"background_s": 0}}, "motion.background_s", "must be >= 0.05"),
    ({"capture": 5}, "capture", "must be a table"),
])
def test_bad_values_are_refused_with_key_path(data: dict, path: str, why: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError) as err:
        Config.from_dict(data)
    assert err.value.path == path
    assert why in err.value.why
    assert path in str(err.value)


def test_defaults_and_a_good_file(tmp_path: Path) -> None:
    assert Config.from_dict({}).capture.lores_width == 320
    f = tmp_path / "doorkeep.toml"
    f.write_text('[capture]\nsource = "file"\npath = "/tmp/x.mp4"\nloop = true\n\n[motion]\nhold_s = 5\n')
    c = Config.from_toml(f)
    assert c.capture.source == "file" and c.capture.loop and c.motion.hold_s == 5.0


def test_bad_toml_file_names_the_key(tmp_path: Path) -> None:
    f = tmp_path / "doorkeep.toml"
    f.write_text("[motion]\npixel_threshold = 300\n")
    with pytest.raises(ConfigError, match=r"motion\.pixel_threshold = 300: must be <= 255"):
        Config.from_toml(f)


def test_run_command_refuses_bad_config_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "doorkeep.toml"
    f.write_text("[capture]\nfps = 500\n")
    assert main(["run", "--config", str(f)]) == 1
    assert "capture.fps = 500" in capsys.readouterr().err


def test_demo_runs_the_whole_job() -> None:
    """The demo on its embedded broker: live stats, a real detection published as a verified signed event, an
    encrypted clip the owner's key opens, an intact audit chain."""
    out = subprocess.run([sys.executable, "-m", "doorkeep.tools.cli", "demo", "--seconds", "7"],
                         capture_output=True, text=True, timeout=180, check=True).stdout
    lines = out.splitlines()
    assert lines[0].startswith("doorkeep demo: SyntheticSource")
    assert any("capture" in line and "fps" in line and "drops" in line for line in lines[1:])
    assert any(" person " in line and " start " in line for line in lines), out
    assert any(line.startswith("summary:") and " 0 REJECTED" in line for line in lines), out
    assert any("the owner's key opens it" in line and "starts at a keyframe with SPS/PPS" in line
               for line in lines), out
    assert any(line.startswith("audit log:") and "chain intact" in line for line in lines), out


def test_zone_names_are_refused_when_they_cannot_travel_in_a_signed_event() -> None:
    square = [[0, 0], [1, 0], [1, 1]]
    assert Config.from_dict({"zones": [{"name": "front porch", "polygon": square}]}).zones[0].name == "front porch"
    for bad in ("x" * 21, "", "porch/#", "\u00e4" * 11):  # "café" is fine (tests/test_ux_names.py); 22 bytes are not
        with pytest.raises(ConfigError, match=r"zones\[0\]\.name"):
            Config.from_dict({"zones": [{"name": bad, "polygon": square}]})
