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


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT], ids=["SIGHUP", "SIGINT"])
def test_hangup_during_setup_still_removes_the_demo_keys(tmp_path: Path, sig: int) -> None:
    proc = _demo(tmp_path)
    try:
        _wait_for(lambda: any(p.name == "owner.key" for p in tmp_path.rglob("*")) or proc.poll() is not None)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    # 130 (stopped) or 0 (it had finished setting up); 1 with one line is still accepted: a signal inside a native
    # module's import can surface as that import failing (seen once in CI with SIGINT; not yet explained)
    assert proc.returncode in (0, 130, 1), err
    assert "Traceback" not in err, err
    assert _left(tmp_path) == [], _left(tmp_path)


# A signal that lands inside exec() of a string (every @dataclass the demo's lazy imports define during setup) must
# not turn a caught stop into "killed by SIGINT": a bare KeyboardInterrupt there makes CPython end `python -m
# doorkeep.tools.cli demo` (and this `-c`) by SIGINT, returncode -2, although cli.main caught it and returned 130.
_SIGNAL_INSIDE_EXEC = """
import os, signal
from doorkeep.tools.demo import interrupted_by
with interrupted_by(signal.SIGHUP):
    try:
        exec("import os, signal\\nos.kill(os.getpid(), signal.SIGHUP)\\nfor _ in range(10**6): pass", {})
    except KeyboardInterrupt:
        print("stopped")
"""


def test_a_stop_signal_inside_exec_still_exits_cleanly() -> None:
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_INSIDE_EXEC], capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "stopped\n"), proc.stderr


def test_a_stop_signal_while_the_runtime_imports_is_handled_after_the_import() -> None:
    # ai-edge-litert's native init turns an exception raised inside it into an ImportError ("no TFLite runtime")
    from doorkeep.device.detect.runtime import stop_signals_deferred

    seen: list[str] = []

    def _stop(_signum: int, _frame: object) -> None:
        seen.append("handler")
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGHUP, _stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            with stop_signals_deferred():
                os.kill(os.getpid(), signal.SIGHUP)
                for _ in range(1000):  # bytecode boundaries where a handler would run
                    pass
                seen.append("import done")
        assert seen == ["import done", "handler"]
        assert signal.getsignal(signal.SIGHUP) is _stop
    finally:
        signal.signal(signal.SIGHUP, old)
