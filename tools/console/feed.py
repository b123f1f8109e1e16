"""The device's live messages into :class:`~.timeline.LiveState`, each verified before it is believed.

Signed events (device/publish/payload.py), signed heartbeats (tools/hub.py ``HeartbeatCheck``: it also warns when
the audit head goes back) and device-signed request notices with the requester's signed request inside
(device/vault/requests.py) are verified with the pinned device key — a forged or tampered one is counted as
rejected and never shown. Availability (the broker's last will) and Home Assistant discovery (the firmware version)
cannot be signed: they are shown as hints.
"""

from __future__ import annotations

import json
import logging
import secrets

from doorkeep.device.config import MqttSection
from doorkeep.device.errors import FormatError, PayloadError
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.payload import verify
from doorkeep.device.publish.topics import Topics
from doorkeep.device.vault.requests import Notice, parse_notice
from doorkeep.tools.hub import HeartbeatCheck

from .timeline import FootageRequest, LiveState

log = logging.getLogger(__name__)


def footage_request(notice: Notice) -> FootageRequest:
    """A verified request notice as the inbox shows it."""
    req = notice.request
    return FootageRequest(req.request_id, req.requester, req.incident, req.purpose, req.window,
                          float(req.issued_at), notice.received_at, req.key.to_json())


class MqttFeed:
    """Subscribes to one device's topics on the owner's broker and feeds the verified facts to ``state``.

    Args:
        settings: the broker (host, port, TLS, credentials).
        device_key: the device's pinned Ed25519 public key (32 bytes).
        state: where verified facts go.
    """

    def __init__(self, settings: MqttSection, *, device_key: bytes, state: LiveState) -> None:
        self.device_key = device_key
        self.state = state
        self.topics = Topics(state.device_id)
        self.heartbeats = HeartbeatCheck(device_key)
        self.client = MqttClient(settings, client_id="doorkeep-console-" + secrets.token_hex(4))
        handlers = {self.topics.event: self._on_event, self.topics.stats: self._on_stats,
                    self.topics.availability: self._on_availability, self.topics.request: self._on_request,
                    self.topics.discovery: self._on_discovery}
        for topic, fn in handlers.items():
            self.client.subscribe(topic, fn, qos=1)

    def start(self) -> None:
        self.client.start()

    def close(self) -> None:
        self.client.stop()

    def _on_event(self, topic: str, payload: bytes) -> None:
        try:
            ev = verify(payload, self.device_key)
        except PayloadError as exc:
            self.state.rejected(f"event on {topic}: {getattr(exc, 'reason', 'invalid')}")
            return
        self.state.add_event(ev)

    def _on_stats(self, topic: str, payload: bytes) -> None:
        try:
            hb = self.heartbeats.check(payload)
        except PayloadError as exc:
            self.state.rejected(f"heartbeat on {topic}: {getattr(exc, 'reason', 'invalid')}")
            return
        self.state.set_heartbeat(dict(hb), signed=True, warning=self.heartbeats.last_warning)

    def _on_availability(self, _topic: str, payload: bytes) -> None:
        value = payload.decode("ascii", "replace")
        if value in ("online", "offline"):
            self.state.set_availability(value)

    def _on_discovery(self, _topic: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload) if payload else {}
            sw = (doc.get("dev") or {}).get("sw") or ""
        except (ValueError, AttributeError):
            return
        if isinstance(sw, str) and sw:
            self.state.set_firmware(sw[:40])

    def _on_request(self, _topic: str, payload: bytes) -> None:
        try:
            notice = parse_notice(payload, self.device_key)
            if notice.device_id != self.state.device_id:
                raise FormatError("request notice for another device")
            self.state.add_request(footage_request(notice))
        except FormatError as exc:
            self.state.rejected(f"request notice: {exc}")
