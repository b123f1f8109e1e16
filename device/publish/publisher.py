"""The MQTT publisher: an :class:`~doorkeep.device.events.EventSink` that never loses an event.

``on_event`` (called on the detection thread) signs the event, writes it — together with the Home Assistant state
message it implies — to the durable outbox in one transaction, wakes the sender thread and returns. It never
touches the network. The sender thread publishes outbox rows in order with up to ``inflight`` messages awaiting
PUBACK on the one connection (MQTT keeps a connection's QoS1 messages in order, and paho resends unacknowledged
ones in order after a reconnect); a row is deleted when its PUBACK arrives.

Example::

    pub = MqttPublisher(cfg.mqtt, identity, state_dir=cfg.state_dir, device_name=cfg.device.name,
                        stats=stats.snapshot)
    pub.start()
    loop = Loop(..., event_sinks=[pub, ...])
    ...
    pub.close()
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from ..activity import log as activity
from ..config import MqttSection
from ..disk import Backoff
from ..errors import OutboxError, PublishError
from ..events import Event
from ..identity import DeviceIdentity
from ..lograte import FailureLog
from ..worker import Worker
from .discovery import DiscoveryAnnouncer
from .heartbeat import AuditSource, Heartbeat
from .mqtt import MqttClient, PublishHandle
from .outbox import Outbox, OutMessage
from .payload import EventPayloadError, encode, fit_zone, payload_event_id
from .retained_ledger import LEDGER_FILE, RetainedLedger, clear_stale
from .topics import OFF, ON, SPEC, Topics

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.sqlite3"
#: On a clean stop, how long the publisher waits for the broker to take what is queued (the person OFF state).
CLOSE_DRAIN_S = 2.0


def messages_for(event: Event, payload: bytes, topics: Topics) -> list[OutMessage]:
    """The messages one event produces: the signed event, plus the Home Assistant state it implies."""
    ev, person, bell = SPEC["event"], SPEC["person"], SPEC["doorbell"]
    out = [OutMessage(topics.event, payload, ev.qos, ev.retain)]
    if event.kind == "person":
        out.append(OutMessage(topics.person, ON if event.phase == "start" else OFF, person.qos, person.retain))
    elif event.kind == "doorbell":
        ha = json.dumps({"event_type": "press", "event_id": payload_event_id(event.event_id)},
                        separators=(",", ":")).encode()
        out.append(OutMessage(topics.doorbell, ha, bell.qos, bell.retain))
    return out


class _Sender(Worker):
    """``doorkeep-outbox``: drains the outbox through the client: ordered, a bounded window in flight, delete on
    PUBACK. Restartable: the rows stay in the outbox until acknowledged, so a restart resends what was in flight
    (QoS 1 is at-least-once; the hub de-duplicates by event id)."""

    def __init__(self, client: MqttClient, outbox: Outbox, *, window: int) -> None:
        super().__init__("outbox")
        self.client = client
        self.outbox = outbox
        self.window = window
        self.published = 0
        self.refused = 0
        self._refused_log = FailureLog(activity, "broker (refused a message)", traceback=False)
        self.storage_errors = 0
        self._publish_failures = FailureLog(log, "publishing from the outbox")
        self._wakeup = threading.Event()
        self._listening = False

    def start(self) -> None:
        if not self._listening:
            self._listening = True
            self.client.add_connect_listener(self.wake)
        super().start()

    def wake(self, *_: object) -> None:
        self._wakeup.set()

    def _wake(self) -> None:
        self._wakeup.set()

    def _run(self) -> None:
        inflight: dict[int, PublishHandle] = {}
        last = 0
        backoff = Backoff(first_s=0.5, max_s=30.0)
        while not self.stopping:
            try:
                self._step(inflight)
                last = self._send(inflight, last)
                if self.outbox.spilled:
                    self.outbox.flush()  # the disk may take the rows held in memory back now
            except OutboxError as exc:  # never die on storage: retry; messages wait on disk or in memory
                self.storage_errors += 1
                delay = backoff.fail(time.monotonic())
                if backoff.failures == 1:
                    log.error("outbox sender: %s; retrying (every %.0f s at most)", exc, backoff.max_s)
                self.mark()
                self.wait(delay)
                continue
            if backoff.failures:
                log.warning("outbox sender: the outbox is readable again")
                backoff.reset()
            self.mark()
            self._wakeup.wait(0.5)
            self._wakeup.clear()

    def _step(self, inflight: dict[int, PublishHandle]) -> None:
        """Delete acknowledged rows."""
        for seq, h in list(inflight.items()):
            if h.done():
                if h.refused:  # MQTT 5 only: retrying cannot succeed and would block every later event
                    self.refused += 1
                    self._refused_log.failed(f"({h.topic}: {h.reason}): message dropped")
                else:
                    self.published += 1
                self.outbox.ack(seq)
                del inflight[seq]

    def _send(self, inflight: dict[int, PublishHandle], last: int) -> int:
        """Publish the next rows while the window has room; returns the last row sent."""
        if self.client.connected and len(inflight) < self.window:
            rows = self.outbox.peek(after=last, limit=self.window - len(inflight))  # OutboxError: see _run
            try:
                for row in rows:
                    m = row.message
                    h = self.client.publish_raw(m.topic, m.payload, qos=m.qos, retain=m.retain)
                    h.add_done_callback(self.wake)
                    inflight[row.seq] = h
                    last = row.seq
            except PublishError:  # retried on the next pass (twice a second): logged once, then counted
                self._publish_failures.failed()
            else:
                self._publish_failures.ok()
        return last


class MqttPublisher:
    """Signed events to MQTT, Home Assistant discovery, the stats heartbeat — one object for the device app.

    Args:
        settings: the ``[mqtt]`` config section.
        identity: the device identity (signs every event; its id names the topics and the client).
        state_dir: where the outbox lives (``state_dir/outbox.sqlite3``).
        device_name: shown in Home Assistant.
        stats: ``() -> dict`` for the heartbeat (``Stats.snapshot``).
        audit_head: ``() -> (records, head hex)`` (``Vault.audit_position``; ``() -> head hex`` also works), the
            audit log's position, signed into the heartbeat.
        flags: ``() -> dict``, fault flags for the heartbeat (the vault's ``{"vault_fault": "EIO"}``).

    ``client`` is the one MQTT connection; the vault's export and provisioning's pairing use
    ``client.publish_raw`` / ``client.subscribe`` with names from ``topics``.
    """

    def __init__(self, settings: MqttSection, identity: DeviceIdentity, *, state_dir: str | Path,
                 device_name: str = "Front door", stats: Callable[[], dict[str, Any]] | None = None,
                 audit_head: AuditSource | None = None,
                 flags: Callable[[], dict[str, str]] | None = None) -> None:
        self.identity = identity
        self.topics = Topics(identity.device_id, prefix=settings.discovery_prefix)
        self.outbox = Outbox(Path(state_dir).expanduser() / OUTBOX_FILE, max_rows=settings.outbox_max)
        self.client = MqttClient(settings, client_id=identity.device_id, availability_topic=self.topics.availability)
        self._sender = _Sender(self.client, self.outbox, window=settings.inflight)
        self.discovery = (DiscoveryAnnouncer(self.client, self.topics, device_name=device_name)
                          if settings.discovery else None)
        self._ledger = RetainedLedger(Path(state_dir).expanduser() / LEDGER_FILE)
        self.heartbeat = Heartbeat(self.client, self.topics.stats, identity=identity, interval_s=settings.heartbeat_s,
                                   stats=stats, extra=self.figures, audit_head=audit_head, flags=flags)
        self.unencodable = 0
        self._started = False
        self._closed = False
        #: Last person state queued; re-sent (retained) after a reconnect in case the broker lost its retained copy.
        self._person_state: bytes | None = None

    def start(self) -> None:
        """Connect (in the background) and start sending the outbox and the heartbeat.

        The retained person state is set to the truth, ``OFF`` (no person is tracked yet), queued after whatever
        the outbox still holds: a stale ``ON`` left by a crash never survives a restart.
        """
        if self._started:
            return
        self._started = True
        self._queue_person_state(OFF)
        # Before the announcer's own listener: what an old identity or setting left on the broker goes first.
        self.client.add_connect_listener(self._tidy_discovery)
        if self.discovery is not None:
            self.discovery.attach()
        self.client.add_connect_listener(self._republish_state)
        self._sender.start()
        self.heartbeat.start()
        self.client.start()

    def _tidy_discovery(self) -> None:
        clear_stale(self.client, self._ledger, self.topics, discovery=self.discovery is not None)

    @property
    def workers(self) -> list[Worker]:
        """The publisher's supervised threads: the outbox sender and the heartbeat."""
        return [self._sender, self.heartbeat]

    def on_event(self, event: Event) -> None:
        """Sign and queue ``event`` durably; returns without waiting for the network.

        Raises:
            PublishError: the publisher was closed (the event was not queued).
        """
        if self._closed:
            raise PublishError(f"publisher closed: event {event.event_id} {event.phase} not queued")
        zone = fit_zone(event.zone)
        if zone != event.zone:
            event = dataclasses.replace(event, zone=zone)
        try:
            payload = encode(event, self.identity)
        except EventPayloadError:
            self.unencodable += 1
            log.exception("event %s cannot be encoded; not published", event.event_id)
            return
        messages = messages_for(event, payload, self.topics)
        self.outbox.put(messages)
        if event.kind == "person":
            self._person_state = messages[1].payload
        self._sender.wake()

    def _queue_person_state(self, state: bytes) -> None:
        spec = SPEC["person"]
        self.outbox.put([OutMessage(self.topics.person, state, spec.qos, spec.retain)])
        self._person_state = state
        self._sender.wake()

    def _republish_state(self) -> None:
        state = self._person_state
        # Queued rows are sent right after this, in order, and end with the latest state if it changed while we
        # were offline; publishing it here too would put a stale state between them (ON, ON, OFF).
        if state is not None and not len(self.outbox):
            spec = SPEC["person"]
            self.client.publish_raw(self.topics.person, state, qos=spec.qos, retain=spec.retain)

    def figures(self) -> dict[str, int]:
        """Outbox backlog and lifetime drop count (merged into the heartbeat)."""
        return {"outbox": len(self.outbox), "outbox_dropped": self.outbox.dropped}

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the outbox to empty (acknowledged by the broker). True when empty."""
        deadline = time.monotonic() + timeout
        while len(self.outbox):
            if time.monotonic() >= deadline:
                return False
            self._sender.wake()
            time.sleep(0.02)
        return True

    def close(self) -> None:
        """Stop sending, publish ``offline``, disconnect. Unacknowledged events stay in the outbox. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self._started:
            self.outbox.close()
            return
        self._started = False
        # The device stops knowing who is at the door: leave OFF retained, not a stale ON. Queued durably, so it is
        # sent on the next start if the broker cannot take it now.
        self._queue_person_state(OFF)
        if self.client.connected:
            self.drain(CLOSE_DRAIN_S)
        self.heartbeat.stop()
        self._sender.stop()
        self.client.stop()
        self.outbox.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def publisher_from_config(config: Any, identity: DeviceIdentity, *,
                          stats: Callable[[], dict[str, Any]] | None = None,
                          audit_head: AuditSource | None = None,
                          flags: Callable[[], dict[str, str]] | None = None) -> MqttPublisher | None:
    """The publisher for a :class:`~doorkeep.device.config.Config` (``None`` when ``mqtt.enabled`` is false).

    Not started: call ``start()`` (or use ``with``) and add it to the doorbell's ``event_sinks``.
    """
    if not config.mqtt.enabled:
        return None
    return MqttPublisher(config.mqtt, identity, state_dir=config.state_dir, device_name=config.device.name,
                         stats=stats, audit_head=audit_head, flags=flags)
