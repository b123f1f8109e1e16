"""#14.4 — time: events, post-roll and clip deadlines run on the monotonic clock (the wall clock only labels), and
retention by age never shreds because the wall clock jumped forward (a Pi without RTC booting into a spoofed time).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from doorkeep.device.app import Doorbell
from doorkeep.device.config import CaptureSection, Config
from doorkeep.device.detections import Detection
from doorkeep.device.events import Event
from doorkeep.device.person_events import PersonTracker
from doorkeep.device.preroll import PacketRing
from doorkeep.device.sources.synthetic import SyntheticSource
from doorkeep.device.vault.audit import verify
from doorkeep.device.vault.clockwatch import ClockWatch
from vault_support import Device, make_device, make_packets, records, wait_until, write_clip

DAY = 86400.0
REAL_TIME = time.time


def kinds(dev: Device, kind: str) -> list[dict]:
    return [r for r in records(dev) if r["kind"] == kind]



class Clocks:
    """An injected wall clock and monotonic clock, stepped by the test."""

    def __init__(self, wall: float) -> None:
        self.w, self.m = wall, 1000.0

    def wall(self) -> float:
        return self.w

    def mono(self) -> float:
        return self.m

    def run(self, s: float) -> None:  # time passes: both move
        self.w += s
        self.m += s


P = [Detection(0.9, 0.4, 0.3, 0.6, 0.9)]


def test_tracker_rules_run_on_monotonic_time_and_wall_time_only_labels() -> None:
    tr = PersonTracker(k=1, n=1, end_after_s=2.0)
    (start,) = tr.update(10.0, P, wall=5000.0)
    assert start.t_start == 5000.0
    assert tr.update(11.0, P, wall=4401.0) == []  # the wall clock stepped back 600 s: nothing changes
    (end,) = tr.update(13.0, [], wall=4403.0)  # 2 s of monotonic time without a person: ended
    assert end.phase == "end" and end.mono_end == 11.0
    assert end.t_end - end.t_start == 1.0  # the labels keep the true duration across the step
    (start2,) = tr.update(20.0, P, wall=8000.0)
    assert tr.update(21.0, P, wall=8000.0 + 3600) == []  # a step forward does not end a present person's event
    assert tr.active is not None and tr.active.event_id == start2.event_id


class Person:
    """A detector that sees a person while ``present`` is set."""

    def __init__(self) -> None:
        self.present = threading.Event()

    def detect(self, frame: np.ndarray) -> list[Detection]:
        return list(P) if self.present.is_set() else []


@pytest.mark.parametrize("step_s", [-600.0, 3600.0])
def test_a_wall_clock_step_neither_holds_an_event_open_nor_ends_it(monkeypatch: pytest.MonkeyPatch,
                                                                   step_s: float) -> None:
    """The running loop, with the process's wall clock really stepped mid-event. Today's main judged events on the
    frames' wall time: stepped back 600 s, the event stayed open for 600 s; stepped forward an hour, a visit of a few
    seconds was labelled an hour long."""
    det, events = Person(), []

    class Sink:
        def on_event(self, ev: Event) -> None:
            events.append(ev)

    cfg = Config().replace(capture=CaptureSection(main_width=320, main_height=240))
    bell = Doorbell.from_config(cfg, source=SyntheticSource(width=320, height=240, fps=20), detector=det,
                                tracker=PersonTracker(k=1, n=1, end_after_s=0.5), event_sinks=[Sink()])
    assert bell.gate is not None
    bell.gate.hold_s = 600.0  # keep inference running once the gate opened
    bell.gate.update(np.zeros(bell.ring.shape, np.uint8), 0.0)
    bell.gate.update(np.full(bell.ring.shape, 255, np.uint8), time.monotonic())
    with bell:
        det.present.set()
        wait_until(lambda: any(e.phase == "start" for e in events), timeout=10, what="the start")
        monkeypatch.setattr(time, "time", lambda: REAL_TIME() + step_s)  # NTP steps the clock
        time.sleep(1.0)
        assert [e.phase for e in events] == ["start"], "the clock step ended the event of a person still there"
        det.present.clear()
        wait_until(lambda: len(events) == 2, timeout=5, what="the end, 0.5 s after the person left")
    start, end = events
    assert end.phase == "end" and end.event_id == start.event_id
    assert 1.0 <= end.t_end - start.t_start < 5.0  # labels: the true duration, not the step


@pytest.mark.parametrize("kind", ["person", "doorbell"])
def test_the_post_roll_ends_on_monotonic_time_when_the_clock_steps_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                        kind: str) -> None:
    """The clip of an ended person event (or of a doorbell press) closes after its post-roll although the wall clock
    (and with it the packets' wall times) stepped back 600 s. Today's main compared wall times: the clip stayed open
    for the whole step."""
    dev = make_device(tmp_path, postroll_s=0.3)
    ring = PacketRing(seconds=0.5)
    dev.vault.start(ring)
    t = time.time()
    if kind == "person":
        dev.vault.on_event(Event("e", "person", "start", t, t))
    for p in make_packets(10):
        ring.on_packet(p)
    if kind == "person":
        dev.vault.on_event(Event("e", "person", "end", t, t, t))
    else:
        dev.vault.on_event(Event("b", "doorbell", "press", t, t))
        wait_until(lambda: dev.vault.recorder.recording is not None, what="the press's clip")  # type: ignore[union-attr]
    monkeypatch.setattr(time, "time", lambda: REAL_TIME() - 600)
    stepped = make_packets(40)  # wall times 600 s back, capture times (monotonic) still moving on
    for p in stepped:
        ring.on_packet(p)
        time.sleep(0.01)
    wait_until(lambda: kinds(dev, "clip_written"), timeout=5, what="the clip to close after its post-roll")
    dev.vault.stop()


def test_retention_does_not_age_clips_by_a_forward_jump_while_running(tmp_path: Path) -> None:
    """The clock jumps a year forward while the device runs: nothing is shredded, the jump is audited once, and
    the clips still age by the time that really passes."""
    now = REAL_TIME()
    dev = make_device(tmp_path, max_age_days=30)
    for i in range(5):
        write_clip(dev, f"c{i}", make_packets(6, t0=now - 3600 + i, seed=i))
    clocks = Clocks(now)
    dev.vault.clock.wall, dev.vault.clock.mono = clocks.wall, clocks.mono
    assert dev.vault.enforce_retention() == []
    clocks.run(60)
    clocks.w += 365 * DAY  # a spoofed time server
    assert dev.vault.enforce_retention() == []
    assert dev.vault.enforce_retention() == []
    (jump,) = kinds(dev, "clock_jump")
    assert jump["f"]["at"] == "running" and jump["f"]["jump_s"] == pytest.approx(365 * DAY)
    assert jump["f"]["age_counted"] is False
    clocks.run(29 * DAY)
    assert dev.vault.enforce_retention() == []  # 29 days and an hour old in trusted time
    clocks.run(1 * DAY)
    assert sorted(dev.vault.enforce_retention()) == [f"c{i}" for i in range(5)]
    assert dev.vault.clock.jumps == [] or dev.vault.enforce_retention() == []
    assert dev.vault.clock.jumps == []  # no clip predates the jump any more: forgotten
    assert verify(dev.state / "audit.log", dev.identity.verify_key).ok


def test_small_steps_count_as_time_and_a_backward_step_only_keeps_clips_longer(tmp_path: Path) -> None:
    now = REAL_TIME()
    dev = make_device(tmp_path, max_age_days=1, max_clock_jump_s=3600)
    write_clip(dev, "old", make_packets(6, t0=now - DAY + 600))
    clocks = Clocks(now)
    dev.vault.clock.wall, dev.vault.clock.mono = clocks.wall, clocks.mono
    assert dev.vault.enforce_retention() == []
    clocks.w -= 2 * 3600  # stepped back two hours: audited, the clip looks younger
    assert dev.vault.enforce_retention() == []
    assert [r["f"]["age_counted"] for r in kinds(dev, "clock_jump")] == [True]
    clocks.w += 2 * 3600 + 1200  # and forward again, 20 minutes past: within the bound, counted as time
    assert dev.vault.enforce_retention() == ["old"]
    assert len(kinds(dev, "clock_jump")) == 1


def test_a_restart_into_a_spoofed_time_shreds_nothing(tmp_path: Path) -> None:
    """The device stops (saving the last wall time it trusted) and boots a year later by the clock: the start-up
    retention pass shreds nothing and audits the jump; a restart at a plausible time ages normally."""
    now = REAL_TIME()
    dev = make_device(tmp_path, max_age_days=30)
    write_clip(dev, "a", make_packets(6, t0=now - 10 * DAY))
    dev.vault.start(PacketRing(seconds=0.5))
    dev.vault.stop()
    saved = json.loads((dev.state / "clock.json").read_text())
    assert saved["wall"] == pytest.approx(now, abs=60)

    dev2 = make_device(tmp_path, owner=dev.owner, max_age_days=30)
    clocks = Clocks(now + 365 * DAY)
    dev2.vault.clock.wall, dev2.vault.clock.mono = clocks.wall, clocks.mono
    dev2.vault.start(PacketRing(seconds=0.5))
    assert dev2.vault.store.clip_ids() == ["a"]
    (jump,) = kinds(dev2, "clock_jump")
    assert jump["f"]["at"] == "start" and jump["f"]["jump_s"] == pytest.approx(365 * DAY, abs=60)
    dev2.vault.stop()  # the jump is remembered across the next restart too
    dev3 = make_device(tmp_path, owner=dev.owner, max_age_days=30)
    clocks3 = Clocks(now + 365 * DAY + DAY / 2)  # half a day off: a plausible restart
    dev3.vault.clock.wall, dev3.vault.clock.mono = clocks3.wall, clocks3.mono
    assert dev3.vault.enforce_retention() == []  # 10.5 days old in trusted time
    clocks3.run(20 * DAY)
    assert dev3.vault.enforce_retention() == ["a"]
    assert len(kinds(dev3, "clock_jump")) == 1


def test_clock_file_damage_is_survived(tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    path.write_text("{not json")
    audits: list[tuple] = []
    w = ClockWatch(path, max_jump_s=60, audit=lambda kind, **f: audits.append((kind, f)))
    assert w.check() > 0 and audits == [] and w.jumps == []


def test_a_boot_at_1970_then_a_spoofed_jump_still_counts_from_the_saved_time(tmp_path: Path) -> None:
    """No fake-hwclock: the clock starts at 1970, behind the saved time (audited); NTP then says next year. The
    jump is measured from the saved time, so clips recorded before it are not aged by it."""
    now = REAL_TIME()
    path = tmp_path / "clock.json"
    path.write_text(json.dumps({"v": 1, "wall": now, "jumps": []}))
    audits: list[tuple[str, dict]] = []
    clocks = Clocks(0.0 + 30)
    w = ClockWatch(path, max_jump_s=DAY, audit=lambda kind, **f: audits.append((kind, f)), wall=clocks.wall,
                   mono=clocks.mono)
    w.check()
    assert [(k, f["at"], f["age_counted"]) for k, f in audits] == [("clock_jump", "start", True)]
    clocks.run(600)
    clocks.w = now + 365 * DAY
    w.check()
    (_, jump) = audits[-1]
    assert jump["trusted"] == pytest.approx(now + 600) and jump["jump_s"] == pytest.approx(365 * DAY - 600)
    assert w.age(now - 10 * DAY, clocks.w) == pytest.approx(10 * DAY + 600)


def test_a_press_carries_its_own_monotonic_time_for_the_post_roll() -> None:
    """A slow sink ahead of the vault (signing, an outbox fsync on a busy card) must not move the press's
    post-roll: the event carries the moment of the press."""
    from doorkeep.device.button import SoftwareButton

    seen: list[tuple[Event, float]] = []

    class Slow:
        def on_event(self, ev: Event) -> None:
            time.sleep(0.3)

    class Keep:
        def on_event(self, ev: Event) -> None:
            seen.append((ev, time.monotonic()))

    before = time.monotonic()
    SoftwareButton(sinks=[Slow(), Keep()]).press()
    ((ev, delivered),) = seen
    assert ev.mono_end is not None and before <= ev.mono_end <= delivered - 0.25
