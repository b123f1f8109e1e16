"""#11 item 11: the running device says what it does — one line per event start/end, clip opened/closed, MQTT
connected/lost, day/night switch, retention run, refused grant or request — on its activity stream, which
`doorkeep run` shows at the default verbosity; `--stats` adds the mode, the MQTT state and the outbox backlog; no
line per frame, and repeated failures are said once per interval with a count."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest
from doorkeep.device import activity
from doorkeep.device.activity import NAME as ACTIVITY
from doorkeep.device.errors import ReleaseError
from doorkeep.device.lograte import FailureLog
from doorkeep.device.vault import retention
from vault_support import make_device, make_packets, write_clip


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_an_expected_failure_repeated_is_said_once_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    failures = FailureLog(activity.log, "event queue", clock=clock, traceback=False)
    with caplog.at_level(logging.INFO, logger=ACTIVITY):
        for i in range(1000):  # a full queue on every frame for 100 s
            clock.t = i / 10
            failures.failed("(full: dropped person start)")
    lines = [r.getMessage() for r in caplog.records if r.name == ACTIVITY]
    assert lines[0] == "event queue failed (full: dropped person start)"
    assert lines[1:] == ["event queue failed 600 more times in the last 60 s (latest: (full: dropped person start))"]
    assert not any(r.exc_info for r in caplog.records)  # an expected failure carries no traceback


def test_retention_and_refused_grants_are_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dev = make_device(tmp_path)
    now = time.time()
    for i, age_days in enumerate([40, 35, 1]):
        write_clip(dev, f"c{i}", make_packets(6, t0=now - age_days * 86400))
    with caplog.at_level(logging.INFO, logger=ACTIVITY):
        retention.enforce(dev.vault.store, max_age_s=30 * 86400, max_bytes=10**12, audit=dev.vault.audit, now=now)
        retention.enforce(dev.vault.store, max_age_s=30 * 86400, max_bytes=10**12, audit=dev.vault.audit, now=now)
        for _ in range(50):  # a flood of garbage grants: one line, not fifty
            with pytest.raises(ReleaseError):
                dev.vault.releases.export_stream(b"not a grant", lambda _b: None, destination="test")
    lines = [r.getMessage() for r in caplog.records if r.name == ACTIVITY]
    said = [x for x in lines if x.startswith("retention:")]
    assert len(said) == 1 and said[0].startswith("retention: shredded 2 clip(s) (max_age 2)"), lines  # not idle runs
    refused = [x for x in lines if x.startswith("a grant failed (refused: ")]
    assert len(refused) == 1, lines


@pytest.mark.broker
@pytest.mark.slow
def test_doorkeep_run_says_what_it_does(tmp_path: Path, mosquitto, model_path: Path) -> None:  # type: ignore[no-untyped-def]
    from console_support import DeviceProcess, owner_and_device, scene_video

    owner = owner_and_device(tmp_path)
    video = scene_video(tmp_path / "door.mp4")
    device = DeviceProcess(owner, broker_port=mosquitto.port, video=video, model_dir=model_path.parent)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not re.search(r"clip \S+ closed", device.output()):
            assert device.proc.poll() is None, device.output()
            time.sleep(0.5)
    finally:
        device.stop()
    out = device.output()
    for pattern in (r"MQTT connected to 127\.0\.0\.1:\d+", r"person event (\S+) started \(score 0\.\d\d\)",
                    r"clip \S+ opened for event \S+", r"person event \S+ ended after \d+\.\d s",
                    r"clip \S+ closed: \d+\.\d s, \d+\.\d MB"):
        assert re.search(pattern, out), f"{pattern!r} not in:\n{out}"
    assert len(out.splitlines()) < 40, out  # a line per thing that happened, never per frame


def test_stats_line_has_mode_mqtt_and_backlog() -> None:
    from doorkeep.tools.cmd_run import _format

    snap = {"uptime_s": 12.0, "fps": 5.0, "gauges": {"night_mode": 1.0, "capture_fps": 30.0},
            "counters": {"events": 2}, "latency_ms": {"gate": {"p50": 0.1}, "detect": {"n": 0}}}
    line = _format(snap, link=(False, 17))
    assert "mode night" in line and "mqtt DOWN" in line and "outbox 17" in line
