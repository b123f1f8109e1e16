"""Night mode: chroma meter, hysteresis and dwell on a noisy dusk, lux from camera metadata, IR outputs."""

from __future__ import annotations

import numpy as np
import pytest
from doorkeep.device.config import Config, NightSection
from doorkeep.device.errors import ConfigError
from doorkeep.device.frames import i420_shape
from doorkeep.device.night import DAY, NIGHT, ChromaMeter, NightMode
from doorkeep.device.night_ir import IrOutputs

W, H = 320, 240


def frame_with_chroma(deviation: float, rng: np.random.Generator, *, noise: float = 0.0) -> np.ndarray:
    """A textured I420 frame whose chroma deviates from 128 by about ``deviation`` (plus sensor noise)."""
    f = np.empty(i420_shape(W, H), np.uint8)
    f[:H] = rng.integers(0, 256, (H, W), dtype=np.uint8)
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
    assert mode.update(frame_with_chroma(0, rng), width=W, height=H) is True
    mode.reset()
    assert mode.update(frame_with_chroma(15, rng), width=W, height=H) is False
    assert mode.mode == DAY


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
        mode.update(frame_with_chroma(jitter, rng, noise=1.0), width=W, height=H)
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
        mode.update(gray, width=W, height=H)
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


def test_metadata_without_lux_is_ignored() -> None:
    mode = NightMode(NightSection(), clock=FakeClock())
    mode.on_metadata({"ExposureTime": 100, "Lux": None})
    assert mode.lux is None


def test_config_refuses_an_inverted_band() -> None:
    with pytest.raises(ConfigError, match=r"night\.lux_leave"):
        Config.from_dict({"night": {"lux_enter": 20, "lux_leave": 10}})
    with pytest.raises(ConfigError, match=r"night\.mode"):
        Config.from_dict({"night": {"mode": "dusk"}})


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
