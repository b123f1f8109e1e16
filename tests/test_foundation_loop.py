"""The loop and Doorbell: start/stop leaves no threads, events reach sinks off the capture thread, slow stages never
stall capture, stats are JSON-able, signals stop it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from doorkeep.device.app import Doorbell
from doorkeep.device.config import CaptureSection, Config
from doorkeep.device.detections import Detection
from doorkeep.device.events import Event
from doorkeep.device.loop import stop_on_signals
from doorkeep.device.sources.synthetic import SyntheticSource


def _config(**capture: object) -> Config:
    return Config().replace(capture=CaptureSection(**{"main_width": 320, "main_height": 240, **capture}))


def _source(seconds: float | None = None, realtime: bool = True) -> SyntheticSource:
    return SyntheticSource(width=320, height=240, fps=30, duration_s=seconds, realtime=realtime)


class SlowDetector:
    """Finds a 'person' in every frame it is given, slowly (a real detector on a slow CPU)."""

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.calls = 0

    def detect(self, frame: np.ndarray) -> list[Detection]:
        self.threads.add(threading.current_thread().name)
        assert frame.shape == (240 * 3 // 2, 320)
        self.calls += 1
        time.sleep(0.05)
        return [Detection(0.9, 0.4, 0.3, 0.6, 0.9)]


class EveryNthTracker:
    """Emits one event per inference (enough to see the fan-out)."""

    active = None  # never holds an event open, so the gate alone decides when to infer

    def __init__(self) -> None:
        self.none_updates = 0

    def update(self, t: float, detections: list | None, *, wall: float | None = None) -> list[Event]:
        if detections is None:
            self.none_updates += 1
            return []
        return [Event(event_id=f"e{t}", kind="person", phase="start", t=t, t_start=t, score=detections[0].score)]


class SlowSink:
    def __init__(self) -> None:
        self.events: list[Event] = []
        self.threads: set[str] = set()

    def on_event(self, event: Event) -> None:
        self.threads.add(threading.current_thread().name)
        time.sleep(0.02)
        self.events.append(event)


def _doorkeep_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("doorkeep-")]


def test_start_stop_leaves_no_threads_and_is_idempotent() -> None:
    before = set(threading.enumerate())
    bell = Doorbell.from_config(_config(), source=_source())
    for _ in range(2):
        bell.start()
        bell.start()
        assert len(_doorkeep_threads()) == 3  # capture, detect, events
        assert bell.ring.read_latest(bell.ring.empty_frame(), timeout=5) is not None
        bell.stop()
        bell.stop()
        assert _doorkeep_threads() == []
    bell.close()
    bell.close()
    assert set(threading.enumerate()) <= before


class BlockedUntilReleased:
    """A detector and an event sink that hang (like a wedged model or a broker write stuck on a full socket) until
    the test releases them: the detector answers its first frame at once, so an event reaches the sink, and then
    blocks; the sink blocks on its first event."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.detector_blocked = threading.Event()
        self.sink_blocked = threading.Event()
        self.calls = 0
        self.events: list[Event] = []
        self.threads: dict[str, set[str]] = {"detect": set(), "sink": set()}

    def detect(self, frame: np.ndarray) -> list[Detection]:
        self.threads["detect"].add(threading.current_thread().name)
        self.calls += 1
        if self.calls > 1:
            self.detector_blocked.set()
            assert self.release.wait(60)
        return [Detection(0.9, 0.4, 0.3, 0.6, 0.9)]

    def on_event(self, event: Event) -> None:
        self.threads["sink"].add(threading.current_thread().name)
        self.sink_blocked.set()
        assert self.release.wait(60)
        self.events.append(event)


def test_capture_keeps_its_pace_while_detection_and_sinks_hang() -> None:
    """Capture is paced like a camera (4 frame buffers); the detector and the sink hang. Capture must keep
    advancing without a single dropped frame while they hang — a stage that blocked capture would stop the ring
    (the wait below times out) or overflow the camera's buffers (drops)."""
    hang = BlockedUntilReleased()
    source = _source()
    bell = Doorbell.from_config(_config(), source=source, detector=hang, tracker=EveryNthTracker(), event_sinks=[hang])
    bell.gate.hold_s = 600.0  # keep inference running once the gate opened
    bell.gate.update(np.zeros(bell.ring.shape, np.uint8), 0.0)  # and open it right away
    bell.gate.update(np.full(bell.ring.shape, 255, np.uint8), time.monotonic())
    with bell:
        assert hang.detector_blocked.wait(30) and hang.sink_blocked.wait(30)
        hung_at = bell.ring.frames
        deadline = time.monotonic() + 60
        while bell.ring.frames < hung_at + 45 and time.monotonic() < deadline:  # 1.5 s of frames at 30 fps
            time.sleep(0.05)
        assert bell.ring.frames >= hung_at + 45, "capture stopped while detection and the sink hung"
        # no frame lost = capture never fell more than the camera's 4 buffers behind its schedule
        assert source.drops == 0, f"capture lost {source.drops} frames (up to {source.max_lag * 1e3:.0f} ms late)"
        hang.release.set()
        seen = bell.ring.frames
        while bell.stats.snapshot()["counters"].get("inferences", 0) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert hang.threads == {"detect": {"doorkeep-detect"}, "sink": {"doorkeep-events"}}
    assert bell.ring.skipped > 0 and hang.calls < seen  # latest-wins: the hung detector skipped frames
    assert len(hang.events) == hang.calls  # every event delivered, none lost at stop
    snap = bell.stats.snapshot()
    json.dumps(snap)
    assert snap["counters"]["inferences"] == hang.calls
    assert _doorkeep_threads() == []


def test_detect_latency_is_recorded_off_the_capture_thread() -> None:
    det, tracker, sink = SlowDetector(), EveryNthTracker(), SlowSink()
    source = _source(seconds=1.0)
    bell = Doorbell.from_config(_config(), source=source, detector=det, tracker=tracker, event_sinks=[sink])
    bell.gate.hold_s = 600.0
    bell.gate.update(np.zeros(bell.ring.shape, np.uint8), 0.0)
    bell.gate.update(np.full(bell.ring.shape, 255, np.uint8), time.monotonic())
    with bell:
        assert source.wait(30)
    assert det.threads == {"doorkeep-detect"} and sink.threads == {"doorkeep-events"}
    assert len(sink.events) == det.calls
    assert bell.stats.snapshot()["latency_ms"]["detect"]["p50"] >= 40


def test_tracker_gets_none_when_gate_is_closed() -> None:
    det, tracker = SlowDetector(), EveryNthTracker()
    still = SyntheticSource(width=320, height=240, fps=30, duration_s=1.0, realtime=False,
                            scene=_still_scene())
    bell = Doorbell.from_config(_config(), source=still, detector=det, tracker=tracker)
    with bell:
        assert still.wait(30)
    assert det.calls == 0 and tracker.none_updates > 0


def _still_scene():  # type: ignore[no-untyped-def]
    from doorkeep.device.sources.synthetic import Scene, default_scene

    return Scene(background=default_scene(320, 240).background)


def test_failing_detector_is_counted_not_fatal() -> None:
    class Broken:
        def detect(self, frame: np.ndarray) -> list[Detection]:
            raise RuntimeError("model exploded")

    source = _source(seconds=0.5, realtime=False)
    bell = Doorbell.from_config(_config(), source=source, detector=Broken())
    bell.gate.hold_s = 600.0
    bell.gate.update(np.zeros(bell.ring.shape, np.uint8), 0.0)
    bell.gate.update(np.full(bell.ring.shape, 255, np.uint8), time.monotonic())
    with bell:
        assert source.wait(30)
        time.sleep(0.2)
    assert bell.stats.snapshot()["counters"]["detect_errors"] > 0


def test_sigterm_sets_the_stop_event_and_handlers_are_restored() -> None:
    old = signal.getsignal(signal.SIGTERM)
    bell = Doorbell.from_config(_config(), source=_source())
    with stop_on_signals() as stop, bell:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        assert stop.wait(10)
    assert signal.getsignal(signal.SIGTERM) is old
    assert _doorkeep_threads() == []


def test_main_filters_from_doorbell_reach_the_source() -> None:
    calls = []
    source = _source(seconds=0.2, realtime=False)
    bell = Doorbell.from_config(_config(), source=source, main_filters=[lambda f: calls.append(f.shape)])
    with bell:
        assert source.wait(30)
    assert calls and calls[0] == (360, 320)


def test_pacer_models_the_camera_buffer_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Late by less than the buffer depth: frames come late but none is lost; later than that: lost, counted."""
    from doorkeep.device.sources import base

    clock = [100.0]
    monkeypatch.setattr(base.time, "monotonic", lambda: clock[0])

    class Stop:
        def wait(self, s: float) -> bool:
            clock[0] += s
            return False

    pacer = base.Pacer(10.0, buffers=3)  # 100 ms period
    stop = Stop()
    times = [pacer.wait(stop) for _ in range(3)]  # type: ignore[arg-type]
    assert times == pytest.approx([100.0, 100.1, 100.2])
    clock[0] += 0.25  # the consumer stalls 2.5 periods: within 3 buffers
    times = [pacer.wait(stop) for _ in range(4)]  # type: ignore[arg-type]
    assert times == pytest.approx([100.3, 100.4, 100.5, 100.6]) and pacer.late == 0
    clock[0] += 0.75  # now 6.5 periods behind the next frame (due at 100.7): the buffers overflow
    t = pacer.wait(stop)  # type: ignore[arg-type]
    assert pacer.late == 6 and t == pytest.approx(101.3)  # 6 lost; delivery resumes at the newest frame
    assert pacer.max_lag == pytest.approx(0.65)


def test_detect_worker_crash_is_restarted_and_stops_the_watchdog_while_down() -> None:
    from worker_faults import check_restarted_after_one_crash, raise_once

    det = SlowDetector()
    bell = Doorbell.from_config(_config(), source=_source(), detector=det, tracker=EveryNthTracker())
    raise_once(bell.ring, "read_latest")  # outside the per-frame guard: the thread itself dies
    with bell:
        w = bell.loop.detect_worker
        check_restarted_after_one_crash(w, others=(bell.loop.events_worker,), progress=lambda: bell.ring.frames,
                                        after_restart=lambda: w.progress > 5)
    assert _doorkeep_threads() == []


def test_events_worker_crash_is_restarted_and_queued_events_still_arrive() -> None:
    from worker_faults import check_restarted_after_one_crash, raise_once

    sink = SlowSink()
    bell = Doorbell.from_config(_config(), source=_source(), event_sinks=[sink])
    raise_once(bell.loop._events, "get")
    with bell:
        check_restarted_after_one_crash(bell.loop.events_worker, others=(bell.loop.detect_worker,),
                                        progress=lambda: bell.ring.frames)
        bell.loop._queue_event(Event(event_id="e1", kind="person", phase="start", t=1.0, t_start=1.0, score=0.9))
    assert [e.event_id for e in sink.events] == ["e1"]
    assert _doorkeep_threads() == []
