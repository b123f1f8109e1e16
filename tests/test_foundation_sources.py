"""Frame sources: PyAV file (H.264 MP4 passthrough, mpeg4 re-encode), main filters reach the encoded output,
the synthetic scene is deterministic, picamera2 refuses clearly off-Pi, the source factory follows the config."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from doorkeep.device.config import CaptureSection
from doorkeep.device.errors import CaptureError, ConfigError
from doorkeep.device.frames import Packet
from doorkeep.device.rings import FrameRing
from doorkeep.device.sources import open_source
from doorkeep.device.sources.h264 import config_prefix, has_config
from doorkeep.device.sources.pyav import PyAVSource
from doorkeep.device.sources.synthetic import SyntheticSource, write_video
from foundation_util import Collect, decode_h264

W, H, FPS, SECONDS = 320, 240, 30, 1.0



@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    out = {"h264": d / "door.mp4", "mpeg4": d / "door.mkv"}
    write_video(str(out["h264"]), seconds=SECONDS, width=W, height=H, fps=FPS, codec="libx264", gop=10)
    write_video(str(out["mpeg4"]), seconds=SECONDS, width=W, height=H, fps=FPS, codec="mpeg4", gop=10)
    return out


def _play(src: PyAVSource | SyntheticSource, lores: tuple[int, int] = (160, 120)) -> tuple[Collect, FrameRing]:
    sink = Collect()
    ring = FrameRing(width=lores[0], height=lores[1], frames=64)
    src.attach(ring=ring, packet_sinks=[sink])
    with src:
        src.start()
        assert src.wait(60)
    assert src.error is None
    return sink, ring



def _check_stream(packets: list[Packet], n: int) -> None:
    assert len(packets) == n
    assert packets[0].keyframe and packets[0].has_config
    for p in packets:
        assert p.data.startswith((b"\x00\x00\x00\x01", b"\x00\x00\x01")), "not Annex B"
        if p.keyframe:
            assert p.has_config and has_config(p.data)  # any keyframe is a valid start
    pts = [p.pts for p in packets]
    assert pts == sorted(pts) and pts[1] - pts[0] == pytest.approx(1e6 / FPS, abs=2)
    assert len(decode_h264(packets)) == n


def test_h264_mp4_is_passed_through_as_annexb_with_config_on_keyframes(videos: dict[str, Path]) -> None:
    src = PyAVSource(path=videos["h264"], realtime=False, lores_width=160, lores_height=120)
    assert src.passthrough and src.main_size == (W, H) and src.fps == FPS
    sink, ring = _play(src)
    n = round(SECONDS * FPS)
    _check_stream(sink.packets, n)
    assert [i for i, p in enumerate(sink.packets) if p.keyframe] == list(range(0, n, 10))
    assert ring.frames == n == src.frames
    # Passthrough means the file's own bitstream, not a re-encode: the NAL units of each non-key packet are those
    # of the demuxed avcC packet (4-byte lengths swapped for start codes).
    with av.open(str(videos["h264"])) as c:
        raw = [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]
    for p, r in zip(sink.packets, raw, strict=True):
        if not p.keyframe:
            assert _annexb_nals(p.data) == _avcc_nals(r)


def _avcc_nals(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        out.append(data[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def _annexb_nals(data: bytes) -> list[bytes]:
    return [n.rstrip(b"\x00") for n in data.split(b"\x00\x00\x01")[1:]]


def test_mpeg4_input_is_reencoded_to_h264(videos: dict[str, Path]) -> None:
    src = PyAVSource(path=videos["mpeg4"], realtime=False, gop=15, lores_width=160, lores_height=120)
    assert src.codec == "mpeg4" and not src.passthrough
    sink, ring = _play(src)
    n = round(SECONDS * FPS)
    _check_stream(sink.packets, n)
    assert [i for i, p in enumerate(sink.packets) if p.keyframe] == [0, 15]
    assert ring.frames == n


def test_lores_frames_are_the_scaled_picture(videos: dict[str, Path]) -> None:
    _, ring = _play(PyAVSource(path=videos["h264"], realtime=False, lores_width=160, lores_height=120))
    out = ring.empty_frame()
    info = ring.read_latest(out, timeout=0)
    assert info is not None and info.seq == round(SECONDS * FPS) - 1
    with av.open(str(videos["h264"])) as c:
        last = list(c.decode(video=0))[-1]
    ref = last.reformat(width=160, height=120, format="yuv420p").to_ndarray()
    assert np.abs(out.astype(int) - ref.astype(int)).mean() < 1.0


def _black_top(frame: np.ndarray) -> None:
    frame[: H // 2] = 0  # luma of the top half: a privacy mask


@pytest.mark.parametrize("kind", ["h264", "mpeg4"])
def test_main_filters_change_the_encoded_output_even_for_h264_input(videos: dict[str, Path], kind: str) -> None:
    src = PyAVSource(path=videos[kind], realtime=False, main_filters=[_black_top], lores_width=160, lores_height=120)
    assert not src.passthrough  # a mask can never be bypassed by passthrough
    sink, _ = _play(src)
    decoded = decode_h264(sink.packets)
    assert len(decoded) == round(SECONDS * FPS)
    for f in decoded:
        assert f[: H // 2].max() <= 20, "masked region visible in the encoded stream"
        assert f[H // 2 : H].mean() > 40


def test_synthetic_main_filters_and_determinism() -> None:
    def run(filters: list) -> list[np.ndarray]:  # type: ignore[type-arg]
        src = SyntheticSource(width=W, height=H, lores_width=160, lores_height=120, fps=FPS, duration_s=0.5,
                              realtime=False, noise=3, main_filters=filters)
        sink, ring = _play(src)
        assert src.frames == 15 and ring.frames == 15
        return decode_h264(sink.packets)

    a, b = run([]), run([])
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    masked = run([_black_top])
    assert all(f[: H // 2].max() <= 20 for f in masked)
    assert not np.array_equal(masked[0], a[0])


def test_repeated_config_helpers() -> None:
    src = SyntheticSource(width=W, height=H, lores_width=160, lores_height=120, fps=FPS, duration_s=0.2,
                          realtime=False)
    sink, _ = _play(src)
    key = sink.packets[0]
    prefix = config_prefix(key.data)
    assert prefix and has_config(prefix + b"\x00\x00\x01\x65") and not has_config(key.data[len(prefix):])
    assert config_prefix(sink.packets[1].data) == b""


def test_bad_file_and_missing_stream_raise_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open video"):
        PyAVSource(path=tmp_path / "nope.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    with pytest.raises(CaptureError):
        PyAVSource(path=junk)


def test_picamera2_off_pi_raises_capture_error_naming_the_fix() -> None:
    with pytest.raises(CaptureError, match=r"picamera2 is not available.*python3-picamera2"):
        open_source(CaptureSection(source="picamera2"))


def test_open_source_follows_config(videos: dict[str, Path]) -> None:
    src = open_source(CaptureSection(source="file", path=str(videos["mpeg4"]), realtime=False, lores_width=160,
                                     lores_height=120))
    assert isinstance(src, PyAVSource) and src.lores_size == (160, 120) and not src.realtime
    syn = open_source(CaptureSection(main_width=640, main_height=480, gop=12))
    assert isinstance(syn, SyntheticSource) and syn.main_size == (640, 480) and syn.gop == 12
    with pytest.raises(ConfigError, match=r"capture\.path"):
        open_source(CaptureSection(source="file"))


def test_looping_file_continues_timestamps(videos: dict[str, Path]) -> None:
    src = PyAVSource(path=videos["h264"], realtime=False, loop=True, lores_width=160, lores_height=120)
    sink = Collect()
    src.attach(packet_sinks=[sink])
    with src:
        src.start()
        while len(sink.packets) < 75:
            assert not src.finished.wait(0.01)
    pts = [p.pts for p in sink.packets[:75]]
    assert pts == sorted(set(pts))  # strictly increasing across the loop point
    assert sink.packets[30].keyframe and sink.packets[30].has_config


def test_capture_worker_crash_sets_the_source_error_and_requests_a_process_exit() -> None:
    from doorkeep.device.sources.synthetic import SyntheticSource
    from worker_faults import Fault, check_exit_requested_after_crash, raise_once

    src = SyntheticSource(width=320, height=240, fps=30)
    raise_once(src, "_run")
    with src:
        src.start()
        assert src.worker.name == "doorkeep-capture-SyntheticSource" and not src.worker.restartable
        check_exit_requested_after_crash(src.worker)
        assert src.finished.is_set() and isinstance(src.error, Fault)
