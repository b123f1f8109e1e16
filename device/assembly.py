"""The whole device from one :class:`Config`: the pipeline plus every stage after detection.

:class:`~doorkeep.device.app.Doorbell` is the capture pipeline (source → ring → gate → detector → tracker); this
module adds what a shipping doorbell attaches to it, each built by its own area:

- detection: the pinned person detector, wrapped by night mode (``[night]``), privacy masks (``[[masks]]``);
- the vault (``[vault]``): encrypted clips from the pre-roll on person events, the audit log;
- the MQTT publisher (``[mqtt]``): signed events, Home Assistant discovery, the stats heartbeat with the audit head,
  and footage requests relayed to the owner's hub (request_relay.py);
- the doorbell button (``[button]``) and the IR outputs (``[night]``).

Example::

    identity = DeviceIdentity.load_or_create(config.state_dir)
    with assemble(config, identity=identity) as device, stop_on_signals() as stop:
        stop.wait()
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from .app import Doorbell
from .button import GpioButton, SoftwareButton
from .config import Config
from .events import Event, EventSink
from .identity import DeviceIdentity
from .loop import FrameHook
from .night import NightMode
from .night_ir import IrOutputs
from .publish.publisher import MqttPublisher, publisher_from_config
from .request_relay import RequestRelay
from .sources.base import FrameSource
from .vault.vault import Vault, build_vault

log = logging.getLogger(__name__)


class _ClipAwareSinks:
    """One event sink: the vault sees each event first, so the published event says whether a clip exists."""

    def __init__(self, vault: Vault | None, sinks: Sequence[EventSink]) -> None:
        self.vault = vault
        self.sinks = list(sinks)

    def on_event(self, event: Event) -> None:
        if self.vault is not None:
            try:
                self.vault.on_event(event)
            except Exception:  # storage trouble must not silence the event itself
                log.exception("vault failed on %s %s", event.kind, event.phase)
            recorder = self.vault.recorder
            if event.kind == "person" and recorder is not None and recorder.recording is not None:
                event = dataclasses.replace(event, clip=True)
        for sink in self.sinks:
            try:
                sink.on_event(event)
            except Exception:
                log.exception("event sink %s failed on %s %s", type(sink).__name__, event.kind, event.phase)


@dataclass
class Device:
    """A running doorbell: the pipeline and what hangs off it. ``start``/``close`` or use ``with``."""

    config: Config
    identity: DeviceIdentity
    bell: Doorbell
    events: _ClipAwareSinks
    vault: Vault | None = None
    publisher: MqttPublisher | None = None
    night: NightMode | None = None
    button: SoftwareButton | None = None
    ir: IrOutputs | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        """Vault first (recovers torn clips, then records from the pre-roll), MQTT, then capture."""
        if self.vault is not None:
            self.vault.start(self.bell.preroll)
            self._closers.append(self.vault.close)
        if self.publisher is not None:
            self.publisher.start()
            self._closers.append(self.publisher.close)
        self.bell.start()
        self._closers.append(self.bell.close)

    def close(self) -> None:
        """Stop capture first (no new events), then MQTT and the vault (closing any open clip), then pins."""
        while self._closers:
            fn = self._closers.pop()
            try:
                fn()
            except Exception:
                log.exception("shutdown step %s failed", getattr(fn, "__qualname__", fn))
        for part in (self.button, self.ir):
            if part is not None:
                part.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def assemble(config: Config, *, identity: DeviceIdentity, source: FrameSource | None = None,
             extra_sinks: Sequence[EventSink] = (), on_frame: FrameHook | None = None, fetch: bool = True,
             **doorbell_kw: Any) -> Device:
    """Build the whole device from ``config``.

    Args:
        identity: the device identity (signs events, manifests, audit records).
        source: a frame source; default the one ``[capture]`` names.
        extra_sinks: more event sinks (a vendor's own), after the vault and the publisher.
        on_frame: hook on the detect thread (the systemd watchdog ping, overlays).
        fetch: fetch a pinned model that is not cached yet.
        **doorbell_kw: passed on to :meth:`Doorbell.from_config` (``stats``, ``packet_sinks``).

    Raises:
        ConfigError, ModelError, RuntimeMissingError, CaptureError, VaultError: whatever part cannot be built.
    """
    from .detect.night_detector import build_night_detector
    from .detect.pipeline import doorbell_stages

    cap = config.capture
    main_size = source.main_size if source is not None else (cap.main_width, cap.main_height)
    lores_size = source.lores_size if source is not None else (cap.lores_width, cap.lores_height)
    stages = doorbell_stages(config, main_size=main_size, lores_size=lores_size, fetch=fetch)
    night = NightMode(config.night)
    stages["detector"] = build_night_detector(config, day=stages["detector"], mode=night, fetch=fetch, feed_mode=False)
    # Judge day/night on every lores frame (0.006 ms), after the privacy mask, not only on frames the gate passes:
    # in the dark the IR illuminator must come on before there is motion to see.
    lw, lh = lores_size

    def judge_light(frame: Any) -> None:
        night.update(frame, width=lw, height=lh)

    stages["lores_filters"] = [*stages["lores_filters"], judge_light]

    ir: IrOutputs | None = None
    vault: Vault | None = None
    publisher: MqttPublisher | None = None
    bell: Doorbell | None = None
    try:
        if config.night.ir_led_pin >= 0 or config.night.ir_cut_pin >= 0:
            ir = IrOutputs.from_config(config.night)
            night.listeners.append(ir.set_mode)
            ir.set_mode(night.mode)
        vault = build_vault(config, identity) if config.vault.enabled else None
        publisher = publisher_from_config(config, identity,
                                          audit_head=vault.audit_head if vault is not None else None)
        if publisher is not None and vault is not None:
            RequestRelay(publisher.client, publisher.topics, vault).attach()
        sinks = _ClipAwareSinks(vault, [s for s in (publisher, *extra_sinks) if s is not None])
        bell = Doorbell.from_config(config, source=source, on_metadata=night.on_metadata, on_frame=on_frame,
                                    event_sinks=[sinks], **stages, **doorbell_kw)
        if publisher is not None:
            publisher.heartbeat.stats = bell.stats.snapshot
        b = config.button
        button: SoftwareButton = (GpioButton(b.pin, bounce_time=b.bounce_s, holdoff_s=b.holdoff_s, sinks=[sinks])
                                  if b.pin >= 0 else SoftwareButton(holdoff_s=b.holdoff_s, sinks=[sinks]))
    except BaseException:  # a part that failed to build must not leave the audit log, outbox, camera or pins open
        for part in (bell, publisher, vault, ir):
            if part is not None:
                part.close()
        raise
    return Device(config=config, identity=identity, bell=bell, events=sinks, vault=vault, publisher=publisher,
                  night=night, button=button, ir=ir)
