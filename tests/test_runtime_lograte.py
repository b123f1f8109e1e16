"""Log floods (#10.9): a failure that repeats every frame or packet logs one traceback, then counts."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from doorkeep.device.app import Doorbell
from doorkeep.device.config import CaptureSection, Config
from doorkeep.device.lograte import FailureLog
from doorkeep.device.sources.synthetic import SyntheticSource


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def _fail(f: FailureLog, n: int = 1, msg: str = "boom") -> None:
    for _ in range(n):
        try:
            raise RuntimeError(msg)
        except RuntimeError:
            f.failed()


def test_first_failure_has_a_traceback_then_one_count_line_per_interval(caplog) -> None:
    clock = Clock()
    f = FailureLog(logging.getLogger("t"), "detect stage", interval_s=60, clock=clock)
    with caplog.at_level(logging.DEBUG, logger="t"):
        _fail(f, 100)
        assert [r.exc_info is not None for r in caplog.records] == [True]  # 100 failures: one line so far
        clock.t = 61
        _fail(f, 1, "latest")
        assert len(caplog.records) == 2 and caplog.records[1].exc_info is None
        assert "failed 100 more times in the last 60 s (latest: RuntimeError: latest)" in caplog.records[1].message
        _fail(f, 50)
        assert len(caplog.records) == 2 and f.total == 151 and f.suppressed == 50
        f.ok()
        assert ["failed 50 more times" in caplog.records[2].message,
                "recovered after 151 failures" in caplog.records[3].message] == [True, True]
        f.ok()  # nothing failed since: silent
        assert len(caplog.records) == 4
        for _ in range(1000):  # a flapping failure: its first flap is logged (and recovers), then no line per flap
            _fail(f)
            f.ok()
        assert len(caplog.records) == 6 and f.suppressed == 999
        clock.t = 200
        _fail(f)  # a new streak a while later: its first failure shows its traceback again
        assert caplog.records[-1].exc_info is not None and f.suppressed == 999
        clock.t = 300
        _fail(f)
        assert "failed 1000 more times" in caplog.records[-1].message


def _config() -> Config:
    return Config().replace(capture=CaptureSection(main_width=320, main_height=240))


def test_a_detector_failing_on_every_frame_logs_one_traceback(caplog) -> None:
    class Broken:
        def detect(self, frame: np.ndarray) -> list:
            raise RuntimeError("model exploded")

    source = SyntheticSource(width=320, height=240, fps=30, duration_s=1.0, realtime=False)
    bell = Doorbell.from_config(_config(), source=source, detector=Broken())
    bell.pipeline.gate = None  # infer on every frame
    with caplog.at_level(logging.WARNING, logger="doorkeep.device.loop"), bell:
        assert source.wait(30)
        time.sleep(0.3)
    errors = bell.stats.snapshot()["counters"]["detect_errors"]
    assert errors > 5
    lines = [r for r in caplog.records if r.name == "doorkeep.device.loop"]
    assert len(lines) == 1 and lines[0].exc_info is not None and "detect stage failed" in lines[0].message


def test_a_broken_packet_sink_logs_once_not_per_packet(caplog) -> None:
    class BrokenSink:
        def on_packet(self, packet: object) -> None:
            raise OSError("pipe closed")

    got = []

    class GoodSink:
        def on_packet(self, packet: object) -> None:
            got.append(packet)

    source = SyntheticSource(width=320, height=240, fps=30, duration_s=1.0, realtime=False)
    source.attach(packet_sinks=[BrokenSink(), GoodSink()])
    with caplog.at_level(logging.WARNING, logger="doorkeep.device.sources.base"), source:
        source.start()
        assert source.wait(30)
    assert source.packets == len(got) >= 30  # the good sink still got every packet
    lines = [r for r in caplog.records if r.name == "doorkeep.device.sources.base"]
    assert len(lines) == 1 and "packet sink BrokenSink failed" in lines[0].message


@pytest.mark.parametrize("n", [1, 3])
def test_ok_after_failures_reports_recovery(caplog, n: int) -> None:
    f = FailureLog(logging.getLogger("t2"), "sink", interval_s=60, clock=Clock())
    with caplog.at_level(logging.DEBUG, logger="t2"):
        _fail(f, n)
        f.ok()
    assert caplog.records[-1].message == f"sink recovered after {n} failures"
