"""GPIO outputs that follow the night mode: an IR illuminator (on at night) and an IR-cut filter (in by day).

gpiozero is imported lazily and only when a pin is configured (extra ``pi``). Tests and vendors inject an
``output_factory`` (pin number, active_high -> object with ``on()``, ``off()``, ``close()``) — e.g. gpiozero's own
``DigitalOutputDevice`` on a ``MockFactory`` pin factory, or any fake.

Example::

    ir = IrOutputs.from_config(config.night)        # no pins configured -> does nothing
    night_mode.listeners.append(ir.set_mode)
    ...
    ir.close()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, Self

from .config import NightSection
from .errors import CaptureError, InvalidArgument


class Output(Protocol):
    def on(self) -> None: ...
    def off(self) -> None: ...
    def close(self) -> None: ...


OutputFactory = Callable[[int, bool], Output]


def gpiozero_output(pin: int, active_high: bool) -> Output:
    """A gpiozero ``DigitalOutputDevice`` on BCM ``pin`` (imported here, not at doorkeep import time)."""
    try:
        from gpiozero import DigitalOutputDevice
    except ImportError as exc:
        raise CaptureError(f"night: an IR GPIO pin ({pin}) is configured but gpiozero is not installed "
                           "(pip install 'doorkeep[pi]')") from exc
    dev: Any = DigitalOutputDevice(pin, active_high=active_high, initial_value=False)
    return dev  # type: ignore[no-any-return]


class IrOutputs:
    """Drives the optional IR illuminator and IR-cut filter pins from the day/night mode.

    ``set_mode("night")`` switches the illuminator on and pulls the IR-cut filter out; ``set_mode("day")`` the
    reverse. Idempotent ``close()``; usable as a context manager. A failed ``__init__`` releases what it opened.
    """

    def __init__(self, *, led_pin: int | None = None, cut_pin: int | None = None, cut_active_high: bool = True,
                 output_factory: OutputFactory = gpiozero_output) -> None:
        self.mode: str | None = None
        self._led: Output | None = None
        self._cut: Output | None = None
        try:
            if led_pin is not None and led_pin >= 0:
                self._led = output_factory(led_pin, True)
            if cut_pin is not None and cut_pin >= 0:
                self._cut = output_factory(cut_pin, cut_active_high)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_config(cls, night: NightSection, *, output_factory: OutputFactory = gpiozero_output) -> IrOutputs:
        return cls(led_pin=night.ir_led_pin, cut_pin=night.ir_cut_pin, cut_active_high=night.ir_cut_active_high,
                   output_factory=output_factory)

    @property
    def active(self) -> bool:
        """True when at least one pin is configured."""
        return self._led is not None or self._cut is not None

    def set_mode(self, mode: str) -> None:
        """Follow ``mode`` (``"day"`` or ``"night"``); a NightMode listener."""
        if mode not in ("day", "night"):
            raise InvalidArgument(f"mode must be 'day' or 'night', got {mode!r}")
        night = mode == "night"
        if self._led is not None:
            self._led.on() if night else self._led.off()
        if self._cut is not None:
            self._cut.off() if night else self._cut.on()
        self.mode = mode

    def close(self) -> None:
        for out in (self._led, self._cut):
            if out is not None:
                out.close()
        self._led = self._cut = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
