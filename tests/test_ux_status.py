"""`doorkeep status`, `identity show` and `events --device-id` against a real `doorkeep run` on a file source and a
real mosquitto (#11 item 10): what the service is doing (identity, owner, counter, clips, outbox, MQTT, mode, last
event), "not running" once it stops, and the public key that `events` takes (the secret seed is refused)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.status_file import STATUS_FILE
from doorkeep.provisioning.state_lock import StateLock
from ux_support import DOORKEEP, doorkeep, one_error_line

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.detection]


def _video(path: Path) -> Path:
    from doorkeep.device.sources.photo_scene import LOOP_S, photo_scene
    from doorkeep.device.sources.synthetic import write_video

    write_video(str(path), seconds=LOOP_S, width=640, height=480, fps=10, scene=photo_scene(640, 480))
    return path


def _status(cfg: Path) -> dict[str, Any]:
    proc = doorkeep("status", "--config", str(cfg), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


def _until(what: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = what()
        if got:
            return got
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_status_identity_and_events_against_the_running_service(tmp_path: Path, mosquitto, model_path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    cfg = tmp_path / "doorkeep.toml"
    cfg.write_text(f"""
[device]
state_dir = "{state}"
[capture]
source = "file"
path = "{_video(tmp_path / 'door.mp4')}"
loop = true
main_width = 640
main_height = 480
[mqtt]
host = "{mosquitto.host}"
port = {mosquitto.port}
reconnect_max_s = 1
""")
    env = {"DOORKEEP_MODEL_DIR": str(model_path.parent)}

    before = _status(cfg)  # nothing yet: no identity, nothing running — and status created nothing
    assert before["identity"] is None and before["service"]["running"] is False
    assert not state.exists()
    one_error_line(doorkeep("identity", "show", "--config", str(cfg)), contains="no device identity")

    DeviceIdentity.load_or_create(state)  # first boot, so the hub can subscribe before the service starts
    shown = json.loads(doorkeep("identity", "show", "--config", str(cfg), "--json").stdout)
    key = doorkeep("identity", "show", "--config", str(cfg), "--public-key").stdout.strip()
    assert key == shown["public_key"] and len(key) == 64 and shown["device_id"].startswith("dk-")
    # the hub side: the public key exactly as identity show prints it is what events takes
    hub = subprocess.Popen([DOORKEEP, "events", "--broker", mosquitto.url, "--device-id", shown["device_id"],
                            "--device-key", key, "--json", "--count", "1", "--seconds", "120"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert hub.stderr is not None
    while "listening" not in hub.stderr.readline():
        assert hub.poll() is None, hub.communicate()

    proc = subprocess.Popen([sys.executable, "-m", "doorkeep.tools.cli", "run", "--config", str(cfg)],
                            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        live = _until(lambda: (s := _status(cfg))["service"]["running"] and s["mqtt"].get("connected") and s)
        assert live["identity"] == shown
        assert live["service"]["pid"] == proc.pid and live["mode"] in ("day", "night")
        assert live["owner"] is None and live["config_counter"] == 0
        assert live["mqtt"]["host"] == mosquitto.host and live["mqtt"]["port"] == mosquitto.port
        assert live["audit"]["records"] >= 1

        text = doorkeep("status", "--config", str(cfg)).stdout
        assert f"device      {shown['device_id']}  fingerprint {shown['fingerprint']}" in text
        assert f"running (pid {proc.pid}" in text and f"connected to {mosquitto.host}:{mosquitto.port}" in text
        assert "NOT paired" in text and ("mode        day" in text or "mode        night" in text), text

        out, err = hub.communicate(timeout=150)
        assert hub.returncode == 0, err
        assert json.loads(out.splitlines()[0])["verified"] is True
        one_error_line(doorkeep("events", "--broker", mosquitto.url, "--device-key", str(state / "device.key")),
                       contains="SECRET")
        one_error_line(doorkeep("events", "--broker", mosquitto.url, "--device-id", "dk-aaaaaaaaaaaaaaaa",
                                "--device-key", key), contains=f"belongs to {shown['device_id']}")

        seen = _until(lambda: (s := _status(cfg))["last_event"] and s)  # the person in the video
        assert seen["last_event"]["kind"] == "person" and seen["last_event"]["phase"] in ("start", "end")

        mosquitto.stop()  # the broker goes away: status says so within a few seconds
        lost = _until(lambda: (s := _status(cfg))["mqtt"].get("connected") is False and s, timeout=30)
        assert "NOT connected" in doorkeep("status", "--config", str(cfg)).stdout and lost["service"]["running"]
        mosquitto.start()
        _until(lambda: _status(cfg)["mqtt"].get("connected"), timeout=30)

        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        for p in (proc, hub):
            if p.poll() is None:
                p.kill()
                p.communicate()

    after = _status(cfg)
    assert after["service"]["running"] is False and "connected" not in after["mqtt"]
    assert after["last_event"] is not None  # the last known event stays readable
    text = doorkeep("status", "--config", str(cfg)).stdout
    assert "service     not running" in text and f"{after['mode']} when last seen" in text

    with StateLock(state, holder="doorkeep pair --device"):  # another device command holds the state
        held = _status(cfg)
        assert held["service"]["running"] is False
        assert "in use by doorkeep pair --device" in held["service"]["note"]


def test_a_stale_status_file_is_not_a_running_service(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = tmp_path / "doorkeep.toml"
    cfg.write_text(f'[device]\nstate_dir = "{state}"\n')
    old = {"format": "doorkeep/status", "v": 1, "state": "running", "pid": os.getpid(), "device_id": "dk-x",
           "updated_at": time.time() - 3600, "mode": "night", "mqtt": {"enabled": True, "connected": True}}
    (state / STATUS_FILE).write_text(json.dumps(old))
    st = _status(cfg)
    assert st["service"]["running"] is False and "connected" not in st["mqtt"]
    with StateLock(state, holder="doorkeep run"):  # the service holds the state: up, but no fresh status (yet)
        st = _status(cfg)
        assert st["service"]["running"] is True and "stuck?" in st["service"]["note"]
        (state / STATUS_FILE).unlink()
        assert _status(cfg)["service"]["note"].startswith("starting")
        assert "connected" not in _status(cfg)["mqtt"]


def test_status_file_follows_changes_at_a_bounded_rate(tmp_path: Path) -> None:
    from doorkeep.device.events import Event
    from doorkeep.device.status_file import StatusFile, read_status

    live = {"mode": "day"}
    path = tmp_path / STATUS_FILE
    sf = StatusFile(path, snapshot=lambda: dict(live), poll_s=0.01, min_interval_s=0.2, refresh_s=60)
    sf.start()
    try:
        _until(lambda: sf.writes >= 1, timeout=10)
        t0, w0 = time.monotonic(), sf.writes
        for i in range(60):  # a flapping value: the file is rewritten at most every min_interval_s
            live["mode"] = "night" if i % 2 else "day"
            sf.poke()
            time.sleep(0.01)
        assert sf.writes - w0 <= 2 + (time.monotonic() - t0) / 0.2
        sf.on_event(Event("e1", "person", "start", 1.0, 1.0, zone="porch"))
        last = _until(lambda: (d := read_status(path)) and d["last_event"] and d, timeout=10)
        assert last["last_event"]["zone"] == "porch" and last["state"] == "running" and last["pid"] == os.getpid()
    finally:
        sf.stop()
    assert read_status(path)["state"] == "stopped"  # type: ignore[index]
