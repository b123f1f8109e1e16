"""The doorbell button: software presses and a gpiozero button on a mock pin become doorbell press events."""

from __future__ import annotations

import pytest
from doorkeep.device.button import GpioButton, SoftwareButton
from doorkeep.device.events import Event


class Collect:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)


def test_software_button_press_and_holdoff() -> None:
    now = [100.0]
    sink = Collect()
    b = SoftwareButton(sinks=[sink], holdoff_s=1.0, clock=lambda: now[0])
    assert b.press() is not None
    now[0] += 0.3
    assert b.press() is None  # same press, still within the hold-off
    now[0] += 1.0
    b.press()
    assert [(e.kind, e.phase, e.t) for e in sink.events] == [("doorbell", "press", 100.0), ("doorbell", "press", 101.3)]
    assert len({e.event_id for e in sink.events}) == 2


def test_gpio_button_on_mock_pin() -> None:
    pytest.importorskip("gpiozero", reason="gpiozero (extra 'pi', also in 'dev') not installed")
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    sink = Collect()
    with GpioButton(17, sinks=[sink], pin_factory=factory, bounce_time=None, holdoff_s=0.0) as button:
        pin = factory.pin(17)
        pin.drive_low()   # pressed: button to ground, pull-up
        pin.drive_high()
        assert button.presses == 1
    assert [e.phase for e in sink.events] == ["press"]
    button.close()  # idempotent
    GpioButton(17, pin_factory=factory).close()  # the pin was released: it can be opened again


def test_gpio_pin_in_use_is_a_capture_error() -> None:
    pytest.importorskip("gpiozero", reason="gpiozero (extra 'pi', also in 'dev') not installed")
    from doorkeep.device.errors import CaptureError
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    with GpioButton(5, pin_factory=factory), pytest.raises(CaptureError, match="pin 5"):
        GpioButton(5, pin_factory=factory)
