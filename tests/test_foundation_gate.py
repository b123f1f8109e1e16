"""Motion gate on still vs moving scenes (the synthetic scene with sensor noise), lighting changes, hold time."""

from __future__ import annotations

import numpy as np
import pytest
from doorkeep.device.config import MotionSection
from doorkeep.device.gate import MotionGate
from doorkeep.device.rings import FrameRing
from doorkeep.device.sources.synthetic import Scene, SyntheticSource, default_scene

W, H, FPS = 320, 240, 10


def _frames(scene: Scene | None, seconds: float, noise: int = 4) -> list[np.ndarray]:
    """Lores frames of a scene, rendered by the synthetic source (no encoding), with sensor noise."""
    n = round(seconds * FPS)
    ring = FrameRing(width=W, height=H, frames=n)
    src = SyntheticSource(width=W, height=H, lores_width=W, lores_height=H, fps=FPS, scene=scene, duration_s=seconds,
                          realtime=False, noise=noise, encode=False)
    src.attach(ring=ring)
    with src:
        src.start()
        assert src.wait(30)
    return [ring._buf[i].copy() for i in range(n)]


def _run(gate: MotionGate, frames: list[np.ndarray]) -> list[bool]:
    return [gate.update(f, i / FPS) for i, f in enumerate(frames)]


def test_still_noisy_scene_never_opens_the_gate() -> None:
    still = Scene(background=default_scene(W, H).background)  # no sprite
    frames = _frames(still, 10.0, noise=6)
    assert not np.array_equal(frames[0], frames[1])  # the noise is real
    gate = MotionGate.from_config(MotionSection(), width=W, height=H)
    assert not any(_run(gate, frames))
    assert gate.changed <= gate.min_changed


def test_moving_figure_opens_the_gate_and_hold_closes_it_after() -> None:
    frames = _frames(None, 15.0)  # the default path: off frame 2 s, walk in, wait 3 s, walk out, off frame 2 s
    gate = MotionGate.from_config(MotionSection(hold_s=1.0), width=W, height=H)
    open_ = _run(gate, frames)
    assert not any(open_[: 2 * FPS - 2])  # nobody there yet
    walking_in = open_[3 * FPS : 5 * FPS]
    assert all(walking_in)
    walking_out = open_[10 * FPS : 12 * FPS]
    assert all(walking_out)
    assert not any(open_[-5:])  # gone for 2 s, hold 1 s: closed again


def test_global_brightness_change_is_not_motion() -> None:
    still = Scene(background=default_scene(W, H).background)
    frames = _frames(still, 2.0)
    gate = MotionGate(width=W, height=H, hold_s=0.0)
    _run(gate, frames[:10])
    brighter = np.clip(frames[10].astype(np.int16) + 30, 0, 255).astype(np.uint8)  # auto-exposure step
    assert not gate.update(brighter, 1.0)


def test_small_hot_spot_below_changed_fraction_is_ignored_but_an_object_is_not() -> None:
    still = Scene(background=default_scene(W, H).background)
    f = _frames(still, 1.0)
    gate = MotionGate(width=W, height=H, hold_s=0.0, min_changed=0.003, step=2)
    _run(gate, f[:5])
    spot = f[5].copy()
    spot[100:102, 100:102] = 255  # a 2x2 sparkle
    assert not gate.update(spot, 0.5)
    obj = f[6].copy()
    obj[80:140, 100:130] = 255  # something the size of a hand
    assert gate.update(obj, 0.6)


def test_gate_update_allocates_nothing_big() -> None:
    import tracemalloc

    frames = _frames(None, 1.0)
    gate = MotionGate(width=W, height=H)
    _run(gate, frames)
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        _run(gate, frames)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - base < 8192  # the sampled plane alone would be 19 kB


# ------------------------------------------------------------------- the noisy night scene (tools/bench_gate.py)

def test_night_noise_slow_light_and_moving_foliage_keep_the_gate_shut() -> None:
    """Sensor noise at night gain, a drifting exposure with a light pool sweeping across, and a bush swaying in the
    wind over a sixth of the frame: nobody is there, so the gate skips (almost) every frame once it has learned the
    scene (10 s). A gate that only thresholds the difference to its background is open on all of them."""
    from doorkeep.tools.bench_gate import skip_ratio

    assert skip_ratio(seconds=40.0) >= 0.9


def test_a_person_walking_through_the_noisy_night_scene_opens_the_gate() -> None:
    """The same scene with the demo's real person walking in (through the bush), standing and walking off: the gate
    is open on every frame of the walk to the door once the person is in the frame, every time."""
    from doorkeep.tools.bench_gate import FPS, NightScene

    scene = NightScene(person=True)
    assert scene.period is not None
    gate = MotionGate.from_config(MotionSection(), width=W, height=H)
    walking_in: list[bool] = []
    for i in range(round(2 * scene.period * FPS)):
        t = i / FPS
        open_ = gate.update(scene.render(i), t)
        if 3.0 <= t % scene.period <= 4.5:  # in the frame (entering from 1.5 s, through the bush), up to the door
            walking_in.append(open_)
    assert len(walking_in) > 25 and all(walking_in)


def test_a_returning_visitor_does_not_teach_the_gate_to_ignore_the_doorstep() -> None:
    """A visitor appears at the same spot for 1 s every 2.5 s (a courier going to and fro): while the person is
    tracked the gate does not learn their movement as background restlessness, so it opens on every appearance."""
    rng = np.random.default_rng(3)
    still = _frames(Scene(background=default_scene(W, H).background), 1.0, noise=4)
    visitor = rng.integers(0, 256, (120, 50), dtype=np.uint8)
    gate = MotionGate.from_config(MotionSection(), width=W, height=H)
    period, present = 25, 10  # frames at 10 fps
    tracked_until = -1
    opened: list[bool] = []
    for i in range(30 * period):
        frame = still[i % len(still)].copy()
        here = i % period >= period - present
        if here:
            frame[70:190, 130:180] = visitor
        open_ = gate.update(frame, i / FPS, learn=i > tracked_until)
        if here and i % period == period - present:
            opened.append(open_)
        if here and open_:
            tracked_until = i + 10  # the tracker ends the event 1 s after the person left
    assert all(opened), f"missed appearances: {[k for k, o in enumerate(opened) if not o]}"


def test_a_visitor_who_stood_at_the_door_leaves_no_ghost() -> None:
    """A visitor stands still for 30 s while tracked (the gate learns nothing), then leaves: the background is still
    the empty doorstep, so the gate closes once its hold time is over, instead of staying open on the ghost of a
    visitor it had half learned."""
    rng = np.random.default_rng(4)
    still = _frames(Scene(background=default_scene(W, H).background), 1.0, noise=4)
    visitor = rng.integers(0, 256, (120, 50), dtype=np.uint8)
    gate = MotionGate.from_config(MotionSection(), width=W, height=H)
    arrive, leave, end = 5 * FPS, 35 * FPS, 45 * FPS
    open_after: list[bool] = []
    for i in range(end):
        frame = still[i % len(still)].copy()
        if arrive <= i < leave:
            frame[70:190, 130:180] = visitor
        tracked = arrive + 2 <= i < leave + FPS  # the tracker takes 2 frames to start, ends 1 s after
        open_ = gate.update(frame, i / FPS, learn=not tracked)
        if i >= leave + (gate.hold_s + 1.0) * FPS:
            open_after.append(open_)
    assert open_after and not any(open_after), "the gate stayed open on the empty doorstep after the visitor left"


@pytest.mark.detection
@pytest.mark.slow
def test_the_pipeline_keeps_the_gate_from_learning_a_returning_visitor(person_detector) -> None:
    """Through DetectionPipeline with the real model: the demo's person appears at the door for 1 s every 2.5 s
    (events end 1 s after them). Every appearance gives an event with the gate on: the pipeline tells the gate a
    person is tracked, so their comings and goings are neither a ghost in its background nor learned restlessness."""
    import dataclasses

    from doorkeep.device.config import Config
    from doorkeep.device.detect.pipeline import DetectionPipeline
    from doorkeep.device.frames import i420_shape
    from doorkeep.device.sources.photo_scene import photo_scene
    from doorkeep.device.sources.synthetic import _Layer

    config = Config.from_dict({"events": {"end_after_s": 1.0}})
    period, here, gone = 2.5, 1.0, 2.0
    eps = 1e-6
    path = ((0.0, -1.0, 0.55), (here, -1.0, 0.55), (here + eps, 0.5, 0.55), (gone, 0.5, 0.55), (gone + eps, -1.0, 0.55),
            (period, -1.0, 0.55))
    layer = _Layer(dataclasses.replace(photo_scene(W, H), path=path), W, H, fps=FPS, noise=3, seed=5)
    frame = np.empty(i420_shape(W, H), np.uint8)
    pipe = DetectionPipeline.from_config(config, detector=person_detector)
    appearances = 16
    starts: set[int] = set()
    for i in range(round(appearances * period * FPS)):
        layer.draw(frame, i)
        t = i / FPS
        starts |= {int(t // period) for ev in pipe.step(frame, t) if ev.phase == "start"}
    assert starts == set(range(appearances)), f"appearances without an event: {set(range(appearances)) - starts}"
