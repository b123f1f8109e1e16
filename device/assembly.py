"""The whole device from one :class:`Config`: the pipeline plus every stage after detection.

:class:`~doorkeep.device.app.Doorbell` is the capture pipeline (source → ring → gate → detector → tracker); this
module adds what a shipping doorbell attaches to it, each built by its own area:

- detection: the pinned person detector, wrapped by night mode (``[night]``), privacy masks (``[[masks]]``);
- the vault (``[vault]``): encrypted clips from the pre-roll on person events, the audit log;
- the MQTT publisher (``[mqtt]``): signed events, Home Assistant discovery, the signed stats heartbeat with the
  audit head;
- the inbound channel (``[channel]``, device/channel/): footage requests relayed to the owner's hub, and the owner
  channel (owner-signed commands: list/fetch clips, snapshots, audit records, config, grants, declines);
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
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Self

from .activity import event_line
from .activity import log as activity
from .app import Doorbell
from .button import GpioButton, SoftwareButton
from .channel.commands import ConfigHandler
from .channel.wiring import DeviceChannel, build_channel
from .config import Config
from .events import Event, EventSink
from .identity import DeviceIdentity
from .loop import FrameHook
from .night import NightMode
from .night_ir import IrOutputs
from .publish.outbox import OutboxReset
from .publish.publisher import MqttPublisher, publisher_from_config
from .sources import open_source
from .sources.base import FrameSource
from .status_file import STATUS_FILE, StatusFile
from .supervisor import Supervisor, Watchdog
from .vault.vault import Vault, build_vault
from .worker import Worker

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
            if recorder is not None and recorder.recording is not None:  # a person event or a press
                event = dataclasses.replace(event, clip=True)
        line = event_line(event)
        if line is not None:
            activity.info("%s", line)
        for sink in self.sinks:
            try:
                sink.on_event(event)
            except Exception:
                log.exception("event sink %s failed on %s %s", type(sink).__name__, event.kind, event.phase)


@dataclass
class Device:
    """A running doorbell: the pipeline and what hangs off it. ``start``/``close`` or use ``with``.

    Transactional: every part given here is closed by :meth:`close` whether or not it was started, and a failure
    inside :meth:`start` closes everything before it propagates (no camera held, no thread left, no file open).
    ``supervisor`` watches every worker thread (:attr:`workers`) and feeds the systemd watchdog (``notifier``).
    """

    config: Config
    identity: DeviceIdentity
    bell: Doorbell
    events: _ClipAwareSinks
    vault: Vault | None = None
    publisher: MqttPublisher | None = None
    night: NightMode | None = None
    button: SoftwareButton | None = None
    ir: IrOutputs | None = None
    notifier: Watchdog | None = None
    #: ``<state_dir>/status.json`` for ``doorkeep status`` (device/status_file.py).
    status: StatusFile | None = None
    channel: DeviceChannel | None = None
    supervisor: Supervisor = field(init=False)
    _stack: ExitStack = field(init=False, default_factory=ExitStack)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(stats=self.bell.stats, notifier=self.notifier,
                                     progress=lambda: self.bell.ring.frames, discover=lambda: self.workers)
        # Closed in reverse: supervisor, button (no more presses), capture (no new events; queued ones are
        # delivered), the inbound channel (transfers stop), MQTT, the vault (closes any open clip, then the audit
        # log), the IR pins.
        for part in (self.ir, self.vault, self.publisher, self.channel, self.status, self.bell, self.button):
            if part is not None:
                self._stack.callback(_logged(part.close))
        self._stack.callback(_logged(self.supervisor.stop))

    @property
    def workers(self) -> list[Worker]:
        """Every supervised thread of the device (capture, detect, events, outbox, heartbeat, clip writer)."""
        out = [*self.bell.workers]
        if self.publisher is not None:
            out += self.publisher.workers
        if self.vault is not None:
            out += self.vault.workers
        if self.status is not None:
            out.append(self.status)
        if self.channel is not None:
            out += self.channel.workers
        return out

    @property
    def audit(self) -> Any:
        """The device's audit log (the vault's, or the channel's own when the vault is off), or ``None``."""
        if self.vault is not None:
            return self.vault.audit
        return self.channel.audit if self.channel is not None else None

    def start(self) -> None:
        """Vault first (recovers torn clips, then records from the pre-roll), MQTT, capture, then the supervisor.

        Raises whatever a part raised, after closing every part (the device cannot be started again).
        """
        try:
            if self.vault is not None:
                self.vault.start(self.bell.preroll)
            if self.publisher is not None:
                self.publisher.start()
            if self.channel is not None:
                self.channel.start()
            self.bell.start()
            if self.status is not None:
                self.status.start()
            self.supervisor.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop and release every part, in reverse order of building (idempotent; failures are logged)."""
        self._stack.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _logged(fn: Callable[[], object]) -> Callable[[], None]:
    def step() -> None:
        try:
            fn()
        except Exception:  # one part failing to close must not keep the others open
            log.exception("shutdown step %s failed", getattr(fn, "__qualname__", fn))
    return step


def assemble(config: Config, *, identity: DeviceIdentity, source: FrameSource | None = None,
             extra_sinks: Sequence[EventSink] = (), on_frame: FrameHook | None = None, fetch: bool = True,
             notifier: Watchdog | None = None, status_file: bool = True, apply_config: ConfigHandler | None = None,
             on_applied: Callable[[dict[str, Any]], None] | None = None, **doorbell_kw: Any) -> Device:
    """Build the whole device from ``config``.

    Args:
        identity: the device identity (signs events, manifests, audit records).
        source: a frame source; default the one ``[capture]`` names.
        extra_sinks: more event sinks (a vendor's own), after the vault and the publisher.
        on_frame: hook on the detect thread (overlays, tests).
        notifier: the systemd notifier the supervisor pings while every worker is healthy
            (:class:`~doorkeep.device.sd_notify.Notifier`; ``None``: no watchdog).
        fetch: fetch a pinned model that is not cached yet.
        status_file: keep ``<state_dir>/status.json`` current for ``doorkeep status``.
        apply_config: the owner channel's config handler (``document bytes -> verdict dict``), injected by the
            service because device/ never imports provisioning/; ``None``: config commands are refused.
        on_applied: called after an applied config's verdict was sent (the service rebuilds the device).
        **doorbell_kw: passed on to :meth:`Doorbell.from_config` (``stats``, ``packet_sinks``).

    Raises:
        ConfigError, ModelError, RuntimeMissingError, CaptureError, VaultError: whatever part cannot be built.
    """
    from .detect.detector import build_detector
    from .detect.night_detector import build_night_detector
    from .detect.pipeline import detection_parts

    night = NightMode(config.night)
    detector = build_night_detector(config, day=build_detector(config, fetch=fetch), mode=night, fetch=fetch,
                                    feed_mode=False)
    with ExitStack() as built:  # a part that fails to build closes the ones already built (audit log, camera...)
        if source is None:
            source = open_source(config.capture)
            built.callback(source.close)
        # Masks for the frames the source really delivers (a 640x480 file under the default 1920x1080 [capture]).
        parts = detection_parts(config, main_size=source.main_size, lores_size=source.lores_size,
                                detector=detector)

        # Judge day/night on every lores frame (0.006 ms), after the privacy mask, not only on frames the gate
        # passes: in the dark the IR illuminator must come on before there is motion to see.
        def judge_light(frame: Any) -> None:
            night.update(frame)

        parts.lores_extra.append(judge_light)
        ir: IrOutputs | None = None
        if config.night.ir_led_pin >= 0 or config.night.ir_cut_pin >= 0:
            ir = IrOutputs.from_config(config.night)
            built.callback(ir.close)
            night.listeners.append(ir.set_mode)
            ir.set_mode(night.mode)
        vault = build_vault(config, identity, main_size=source.main_size) if config.vault.enabled else None
        if vault is not None:
            built.callback(vault.close)
        publisher = publisher_from_config(config, identity,
                                          audit_head=vault.audit_position if vault is not None else None,
                                          flags=vault.flags if vault is not None else None)
        if publisher is not None:
            built.callback(publisher.close)
            if vault is not None:  # a full disk frees the vault's space reserve for the outbox, then retries
                publisher.outbox.on_full = vault.reserve.release
                _audit_outbox_reset(publisher, vault)
        status = StatusFile(config.state_dir / STATUS_FILE, snapshot=lambda: _live_status(device)) \
            if status_file else None
        sinks = _ClipAwareSinks(vault, [s for s in (publisher, *extra_sinks, status) if s is not None])
        bell = Doorbell.from_config(config, source=source, on_metadata=night.on_metadata, on_frame=on_frame,
                                    event_sinks=[sinks], detector=parts.detector, tracker=parts.tracker,
                                    lores_filters=parts.lores_filters, main_filters=parts.main_filters,
                                    **doorbell_kw)
        built.callback(bell.close)
        bell.stats.gauge("night_mode", lambda: 1.0 if night.night else 0.0)  # the stats line shows the mode
        if vault is not None:
            vault.stats = bell.stats
            # The heartbeat's storage_mb (docs/mqtt.md): the vault measures it at start, after each clip and each
            # retention pass (a storage fault keeps the last figure), so a snapshot never scans the disk.
            stored: Vault = vault
            bell.stats.gauge("storage_bytes", lambda: float(stored.bytes_used))
        channel: DeviceChannel | None = None
        if publisher is not None:
            publisher.heartbeat.snapshot = bell.stats.snapshot
            channel = build_channel(config, identity, publisher.client, publisher.topics, vault=vault,
                                    ring=bell.ring, apply_config=apply_config, on_applied=on_applied)
            built.callback(channel.close)
        b = config.button
        button: SoftwareButton = (GpioButton(b.pin, bounce_time=b.bounce_s, holdoff_s=b.holdoff_s, sinks=[sinks])
                                  if b.pin >= 0 else SoftwareButton(holdoff_s=b.holdoff_s, sinks=[sinks]))
        device = Device(config=config, identity=identity, bell=bell, events=sinks, vault=vault,
                        publisher=publisher, night=night, button=button, ir=ir, notifier=notifier, status=status,
                        channel=channel)
        if status is not None:  # write soon after a change, not only on the next poll
            night.listeners.append(status.poke)
            if publisher is not None:
                publisher.client.add_connect_listener(status.poke)
        built.pop_all()  # built: the device owns closing them now
    return device


def _audit_outbox_reset(publisher: MqttPublisher, vault: Vault) -> None:
    """A damaged outbox moved aside (publish/outbox.py) goes on the record with the loss: at open, and later."""

    def audit(r: OutboxReset) -> None:
        vault.audit.append("outbox_reset", moved_to=r.moved_to.name, reason=r.reason[:200], lost=r.lost)

    for r in publisher.outbox.resets:
        audit(r)
    publisher.outbox.on_reset = audit


def _live_status(device: Device) -> dict[str, Any]:
    """The figures of the status file (device/status_file.py) that only the running device knows."""
    mqtt: dict[str, Any] = {"enabled": device.publisher is not None}
    if device.publisher is not None:
        s = device.config.mqtt
        mqtt.update(host=s.host, port=s.port, connected=device.publisher.client.connected,
                    backlog=device.publisher.figures()["outbox"])
    return {"device_id": device.identity.device_id, "mode": device.night.mode if device.night else "day",
            "fps": device.bell.stats.snapshot()["fps"], "mqtt": mqtt}
