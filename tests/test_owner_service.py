"""The running service answers its owner: a real `doorkeep run` on a file source and a real mosquitto.

`doorkeep config push` is answered (before, nothing listened) and the running pipeline picks up the new policy —
a privacy mask pushed to the device is black in the live view fetched over the owner channel afterwards; the
owner lists and fetches a recorded clip and opens it; `doorkeep owner …` works against the service.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from channel_support import wait_for
from console_support import PASSPHRASE, DeviceProcess, owner_and_device, scene_video
from doorkeep.device.config import MqttSection
from doorkeep.device.vault.clips import decrypt_clip, open_clip_key, parse_header
from doorkeep.tools.owner_link import OwnerLink

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "doorkeep.tools.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=120, check=False)


def _gray(jpeg: bytes) -> Any:
    import av

    with av.open(io.BytesIO(jpeg)) as c:
        return next(c.decode(video=0)).to_ndarray(format="gray")


def test_the_service_answers_its_owner(tmp_path: Path, mosquitto, model_path: Path) -> None:
    owner = owner_and_device(tmp_path)
    video = scene_video(tmp_path / "scene.mp4")
    device = DeviceProcess(owner, broker_port=mosquitto.port, video=video, model_dir=model_path.parent)
    link = OwnerLink(MqttSection(host=mosquitto.host, port=mosquitto.port, discovery=False), owner=owner.keys,
                     device_key=owner.identity.public_bytes, timeout=20)
    try:
        link.start()
        assert wait_for(lambda: link.online is True, timeout=90), device.output()[-3000:]
        before = _gray(link.live_snapshot().jpeg)
        assert before[:60, :80].mean() > 40, "the top-left corner of the scene is not black to begin with"

        root = owner.state.parent
        (root / "mask.toml").write_text(f"""
[mqtt]
host = "127.0.0.1"
port = {mosquitto.port}
heartbeat_s = 1
reconnect_max_s = 2
[[masks]]
name = "neighbour"
polygon = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]
""")
        (root / "pass").write_text(PASSPHRASE + "\n")
        signed = _cli("config", "sign", root / "mask.toml", "--key", owner.key, "--passphrase-file", root / "pass",
                      "--book", owner.book, "--out", root / "mask.json")
        assert signed.returncode == 0, signed.stderr
        pushed = _cli("config", "push", root / "mask.json", "--broker", mosquitto.url, "--book", owner.book,
                      "--timeout", "60")
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr + device.output()[-3000:]
        assert "applied document #2" in pushed.stdout
        assert wait_for(lambda: "restarting the pipeline" in device.output(), timeout=30)
        assert wait_for(lambda: link.online is True, timeout=90)

        def masked() -> bool:
            try:
                return bool(_gray(link.live_snapshot().jpeg)[:100, :140].mean() < 30)
            except Exception:  # noqa: BLE001 (the pipeline is restarting; ask again)
                return False

        assert wait_for(masked, timeout=90), "the pushed mask is not applied by the running pipeline"

        assert wait_for(lambda: bool(link.list_clips()), timeout=120), device.output()[-3000:]
        clip = link.list_clips()[0]
        m = link.fetch_clip(clip.clip_id, tmp_path / "clip.clip")
        data = (tmp_path / "clip.clip").read_bytes()
        _h, packets = decrypt_clip(data, open_clip_key(parse_header(data), owner.keys), require_final=m.complete)
        assert packets and packets[0].keyframe

        listed = _cli("owner", "clips", "--broker", mosquitto.url, "--key", owner.key, "--passphrase-file",
                      root / "pass", "--book", owner.book)
        assert listed.returncode == 0 and clip.clip_id in listed.stdout, listed.stderr
    finally:
        link.close()
        device.stop()
