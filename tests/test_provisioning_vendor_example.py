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


def test_the_example_imports_only_the_public_surface() -> None:
    """#10.4: the vendor example needs no deep import; every name it takes is in doorkeep.device.__all__."""
    import ast

    import doorkeep.device as sdk

    tree = ast.parse(EXAMPLE.read_text())
    doorkeep_imports = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom | ast.Import)
                        and any(m.startswith("doorkeep") for m in _modules(n))]
    assert doorkeep_imports, "the example does not import doorkeep at all?"
    for node in doorkeep_imports:
        assert isinstance(node, ast.ImportFrom) and node.module == "doorkeep.device", ast.unparse(node)
        assert {a.name for a in node.names} <= set(sdk.__all__), ast.unparse(node)


def test_the_sdk_surface_resolves_lazily_and_matches_its_table() -> None:
    import subprocess

    import doorkeep.device as sdk

    assert sorted(sdk.__all__) == sorted(sdk._EXPORTS)
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None
    # importing the package loads no submodule (no numpy, no camera probing) until a name is used
    code = "import sys, doorkeep.device; print(sorted(m for m in sys.modules if m.startswith('doorkeep.')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['doorkeep.device']"


def _modules(node: object) -> list[str]:
    import ast

    if isinstance(node, ast.ImportFrom):
        return [node.module or ""]
    assert isinstance(node, ast.Import)
    return [a.name for a in node.names]
