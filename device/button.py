"""The doorbell button: a press becomes ``Event(kind="doorbell", phase="press")`` sent to the event sinks.

- :class:`GpioButton` — a real push button on a Raspberry Pi GPIO pin through gpiozero (extra ``pi``; imported
  lazily), debounced by gpiozero's ``bounce_time``. Tests pass gpiozero's ``MockFactory`` as ``pin_factory``.
- :class:`SoftwareButton` — ``press()`` from code: tests, the demo, a vendor's own input.

Example::

    with GpioButton(17, sinks=[publisher, vault]) as button:   # BCM pin 17 to ground
        stop.wait()
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Self

from .errors import CaptureError
from .events import Event, EventSink

log = logging.getLogger(__name__)

#: Presses closer together than this are one press (on top of the contact debounce).
DEFAULT_HOLDOFF_S = 1.0


class SoftwareButton:
    """Turns presses into doorbell events for ``sinks``.

    Args:
        sinks: event sinks (the MQTT publisher, the vault, …); each gets every press.
        holdoff_s: presses within this many seconds of the last accepted one are ignored (a visitor pressing
            repeatedly rings once per second at most).
        clock: wall clock (``time.time``).
        new_id: event id factory (16 hex chars by default).
    """

    def __init__(self, *, sinks: Sequence[EventSink] = (), holdoff_s: float = DEFAULT_HOLDOFF_S,
                 clock: Callable[[], float] = time.time, new_id: Callable[[], str] = lambda: secrets.token_hex(8)
                 ) -> None:
        self.sinks = list(sinks)
        self.holdoff_s = holdoff_s
        self._clock = clock
        self._new_id = new_id
        self._last: float | None = None
        self._lock = threading.Lock()
        self.presses = 0

    def press(self) -> Event | None:
        """Register one press; returns the event sent, or ``None`` when within the hold-off."""
        t, mono = self._clock(), time.monotonic()  # the vault's post-roll runs from the press, not from delivery
        with self._lock:
            if self._last is not None and 0 <= t - self._last < self.holdoff_s:
                return None
            self._last = t
            self.presses += 1
        ev = Event(event_id=self._new_id(), kind="doorbell", phase="press", t=t, t_start=t, mono_end=mono)
        for sink in self.sinks:
            try:
                sink.on_event(ev)
            except Exception:
                log.exception("event sink %r failed on a doorbell press", sink)
        return ev

    def close(self) -> None:
        """Nothing to release (idempotent)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GpioButton(SoftwareButton):
    """A push button between a GPIO pin and ground (internal pull-up), debounced.

    Args:
        pin: BCM pin number (or any gpiozero pin spec).
        bounce_time: contact debounce in seconds (gpiozero ``bounce_time``).
        pull_up: True for a button to ground (default), False for a button to 3V3.
        pin_factory: a gpiozero pin factory (``MockFactory()`` in tests); default: gpiozero's.
        **kw: see :class:`SoftwareButton`.

    Raises:
        CaptureError: gpiozero is not installed (install the ``pi`` extra) or the pin cannot be opened.
    """

    def __init__(self, pin: int | str, *, bounce_time: float = 0.05, pull_up: bool = True,
                 pin_factory: Any = None, **kw: Any) -> None:
        super().__init__(**kw)
        try:
            from gpiozero import Button
        except ImportError:
            raise CaptureError("the GPIO doorbell button needs gpiozero: pip install 'doorkeep[pi]'") from None
        try:
            self._button: Any = Button(pin, pull_up=pull_up, bounce_time=bounce_time, pin_factory=pin_factory)
        except Exception as exc:  # gpiozero raises its own tree (BadPinFactory, PinInvalidPin, GPIOPinInUse, …)
            raise CaptureError(f"doorbell button on pin {pin!r}: {exc}") from exc
        self._button.when_pressed = lambda *_: self.press()

    def close(self) -> None:
        """Release the pin (idempotent)."""
        button, self._button = getattr(self, "_button", None), None
        if button is not None:
            button.close()
