"""PicameraSource wiring, checked off-Pi against a stand-in for the picamera2 module (the real camera is checked on a
Pi: docs/sources.md). Covers: configuration asked of picamera2, main filters on the request's main buffer before
the encoder, stride-padded lores copied into the ring, metadata (Lux) hook, drops from sensor timestamps, encoded
frames → Packets, release on failed configure."""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar, Self

import numpy as np
import pytest
from doorkeep.device.errors import CaptureError
from doorkeep.device.frames import Packet, chroma_planes, i420_shape
from doorkeep.device.rings import FrameRing
from doorkeep.device.sources.encode import H264Encoder

MW, MH, LW, LH, STRIDE = 64, 48, 32, 24, 64  # lores rows padded to a 64-byte stride, as libcamera does


class _Request:
    def __init__(self, main: np.ndarray, lores: np.ndarray, md: dict[str, Any]) -> None:
        self.buffers = {"main": main, "lores": lores}
        self.md = md

    def get_metadata(self) -> dict[str, Any]:
        return self.md


class _Mapped:
    def __init__(self, request: _Request, stream: str) -> None:
        self.array = request.buffers[stream]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class _Camera:
    instances: ClassVar[list[_Camera]] = []
    refuse = False

    def __init__(self, index: int) -> None:
        self.pre_callback = None
        self.closed = False
        self.recording: tuple[Any, Any] | None = None
        _Camera.instances.append(self)

    def create_video_configuration(self, **kw: Any) -> dict[str, Any]:
        return kw

    def configure(self, config: dict[str, Any]) -> None:
        if _Camera.refuse:
            raise RuntimeError("lores larger than main")
        self.config = config

    def start_recording(self, encoder: Any, output: Any) -> None:
        self.recording = (encoder, output)

    def stop_recording(self) -> None:
        self.recording = None

    def close(self) -> None:
        self.closed = True


class _Encoder:
    def __init__(self, bitrate: int, repeat: bool, iperiod: int) -> None:
        self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod


class _Output:
    pass


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = types.ModuleType("picamera2")
    mod.Picamera2 = _Camera  # type: ignore[attr-defined]
    mod.MappedArray = _Mapped  # type: ignore[attr-defined]
    enc = types.ModuleType("picamera2.encoders")
    enc.H264Encoder = _Encoder  # type: ignore[attr-defined]
    out = types.ModuleType("picamera2.outputs")
    out.Output = _Output  # type: ignore[attr-defined]
    mod.encoders, mod.outputs = enc, out  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", mod)
    monkeypatch.setitem(sys.modules, "picamera2.encoders", enc)
    monkeypatch.setitem(sys.modules, "picamera2.outputs", out)
    _Camera.instances.clear()
    _Camera.refuse = False
    return mod


def _padded_lores(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A lores I420 frame and the same frame as libcamera lays it out with a padded stride."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, i420_shape(LW, LH), dtype=np.uint8)
    buf = np.full((LH * 3 // 2, STRIDE), 77, np.uint8)
    buf[:LH, :LW] = frame[:LH]
    u, v = chroma_planes(frame, LW, LH)
    flat = buf.reshape(-1)[LH * STRIDE :]
    cs = STRIDE // 2
    flat[: (LH // 2) * cs].reshape(LH // 2, cs)[:, : LW // 2] = u
    flat[(LH // 2) * cs : LH * cs].reshape(LH // 2, cs)[:, : LW // 2] = v
    return frame, buf


def test_picamera_source_wiring(fake_picamera2: types.ModuleType) -> None:
    from doorkeep.device.sources.picam import PicameraSource

    lux: list[float] = []

    def mask(frame: np.ndarray) -> None:
        frame[:8] = 0

    packets: list[Packet] = []

    class Sink:
        def on_packet(self, p: Packet) -> None:
            packets.append(p)

    src = PicameraSource(width=MW, height=MH, lores_width=LW, lores_height=LH, fps=30, gop=15,
                         main_filters=[mask], on_metadata=lambda md: lux.append(md["Lux"]))
    cam = _Camera.instances[-1]
    assert cam.config["main"] == {"size": (MW, MH), "format": "YUV420"}
    assert cam.config["lores"] == {"size": (LW, LH), "format": "YUV420"}
    ring = FrameRing(width=LW, height=LH, frames=4)
    src.attach(ring=ring, packet_sinks=[Sink()])
    with src:
        src.start()
        encoder, output = cam.recording  # type: ignore[misc]
        assert encoder.repeat and encoder.iperiod == 15
        assert cam.pre_callback is not None
        frame, buf = _padded_lores(1)
        main = np.full(i420_shape(MW, MH), 200, np.uint8)
        t_ns = 1_000_000_000
        for i, gap_frames in enumerate((0, 1, 1, 4)):  # the last one arrives 3 frames late: 3 lost
            t_ns += round(gap_frames * 1e9 / 30)
            cam.pre_callback(_Request(main, buf, {"Lux": 100.0 + i, "SensorTimestamp": t_ns}))
        assert (main[:8] == 0).all() and (main[8:] == 200).all()  # masked in the encoder's own buffer
        out = ring.empty_frame()
        info = ring.read_latest(out, timeout=0)
        assert info is not None and info.seq == 3
        assert np.array_equal(out, frame)  # stride padding removed, planes in place
        assert lux == [100.0, 101.0, 102.0, 103.0]
        assert src.frames == 4 and src.drops == 3
        # Encoded frames from the (hardware) encoder become Packets with keyframe/config flags.
        enc = H264Encoder(width=MW, height=MH, fps=30, gop=15)
        for i, p in enumerate(enc.encode(main, pts=0, t_capture=0.0, t_wall=0.0)):
            output.outputframe(p.data, keyframe=True, timestamp=33_333 * i)
        output.outputframe(b"\x00\x00\x00\x01\x41\x9a", keyframe=False, timestamp=66_666)
    assert cam.recording is None and cam.closed
    assert packets[0].keyframe and packets[0].has_config
    assert not packets[-1].keyframe and not packets[-1].has_config and packets[-1].pts == 66_666


def test_failed_configure_releases_the_camera(fake_picamera2: types.ModuleType) -> None:
    from doorkeep.device.sources.picam import PicameraSource

    _Camera.refuse = True
    with pytest.raises(CaptureError, match="camera refused"):
        PicameraSource(width=MW, height=MH, lores_width=LW, lores_height=LH)
    assert _Camera.instances[-1].closed


def test_a_failing_camera_callback_is_reported_like_other_sources(fake_picamera2: types.ModuleType) -> None:
    from doorkeep.device.sources.picam import PicameraSource
    from worker_faults import check_exit_requested_after_crash

    src = PicameraSource(width=MW, height=MH, lores_width=LW, lores_height=LH)
    ring = FrameRing(width=LW, height=LH, frames=4)
    src.attach(ring=ring)
    cam = _Camera.instances[-1]
    with src:
        src.start()
        assert src.workers == [src.watch] and src.watch.name == "doorkeep-camera"
        _frame, buf = _padded_lores(1)
        src.main_filters.append(lambda f: f.reshape(-1)[10**6])  # a filter that fails on the camera's thread
        # picamera2 would log this and go on with a broken pipeline
        cam.pre_callback(_Request(np.zeros((MH * 3 // 2, MW), np.uint8), buf, {}))
        assert src.finished.is_set() and isinstance(src.error, IndexError)
        check_exit_requested_after_crash(src.watch)


def test_a_camera_that_stops_delivering_frames_fails_the_source(fake_picamera2: types.ModuleType) -> None:
    from doorkeep.device.sources.picam import PicameraSource
    from worker_faults import wait_until

    src = PicameraSource(width=MW, height=MH, lores_width=LW, lores_height=LH, frame_timeout_s=0.2)
    src.attach(ring=FrameRing(width=LW, height=LH, frames=4))
    with src:
        src.start()
        assert src.wait(5), "a silent camera was not reported"
        assert isinstance(src.error, CaptureError) and "no frame for 0.2 s" in str(src.error)
        wait_until(lambda: src.watch.failed)


def test_start_recording_failure_is_a_capture_error(fake_picamera2: types.ModuleType) -> None:
    from doorkeep.device.sources.picam import PicameraSource

    src = PicameraSource(width=MW, height=MH, lores_width=LW, lores_height=LH)
    cam = _Camera.instances[-1]

    def refuse(*_a: Any) -> None:
        raise RuntimeError("Device or resource busy")

    cam.start_recording = refuse  # type: ignore[method-assign]
    with src, pytest.raises(CaptureError, match="did not start recording"):
        src.start()
    assert not src.watch.started and cam.pre_callback is None
