"""`doorkeep demo --console` as a new user runs it (./run demo --console): the demo device and the owner console
start together, the printed URL serves the unlock page, the demo passphrase unlocks it, and a mask saved in
Settings is applied by the demo device, which restarts its pipeline with it."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_demo_console_serves_the_console_and_applies_a_mask_from_settings(tmp_path) -> None:
    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "doorkeep.tools.cli", "demo", "--console", "--console-port", "0",
                             "--seconds", "60", "--state", str(tmp_path / "demo")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            m = re.search(r"owner console on (http://127\.0\.0\.1:\d+)/ .*passphrase 'demo'", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        with httpx.Client(base_url=url, follow_redirects=False, timeout=60) as http:
            assert http.get("/timeline").headers["location"] == "/unlock"
            assert http.post("/unlock", data={"passphrase": "wrong"}, headers={"origin": url}).status_code == 200
            time.sleep(0.6)  # the throttle after a wrong passphrase
            assert http.post("/unlock", data={"passphrase": "demo"}, headers={"origin": url}).status_code == 303
            page = http.get("/settings").text
            csrf = re.search(r'<meta name="csrf" content="([^"]+)"', page).group(1)
            body = {"masks": [{"name": "hedge", "polygon": [[0, 0], [0.2, 0], [0.2, 0.2], [0, 0.2]]}], "zones": [],
                    "threshold": 0.5, "end_after_s": 4, "max_age_days": 30, "max_gb": 8.59}
            verdict = http.post("/settings", json=body, headers={"origin": url, "x-csrf-token": csrf}).json()
            assert verdict["ok"] is True and verdict["counter"] == 1, verdict
        deadline = time.monotonic() + 60
        while not any("restarting the pipeline" in ln for ln in lines) and time.monotonic() < deadline:
            lines.append(proc.stdout.readline())
        assert any("restarting the pipeline" in ln for ln in lines), "".join(lines[-20:])
        # After the device's own lines, the demo says again where to look and how to play the requester.
        assert any(f"open {url}/ in your browser" in ln and "doorkeep request --send" in ln for ln in lines), \
            "".join(lines[:20])
    finally:
        proc.terminate()
        out = proc.communicate(timeout=60)[0]
    assert "Traceback" not in "".join(lines) + out, out[-3000:]
