"""Night mode: chroma and luma meter, hysteresis and dwell on a noisy dusk, lux and exposure from camera metadata,
one log line per switch, IR outputs."""

from __future__ import annotations

import numpy as np
import pytest
from doorkeep.device.config import Config, NightSection
from doorkeep.device.errors import ConfigError
from doorkeep.device.frames import i420_shape
from doorkeep.device.night import DAY, NIGHT, ChromaMeter, NightMode
from doorkeep.device.night_ir import IrOutputs

W, H = 320, 240


def frame_with_chroma(deviation: float, rng: np.random.Generator, *, noise: float = 0.0,
                      luma: float = 40.0) -> np.ndarray:
    """A textured I420 frame whose chroma deviates from 128 by about ``deviation`` (plus sensor noise), its luma
    spread around ``luma`` (16 = black; 40: a dim scene)."""
    f = np.empty(i420_shape(W, H), np.uint8)
    f[:H] = np.clip(luma + rng.integers(-20, 21, (H, W)), 0, 255)
    signs = rng.choice([-1.0, 1.0], size=(H // 2, W))
    c = 128.0 + deviation * signs + rng.normal(0.0, noise, size=(H // 2, W))
    f[H:] = np.clip(np.rint(c), 0, 255)
    return f


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_chroma_meter_gray_is_zero_and_colour_is_not() -> None:
    rng = np.random.default_rng(1)
    meter = ChromaMeter(width=W, height=H, step=8)
    assert meter(frame_with_chroma(0, rng)) == 0.0
    assert meter(frame_with_chroma(20, rng)) == pytest.approx(20.0)
    # Full-resolution measurement agrees with the subsampled one on a uniform tint.
    assert ChromaMeter(width=W, height=H, step=1)(frame_with_chroma(7, rng)) == pytest.approx(7.0)


def test_chroma_meter_refuses_a_frame_of_another_size() -> None:
    meter = ChromaMeter(width=W, height=H)
    with pytest.raises(ValueError, match="320x240"):
        meter(np.zeros(i420_shape(640, 480), np.uint8))


def test_first_frame_decides_directly() -> None:
    rng = np.random.default_rng(2)
    mode = NightMode(NightSection(), clock=FakeClock())
    assert mode.update(frame_with_chroma(0, rng)) is True
    mode.reset()
    assert mode.update(frame_with_chroma(15, rng)) is False
    assert mode.mode == DAY


def test_a_bright_grey_daylit_scene_is_day_and_a_dark_grey_one_night() -> None:
    """Chroma alone called a daylit grey wall night (the demo scene, within 1 s); luma keeps it day."""
    rng = np.random.default_rng(5)
    clock = FakeClock()
    mode = NightMode(NightSection(), clock=clock)
    for i in range(600):  # 60 s of a flat-chroma but bright scene
        clock.t = i / 10
        mode.update(frame_with_chroma(0, rng, luma=130))
    assert mode.mode == DAY and mode.switches == 0
    mode.reset()
    assert mode.update(frame_with_chroma(0, rng, luma=35)) is True


def test_each_switch_is_logged_once_with_its_evidence(caplog) -> None:
    import logging

    rng = np.random.default_rng(6)
    clock = FakeClock()
    mode = NightMode(NightSection(smooth_s=0, dwell_s=5), clock=clock)
    with caplog.at_level(logging.INFO, logger="doorkeep.device.activity"):  # the operator's stream
        for i in range(300):
            clock.t = i / 10
            mode.update(frame_with_chroma(0 if 10 <= clock.t < 20 else 12, rng, luma=35 if 10 <= clock.t < 20 else 120))
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert lines == [lines[0], lines[1]] and mode.switches == 2, lines
    assert lines[0].startswith("night mode: day -> night (chroma ") and "luma" in lines[0]
    assert lines[1].startswith("night mode: night -> day")


def test_noisy_dusk_and_dawn_switch_exactly_once_each_way_on_chroma() -> None:
    """Chroma fades from 12 to 0 over 20 minutes (a camera's saturation falling at dusk) with heavy noise."""
    rng = np.random.default_rng(3)
    clock = FakeClock()
    cfg = NightSection(source="chroma")
    mode = NightMode(cfg, clock=clock)
    seen: list[str] = []
    mode.listeners.append(seen.append)
    ramp = np.concatenate([np.linspace(12, 0, 1200), np.linspace(0, 12, 1200)])
    for i, dev in enumerate(ramp):
        clock.t = float(i)
        jitter = max(0.0, dev + rng.normal(0, 1.5))  # the measured tint itself wobbles around the ramp
        mode.update(frame_with_chroma(jitter, rng, noise=1.0))
    assert seen[0] == DAY  # the first frame decided day
    assert mode.switches == 2  # into night at dusk and back at dawn, no flapping between
    assert seen[1:] == [NIGHT, DAY]


def test_noisy_lux_ramp_switches_once_and_lux_wins_over_chroma() -> None:
    rng = np.random.default_rng(4)
    clock = FakeClock()
    mode = NightMode(NightSection(), clock=clock)
    gray = frame_with_chroma(0, rng)
    for i, lux in enumerate(np.linspace(40, 0, 1800)):
        clock.t = float(i)
        mode.on_metadata({"Lux": float(max(0.0, lux + rng.normal(0, 4))), "ExposureTime": 10000})
        # An IR-cut filter left out makes even daylit frames gray: with lux known, chroma no longer decides.
        mode.update(gray)
        if i == 100:
            assert mode.mode == DAY
    assert mode.mode == NIGHT
    assert mode.switches == 1


def test_dwell_holds_the_mode_even_past_the_threshold() -> None:
    clock = FakeClock()
    mode = NightMode(NightSection(smooth_s=0, dwell_s=60), clock=clock)
    mode.update_lux(100.0)
    clock.t = 1.0
    mode.update_lux(0.0)
    assert mode.mode == DAY  # the first reading decided day at t=0: it must hold for 60 s
    clock.t = 61.0
    mode.update_lux(0.0)
    assert mode.mode == NIGHT


def test_pinned_mode_ignores_evidence() -> None:
    mode = NightMode(NightSection(mode="night"), clock=FakeClock())
    mode.update_lux(10000.0)
    assert mode.mode == NIGHT


def test_metadata_without_lux_or_exposure_is_ignored() -> None:
    mode = NightMode(NightSection(), clock=FakeClock())
    mode.on_metadata({"ExposureTime": 100, "Lux": None})  # no gain: no exposure figure either
    assert mode.lux is None and mode.exposure is None


def test_camera_at_its_exposure_limit_is_night_even_without_lux() -> None:
    """Long exposure x high analogue gain (libcamera metadata) means night; a short one day (with hysteresis)."""
    clock = FakeClock()
    mode = NightMode(NightSection(smooth_s=0, dwell_s=10), clock=clock)
    rng = np.random.default_rng(8)
    mode.on_metadata({"ExposureTime": 4000, "AnalogueGain": 1.0})  # 4 ms x 1: bright day
    assert mode.mode == DAY and mode.exposure == pytest.approx(4.0)
    for i in range(1, 40):
        clock.t = float(i)
        mode.on_metadata({"ExposureTime": 33000, "AnalogueGain": 8.0})  # 264 ms x gain: the camera at its limit
        mode.update(frame_with_chroma(15, rng, luma=120))  # the frames no longer decide once the camera reports
    assert mode.mode == NIGHT and mode.switches == 1
    clock.t = 60.0
    mode.on_metadata({"ExposureTime": 15000, "AnalogueGain": 8.0})  # 120: inside the band, holds night
    assert mode.mode == NIGHT
    mode.on_metadata({"ExposureTime": 10000, "AnalogueGain": 2.0})
    assert mode.mode == DAY


def test_config_refuses_an_inverted_band() -> None:
    with pytest.raises(ConfigError, match=r"night\.lux_leave"):
        Config.from_dict({"night": {"lux_enter": 20, "lux_leave": 10}})
    with pytest.raises(ConfigError, match=r"night\.mode"):
        Config.from_dict({"night": {"mode": "dusk"}})
    with pytest.raises(ConfigError, match=r"night\.luma_leave"):
        Config.from_dict({"night": {"luma_enter": 90, "luma_leave": 80}})
    with pytest.raises(ConfigError, match=r"night\.exposure_leave"):
        Config.from_dict({"night": {"exposure_enter": 50, "exposure_leave": 80}})


class FakePin:
    def __init__(self, pin: int, active_high: bool) -> None:
        self.pin, self.active_high, self.value, self.closed = pin, active_high, False, False

    def on(self) -> None:
        self.value = True

    def off(self) -> None:
        self.value = False

    def close(self) -> None:
        self.closed = True


def test_ir_outputs_follow_the_mode() -> None:
    pins: dict[int, FakePin] = {}

    def factory(pin: int, active_high: bool) -> FakePin:
        pins[pin] = FakePin(pin, active_high)
        return pins[pin]

    cfg = NightSection(ir_led_pin=17, ir_cut_pin=27, ir_cut_active_high=False, dwell_s=0, smooth_s=0)
    clock = FakeClock()
    mode = NightMode(cfg, clock=clock)
    with IrOutputs.from_config(cfg, output_factory=factory) as ir:
        mode.listeners.append(ir.set_mode)
        mode.update_lux(100.0)
        assert (pins[17].value, pins[27].value) == (False, True)  # day: lamp off, filter in
        assert pins[27].active_high is False
        clock.t = 1.0
        mode.update_lux(1.0)
        assert (pins[17].value, pins[27].value) == (True, False)  # night: lamp on, filter out
    assert pins[17].closed and pins[27].closed


def test_ir_outputs_without_pins_do_nothing_and_need_no_gpiozero() -> None:
    ir = IrOutputs.from_config(NightSection())
    assert not ir.active
    ir.set_mode(NIGHT)
    ir.close()
    ir.close()
    with pytest.raises(ValueError):
        ir.set_mode("dusk")


def test_ir_outputs_release_the_first_pin_when_the_second_fails() -> None:
    opened: list[FakePin] = []

    def factory(pin: int, active_high: bool) -> FakePin:
        if pin == 27:
            raise OSError("pin 27 busy")
        opened.append(FakePin(pin, active_high))
        return opened[-1]

    with pytest.raises(OSError):
        IrOutputs(led_pin=17, cut_pin=27, output_factory=factory)
    assert opened[0].closed
