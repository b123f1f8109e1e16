"""`doorkeep run` as the systemd service runs it: a real process, a real file source with a real person photo,
the real model, a real mosquitto, sd_notify on a real unix socket, SIGTERM to stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from doorkeep.device.config import MqttSection
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.payload import verify

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _video(path: Path) -> Path:
    from doorkeep.device.sources.photo_scene import photo_scene
    from doorkeep.device.sources.synthetic import write_video

    write_video(str(path), seconds=8, width=640, height=480, fps=30, scene=photo_scene(640, 480))
    return path


def test_run_service_publishes_signed_events_notifies_systemd_and_stops_on_sigterm(tmp_path, mosquitto, model_path):
    state = tmp_path / "state"
    identity = DeviceIdentity.load_or_create(state)  # first boot happens here so the test knows the key
    config = tmp_path / "doorkeep.toml"
    config.write_text(f"""
[device]
state_dir = "{state}"
[capture]
source = "file"
path = "{_video(tmp_path / 'door.mp4')}"
realtime = true
loop = true
main_width = 640
main_height = 480
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
heartbeat_s = 1
""")
    received: list[bytes] = []
    hub = MqttClient(MqttSection(host=mosquitto.host, port=mosquitto.port, discovery=False),
                     client_id="test-hub")
    hub.subscribe(f"doorkeep/{identity.device_id}/event", lambda _t, p: received.append(p))
    hub.start()
    hub.wait_subscribed(10)

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = str(tmp_path / "notify.sock")
    notify.bind(notify_path)
    notify.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "2000000",
           "DOORKEEP_MODEL_DIR": str(model_path.parent)}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen([sys.executable, "-m", "doorkeep.tools.cli", "run", "--config", str(config)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        messages = []
        while not any(m.startswith(b"READY=1") for m in messages):
            messages.append(notify.recv(4096))
        while not any(m == b"WATCHDOG=1" for m in messages):
            messages.append(notify.recv(4096))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(b'"start"' in p for p in received):
            time.sleep(0.2)
        events = [verify(p, identity.public_bytes) for p in received]
        assert any(e.kind == "person" and e.phase == "start" for e in events), received
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        hub.stop()
        notify.close()
    assert proc.returncode == 0, out
    assert identity.device_id in out and "NOT paired" in out
