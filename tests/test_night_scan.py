"""`doorkeep scan` reports the day/night mode: real footage that turns from colour to infrared grayscale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from doorkeep.device.config import Config

pytestmark = pytest.mark.detection

W, H, FPS = 320, 240, 10


def write_dusk_video(path: Path, *, colour_s: float, gray_s: float) -> None:
    """The demo's real photos (a person in front of a brick wall): colour frames, then the same scene as a camera
    sees it at night: gray and dark (luma x 0.3 above black)."""
    import av
    from doorkeep.device.detect.preprocess import rgb_to_i420
    from doorkeep.device.sources.photo_scene import photo_scene

    scene = photo_scene(W, H)
    rgb = scene.background.copy()
    sprite = scene.sprite
    assert sprite is not None
    sh, sw = sprite.shape[:2]
    rgb[H - sh :, (W - sw) // 2 : (W - sw) // 2 + sw] = sprite[..., :3]
    colour = rgb_to_i420(rgb)
    gray = colour.copy()
    gray[:H] = (16 + (colour[:H].astype(np.float32) - 16) * 0.3).astype(np.uint8)
    gray[H:] = 128
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=FPS)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        st.options = {"preset": "ultrafast"}
        n_colour = round(colour_s * FPS)
        for i in range(n_colour + round(gray_s * FPS)):
            vf = av.VideoFrame.from_ndarray(colour if i < n_colour else gray, format="yuv420p")
            vf.pts = i
            for p in st.encode(vf):
                out.mux(p)
        for p in st.encode():
            out.mux(p)


def test_scan_reports_the_switch_to_night_on_video_time(tmp_path: Path) -> None:
    from doorkeep.device.detect.night_detector import build_night_detector
    from doorkeep.tools.scan import scan_video

    video = tmp_path / "dusk.mp4"
    write_dusk_video(video, colour_s=4.0, gray_s=6.0)
    cfg = Config.from_dict({"night": {"dwell_s": 2.0, "smooth_s": 0.5}})
    det = build_night_detector(cfg)  # the default: one detector (SSDLite) day and night
    events, summary = scan_video(video, cfg, detector=det, gate=False)
    modes = summary["modes"]
    assert [m["mode"] for m in modes] == ["day", "night"]  # once, no flapping
    assert modes[0]["t_s"] == 0.0
    assert 4.0 <= modes[1]["t_s"] <= 5.5  # the gray frames start at 4 s; smoothing takes a moment
    assert 0 < summary["night_inferences"] < summary["inferences"]
    assert events and events[0]["mode"] == "day"  # the visitor was first seen in colour ...
    assert events[0]["end_s"] is None  # ... and is still seen (in night mode) when the footage ends
    assert np.isclose(summary["duration_s"], 9.9, atol=0.11)
