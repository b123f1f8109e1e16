"""The vendor example (examples/embed_doorkeep.py) runs as a user would run it: on a real H.264 file made here with
PyAV (a real photo of a person walking past a real brick wall), with the real pinned model, publishing signed
events to a real mosquitto."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.payload import verify
from fixtures_broker import Subscriber

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "embed_doorkeep.py"
W, H, FPS, SECONDS = 640, 360, 15, 4

pytestmark = [pytest.mark.detection, pytest.mark.broker]


def make_video(path: Path) -> None:
    """The astronaut (skimage) walks in front of the brick wall (skimage), stays, and leaves."""
    import av
    from doorkeep.device.sources.photo_scene import photo_scene

    scene = photo_scene(W, H, person_height=0.8)
    bg, sprite = scene.background, scene.sprite
    assert sprite is not None
    sh, sw = sprite.shape[:2]
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=FPS)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        st.options = {"preset": "ultrafast", "g": str(FPS)}
        n = FPS * SECONDS
        for i in range(n):
            img = bg.copy()
            if n // 6 <= i < n * 5 // 6:  # present for the middle two thirds
                x = int((W - sw) * min(1.0, (i - n // 6) / (n // 3)))
                y = H - sh
                img[y:y + sh, x:x + sw] = sprite[..., :3]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)


def test_vendor_example_embeds_doorkeep(tmp_path, model_path, mosquitto):
    video = tmp_path / "door.mp4"
    make_video(video)
    state = tmp_path / "state"
    with Subscriber(mosquitto, "doorkeep/+/event") as sub:
        proc = subprocess.run([sys.executable, str(EXAMPLE), "--video", str(video), "--state-dir", str(state),
                               "--broker", mosquitto.url], capture_output=True, text=True, timeout=240, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert summary["frames"] >= FPS * SECONDS - 2
        phases = [(e["kind"], e["phase"]) for e in summary["events"]]
        assert ("person", "start") in phases, proc.stdout
        # the same events reached the hub, signed by the device's key
        identity = DeviceIdentity.load_or_create(state)
        topic, payload, _retain = sub.messages.get(timeout=10)
        assert topic == f"doorkeep/{identity.device_id}/event"
        verify(payload, identity.verify_key)
