"""One detection path: the device's detect thread, ``doorkeep scan`` and ``doorkeep eval`` run the same
DetectionPipeline object/class; privacy masks are built from the source's real frame size (#11.1)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from doorkeep.device.assembly import assemble
from doorkeep.device.config import Config
from doorkeep.device.detect.pipeline import DetectionPipeline
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.sources.photo_scene import photo_scene
from worker_faults import wait_until

pytestmark = pytest.mark.detection

MASK = {"name": "street", "polygon": [[0, 0], [1, 0], [1, 0.2], [0, 0.2]]}


@pytest.fixture(scope="module")
def small_video(tmp_path_factory) -> Path:
    """A real 640x480 H.264 file of the demo scene (a person walks past a wall), 10 fps."""
    from doorkeep.device.sources.synthetic import write_video

    path = tmp_path_factory.mktemp("video") / "door.mp4"
    write_video(str(path), seconds=6, width=640, height=480, fps=10, scene=photo_scene(640, 480), noise=2)
    return path


def _config(tmp_path: Path, video: Path, **more: object) -> Config:
    """The defaults say 1920x1080; the file is 640x480."""
    return Config.from_dict({"device": {"state_dir": str(tmp_path / "state")},
                             "capture": {"source": "file", "path": str(video), "realtime": True},
                             "mqtt": {"enabled": False}, "vault": {"enabled": False}, "masks": [MASK], **more})


class StepSpy:
    """Records which pipeline object ran each frame, on which thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[int, str]] = []
        original = DetectionPipeline.step

        def step(pipe: DetectionPipeline, *a: object, **kw: object) -> object:
            self.calls.append((id(pipe), threading.current_thread().name))
            return original(pipe, *a, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(DetectionPipeline, "step", step)


def test_device_loop_and_scan_run_the_same_pipeline(tmp_path, small_video, model_path, person_detector,
                                                    monkeypatch) -> None:
    from doorkeep.tools.scan import scan_video

    spy = StepSpy(monkeypatch)
    config = _config(tmp_path, small_video)
    device = assemble(config, identity=DeviceIdentity.generate())
    with device:
        wait_until(lambda: device.bell.pipeline.counts.frames >= 20, timeout=60, what="frames through the pipeline")
    pipe = device.bell.pipeline
    assert device.bell.loop.pipeline is pipe
    on_device = [c for c in spy.calls if c[0] == id(pipe)]
    # Every frame the detect thread analysed went through DetectionPipeline.step: a loop with its own copy of the
    # gate -> detector -> tracker rule would leave this empty.
    assert on_device and {t for _, t in on_device} == {"doorkeep-detect"}
    assert len(on_device) == pipe.counts.frames == device.bell.stats.snapshot()["counters"]["frames"]
    spy.calls.clear()
    _events, summary = scan_video(small_video, config, detector=person_detector)
    assert len(spy.calls) == summary["frames"] > 0 and {t for _, t in spy.calls} == {"MainThread"}


def test_eval_infers_through_the_pipeline(tmp_path, person_detector, monkeypatch) -> None:
    from doorkeep.tools.evaluate import evaluate
    from PIL import Image

    calls: list[int] = []
    original = DetectionPipeline.infer
    monkeypatch.setattr(DetectionPipeline, "infer", lambda p, f: calls.append(1) or original(p, f))
    Image.fromarray(np.zeros((240, 320, 3), np.uint8)).save(tmp_path / "empty.png")
    (tmp_path / "labels.csv").write_text("file,person\nempty.png,0\n")
    result = evaluate(tmp_path, Config(), detector=person_detector)
    assert calls == [1] and result["tn"] == 1


def test_a_640x480_file_with_a_mask_runs_under_the_default_1080p_capture_settings(tmp_path, small_video,
                                                                                  model_path) -> None:
    """#11.1: today `ValueError: mask built for 1920x1080`, `capture failed`, exit 1 (a restart loop)."""
    from doorkeep.device.vault.keys import SecretKeys, pin_owner_public

    pin_owner_public(tmp_path / "state", SecretKeys.generate("owner").public)
    config = _config(tmp_path, small_video, vault={"fsync_chunks": False})
    assert (config.capture.main_width, config.capture.main_height) == (1920, 1080)
    device = assemble(config, identity=DeviceIdentity.generate())
    source = device.bell.source
    with device:
        wait_until(lambda: source.frames >= 30 or source.finished.is_set(), timeout=60, what="30 frames")
        assert source.error is None, source.error
    (main_mask,) = source.main_filters
    assert (main_mask.width, main_mask.height) == (640, 480)  # type: ignore[attr-defined]
    lores_mask = device.bell.ring.lores_filters[0]
    assert (lores_mask.width, lores_mask.height) == (320, 240)  # type: ignore[attr-defined]
    assert device.vault is not None and (device.vault.codec.width, device.vault.codec.height) == (640, 480)


def test_scan_and_the_device_build_the_same_lores_mask(tmp_path, small_video, model_path) -> None:
    config = _config(tmp_path, small_video)
    device = assemble(config, identity=DeviceIdentity.generate())
    try:
        scan_pipe = DetectionPipeline.from_config(config, detector=device.bell.pipeline.detector)  # type: ignore[arg-type]
        device_mask = device.bell.ring.lores_filters[0]
        frame = np.full(device.bell.ring.shape, 200, np.uint8)
        a, b = frame.copy(), frame.copy()
        device_mask(a)
        assert scan_pipe.mask is not None
        scan_pipe.mask(b)
        assert np.array_equal(a, b) and (a != frame).any()
    finally:
        device.close()
