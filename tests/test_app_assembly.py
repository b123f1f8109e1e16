"""The whole device from one config (device/assembly.py): the stages attach, and day/night is judged on every
frame — not only on frames the motion gate passes to the detector."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from doorkeep.device.assembly import assemble
from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.sources.synthetic import Scene, SyntheticSource
from doorkeep.tools.cmd_run import _format

pytestmark = pytest.mark.detection


def _config(tmp_path) -> Config:
    return Config.from_dict({"device": {"state_dir": str(tmp_path / "state")},
                             "capture": {"main_width": 320, "main_height": 240},
                             "mqtt": {"enabled": False}, "vault": {"enabled": False},
                             "night": {"smooth_s": 0.1, "dwell_s": 0.0}})


def test_a_still_dark_scene_switches_to_night_without_any_inference(tmp_path, model_path) -> None:
    rng = np.random.default_rng(1)
    gray = np.repeat(rng.integers(20, 60, (240, 320, 1), dtype=np.uint8), 3, axis=2)  # IR-like: no chroma
    source = SyntheticSource(width=320, height=240, scene=Scene(background=gray), realtime=True)
    device = assemble(_config(tmp_path), identity=DeviceIdentity.generate(), source=source)
    switched = threading.Event()
    device.night.listeners.append(lambda mode: switched.set() if mode == "night" else None)
    with device:
        assert switched.wait(10), "night mode was not entered on a gray scene"
        time.sleep(0.3)
    assert device.night.mode == "night"
    snap = device.bell.stats.snapshot()
    assert snap["counters"].get("inferences", 0) == 0  # the gate never opened
    assert snap["gauges"]["night_mode"] == 1.0 and "mode night" in _format(snap)  # the stats line says so


def test_a_bright_grey_daylit_scene_stays_day(tmp_path, model_path) -> None:
    """The demo's kind of scene (a grey wall in daylight: no chroma, but bright) is day, not night."""
    from doorkeep.device.sources.photo_scene import photo_scene

    source = SyntheticSource(width=320, height=240, scene=Scene(background=photo_scene(320, 240).background),
                             realtime=True)
    device = assemble(_config(tmp_path), identity=DeviceIdentity.generate(), source=source)
    with device:
        time.sleep(1.5)
    assert device.night.mode == "day" and device.night.switches == 0
    assert "mode day" in _format(device.bell.stats.snapshot())


def test_assembled_device_wires_the_stages(tmp_path, model_path) -> None:
    cfg = _config(tmp_path)
    device = assemble(cfg, identity=DeviceIdentity.generate(),
                      source=SyntheticSource(width=320, height=240, realtime=False, duration_s=0.5))
    assert device.vault is None and device.publisher is None  # both disabled in this config
    assert type(device.bell.pipeline.detector).__name__ == "NightDetector"
    assert device.button is not None and device.events in device.bell.loop.event_sinks
    device.close()
