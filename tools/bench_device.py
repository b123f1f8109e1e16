"""Whole-device benchmarks: ``doorkeep run`` as the service runs it, in its own process.

The device is paired (an owner key pinned, so the vault records encrypted clips), reads a 1080p30 H.264 file
(the demo's real photos: a person walks in, stands, walks off, on loop, paced at 30 fps like a camera), publishes to
a real mosquitto, and runs the default detector on the 320x240 lores stream — the configuration that ships, with a
file in place of the camera.

* ``cold_start_s``: process start (``exec`` of the interpreter) → the first inference the detect thread completes:
  imports, config, identity, vault, broker connection, model load, file open, the first decoded frame through the
  ring and the gate (goal <= 3 s on the development machine). The child reports the moment through a one-line hook
  on the stats counter ``inferences`` (nothing else of the device is changed).
* ``device_rss_mb``: the process's resident memory (``VmRSS``) after 60 s of running (goal <= 150);
  ``device_rss_peak_mb`` its high-water mark (``VmHWM``) over those 60 s.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Runs in the child: report the first completed inference on stdout, then run the real CLI.
_CHILD = r"""
import os, sys, time
from doorkeep.device import stats as _stats
_count = _stats.Stats.count
def count(self, name, n=1):
    _count(self, name, n)
    if name == "inferences" and not count.done:
        count.done = True
        os.write(1, f"bench: first inference at {time.time():.6f}\n".encode())
count.done = False
_stats.Stats.count = count
from doorkeep.tools.cli import main
sys.exit(main(["run", "--config", sys.argv[1]]))
"""


def _kb(pid: int, key: str) -> float:
    m = re.search(key + r":\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return float(m.group(1)) if m else 0.0


def _config(tmp: Path, *, video: Path, width: int, height: int, host: str, port: int) -> Path:
    """A paired device (pairing exchange in memory, the owner's signed configuration naming the broker) and its local
    file: what a hobbyist's device has after ``doorkeep pair`` and ``doorkeep config apply``."""
    from doorkeep.device.vault.audit import AuditLog
    from doorkeep.device.vault.keys import SecretKeys
    from doorkeep.provisioning.device_state import DeviceProvisioning
    from doorkeep.provisioning.identity import first_boot
    from doorkeep.provisioning.signed_config import SignedConfigStore, sign_config
    from doorkeep.tools.bench_provisioning import pair

    state = tmp / "state"
    ident = first_boot(state)
    audit = AuditLog.open(state / "audit.log", ident)
    try:
        prov = DeviceProvisioning(state, identity=ident, audit=audit)
        owner = SecretKeys.generate("owner")
        pair(prov, owner)
        SignedConfigStore(prov).apply(sign_config({"mqtt": {"host": host, "port": port}}, device_id=ident.device_id,
                                                  counter=1, keys=owner).to_bytes())
    finally:
        audit.close()
    path = tmp / "doorkeep.toml"
    path.write_text(f"""
[device]
state_dir = "{state}"
[capture]
source = "file"
path = "{video}"
realtime = true
loop = true
main_width = {width}
main_height = {height}
""")
    return path


def device_figures(*, run_s: float, width: int, height: int) -> dict[str, float]:
    """Start ``doorkeep run`` on a paired device with a ``width`` x ``height`` file source; cold start and RSS."""
    from doorkeep.device.errors import DoorkeepError
    from doorkeep.device.sources.photo_scene import LOOP_S, photo_scene
    from doorkeep.device.sources.synthetic import write_video
    from doorkeep.tools.local_broker import LocalMosquitto

    with tempfile.TemporaryDirectory(prefix="dk-bench-device-") as d, LocalMosquitto() as broker:
        tmp = Path(d)
        video = tmp / "door.mp4"
        write_video(str(video), seconds=LOOP_S, width=width, height=height, fps=30, scene=photo_scene(width, height))
        config = _config(tmp, video=video, width=width, height=height, host=broker.host, port=broker.port)
        os.sync()  # the video and keys are on disk before the clock starts, like a booted device's files
        t0 = time.time()
        log = tmp / "run.log"  # a file, not a pipe: a chatty device never blocks on a full pipe
        with open(log, "w") as out:
            proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(config)], stdout=out, stderr=subprocess.STDOUT)
        try:
            m = None
            while m is None and proc.poll() is None and time.time() < t0 + 300:
                time.sleep(0.05)
                m = re.search(r"^bench: first inference at ([0-9.]+)$", log.read_text(), re.M)
            if m is None:
                raise DoorkeepError("bench_device: no inference from doorkeep run:\n" + log.read_text()[-3000:])
            first = float(m.group(1))
            end = first + run_s
            while time.time() < end and proc.poll() is None:
                time.sleep(min(1.0, max(0.0, end - time.time())))
            if proc.poll() is not None:
                raise DoorkeepError(f"bench_device: doorkeep run exited ({proc.returncode}) during the run:\n"
                                    + log.read_text()[-3000:])
            rss, hwm = _kb(proc.pid, "VmRSS"), _kb(proc.pid, "VmHWM")
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {"cold_start_s": round(first - t0, 3), "device_rss_mb": round(rss / 1024, 1),
            "device_rss_peak_mb": round(hwm / 1024, 1)}


def run(*, quick: bool = False) -> dict[str, float]:
    if quick:
        return device_figures(run_s=5.0, width=640, height=480)
    return device_figures(run_s=60.0, width=1920, height=1080)
