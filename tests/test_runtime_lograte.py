"""Log floods (#10.9): a failure that repeats every frame or packet logs one traceback, then counts."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest
from doorkeep.device.app import Doorbell
from doorkeep.device.config import CaptureSection, Config
from doorkeep.device.events import Event
from doorkeep.device.lograte import FailureLog, SinkFailures
from doorkeep.device.loop import CaptureLoop
from doorkeep.device.preroll import PacketRing
from doorkeep.device.rings import FrameRing
from doorkeep.device.sources.synthetic import SyntheticSource
from worker_faults import wait_until


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

    # paced, and long enough that a loaded machine's detect thread still sees >= 20 frames (it takes the latest)
    source = SyntheticSource(width=320, height=240, fps=30, duration_s=60.0, realtime=True)
    bell = Doorbell.from_config(_config(), source=source, detector=Broken())
    bell.pipeline.gate = None  # infer on every frame
    with caplog.at_level(logging.WARNING, logger="doorkeep.device.loop"), bell:
        wait_until(lambda: bell.stats.snapshot()["counters"].get("detect_errors", 0) >= 20, timeout=30,
                   what="20 failed frames")
    assert bell.stats.snapshot()["counters"]["detect_errors"] >= 20
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


class _Broken:
    def on_packet(self, packet: object) -> None:
        raise OSError("pipe closed")

    def on_event(self, event: object) -> None:
        raise OSError("hub gone")


def test_a_broken_pre_roll_sink_logs_once_not_per_packet(caplog) -> None:
    from vault_support import make_packets

    got: list[object] = []

    class Good:
        def on_packet(self, packet: object) -> None:
            got.append(packet)

    pre = PacketRing(seconds=5.0)
    pre.flush_into(_Broken())
    pre.flush_into(Good())  # type: ignore[arg-type]
    packets = make_packets(40)
    with caplog.at_level(logging.WARNING, logger="doorkeep.device.preroll"):
        for p in packets:
            pre.on_packet(p)
    assert len(got) == len(packets)  # the good sink still got every packet
    lines = [r for r in caplog.records if r.name == "doorkeep.device.preroll"]
    assert len(lines) == 1 and lines[0].exc_info is not None
    assert "pre-roll packet sink _Broken failed" in lines[0].message


def test_a_broken_event_sink_logs_once_not_per_event(caplog) -> None:
    source = SyntheticSource(width=320, height=240, fps=30, duration_s=0.1, realtime=False)
    ring = FrameRing(width=320, height=240, frames=4)
    loop = CaptureLoop(source, ring, event_sinks=[_Broken()])
    with caplog.at_level(logging.WARNING, logger="doorkeep.device.loop"):
        loop.events_worker.start()
        try:
            for i in range(50):
                loop._queue_event(Event(f"e{i}", "person", "start", float(i), float(i)))
            wait_until(lambda: loop.stats.snapshot()["counters"].get("publish_errors", 0) == 50, what="50 events")
        finally:
            loop.events_worker.stop()
    lines = [r for r in caplog.records if r.name == "doorkeep.device.loop"]
    assert len(lines) == 1 and lines[0].exc_info is not None and "event sink _Broken failed" in lines[0].message


def test_sink_failures_keep_one_log_per_sink(caplog) -> None:
    clock = Clock()
    failures = SinkFailures(logging.getLogger("t3"), "sink", interval_s=60, clock=clock)
    a, b = _Broken(), _Broken()
    with caplog.at_level(logging.DEBUG, logger="t3"):
        for _ in range(100):
            assert not failures.call(a, a.on_packet, None)
            assert not failures.call(b, b.on_packet, None)
        assert failures.call(a, lambda: None)
    # one traceback per sink (b's first failure is not hidden by a's), then a's recovery; 200 failures counted
    assert [(r.exc_info is not None, r.levelname) for r in caplog.records] == [
        (True, "ERROR"), (True, "ERROR"), (False, "ERROR"), (False, "WARNING")]
    assert failures.total == 200


def test_publishing_from_the_outbox_failing_on_every_pass_logs_once(tmp_path, caplog) -> None:
    from doorkeep.device.errors import PublishError
    from doorkeep.device.publish.outbox import Outbox, OutMessage
    from doorkeep.device.publish.publisher import _Sender

    class RefusingClient:  # connected, but every publish raises (a broken socket paho has not noticed yet)
        connected = True
        attempts = 0

        def add_connect_listener(self, fn: object) -> None:
            pass

        def publish_raw(self, *a: object, **kw: object) -> None:
            self.attempts += 1
            raise PublishError("socket gone")

    client = RefusingClient()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    outbox.put([OutMessage("t", b"x")])
    sender = _Sender(client, outbox, window=4)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="doorkeep.device.publish.publisher"):
        sender.start()
        try:
            for _ in range(30):
                sender.wake()
                time.sleep(0.01)
            wait_until(lambda: client.attempts >= 10, what="10 publish attempts")
        finally:
            sender.stop()
            outbox.close()
    lines = [r for r in caplog.records if r.name == "doorkeep.device.publish.publisher"]
    assert len(lines) == 1 and lines[0].exc_info is not None and "publishing from the outbox" in lines[0].message


def test_a_vault_writer_failing_on_every_packet_logs_once(tmp_path, caplog, monkeypatch) -> None:
    from doorkeep.device.vault.recorder import ClipRecorder
    from vault_support import make_device, make_packets

    calls = []

    def broken(self: ClipRecorder, item: object) -> None:
        calls.append(item)
        raise RuntimeError("codec exploded")

    monkeypatch.setattr(ClipRecorder, "_write_locked", broken)
    dev = make_device(tmp_path)
    ring = PacketRing(seconds=1.0)
    packets = make_packets(40)
    with caplog.at_level(logging.WARNING, logger="doorkeep.device.vault.recorder"):
        dev.vault.start(ring)
        try:
            dev.vault.on_event(Event("ev1", "person", "start", packets[0].t_wall, packets[0].t_wall))
            for p in packets:
                ring.on_packet(p)
            wait_until(lambda: len(calls) >= 30, what="30 failed writes")
        finally:
            dev.vault.stop()
    lines = [r for r in caplog.records if r.name == "doorkeep.device.vault.recorder"]
    assert len(lines) == 1 and lines[0].exc_info is not None, [r.message for r in lines]  # not one per packet
