"""SIGHUP (a closed terminal) and SIGTERM stop `doorkeep demo` cleanly, during setup or while it runs: no demo
keys are left behind in the temporary directory (#11 item 15)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # not `detection`: the demo needs the demo extra (amqtt), not in .venv-tflite


def _demo(tmp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "doorkeep.tools.cli", "demo"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp)})


def _wait_for(cond, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    t_end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < t_end, "timed out"
        time.sleep(0.05)


def _left(tmp: Path) -> list[str]:
    return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM], ids=["SIGHUP", "SIGTERM"])
def test_signal_while_running_stops_cleanly_and_removes_the_demo_keys(tmp_path: Path, sig: int) -> None:
    proc = _demo(tmp_path)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # printed once the device is built and about to run
        assert first.startswith("doorkeep demo: SyntheticSource"), first
        while not proc.stdout.readline().startswith("t="):  # the first stats line: it is running
            assert proc.poll() is None
        assert any(p.name == "owner.key" for p in tmp_path.rglob("*"))  # the demo owner key exists meanwhile
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "audit log:" in out and "chain intact" in out  # it stopped the normal way, with its report
    assert _left(tmp_path) == [], _left(tmp_path)


def test_hangup_during_setup_still_removes_the_demo_keys(tmp_path: Path) -> None:
    proc = _demo(tmp_path)
    try:
        _wait_for(lambda: any(p.name == "owner.key" for p in tmp_path.rglob("*")) or proc.poll() is not None)
        proc.send_signal(signal.SIGHUP)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode in (0, 130)
    assert _left(tmp_path) == [], _left(tmp_path)
