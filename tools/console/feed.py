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
from pathlib import Path

from doorkeep.device.config import MqttSection
from doorkeep.device.errors import FormatError, PayloadError
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.payload import verify
from doorkeep.device.publish.topics import Topics
from doorkeep.device.vault.requests import Notice, parse_notice
from doorkeep.tools.hub import AuditPosition, HeartbeatCheck

from .timeline import FootageRequest, LiveState

log = logging.getLogger(__name__)


def footage_request(notice: Notice) -> FootageRequest:
    """A verified request notice as the inbox shows it."""
    req = notice.request
    return FootageRequest(req.request_id, req.requester, req.incident, req.purpose, req.window,
                          float(req.issued_at), notice.received_at, req.key.to_json())


HEADS_FORMAT = "doorkeep/console-heads"


def load_heads(path: Path | None) -> AuditPosition | None:
    """The furthest audit position an earlier console run saw in a signed heartbeat (None: none or unreadable)."""
    if path is None or not path.exists():
        return None
    try:
        d = json.loads(path.read_bytes())
        if d.get("format") != HEADS_FORMAT or d.get("v") != 1:
            return None
        return AuditPosition(int(d["records"]), str(d["head"]), int(d["t_ms"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        log.warning("console: ignoring unreadable %s", path)
        return None


def save_heads(path: Path, pos: AuditPosition) -> None:
    from doorkeep.device.fileio import write_atomic

    data = {"format": HEADS_FORMAT, "v": 1, "records": pos.records, "head": pos.head, "t_ms": pos.t_ms}
    write_atomic(path, json.dumps(data, sort_keys=True).encode() + b"\n", mode=0o600)


class MqttFeed:
    """Subscribes to one device's topics on the owner's broker and feeds the verified facts to ``state``.

    Args:
        settings: the broker (host, port, TLS, credentials).
        device_key: the device's pinned Ed25519 public key (32 bytes).
        state: where verified facts go.
    """

    def __init__(self, settings: MqttSection, *, device_key: bytes, state: LiveState,
                 heads: Path | None = None) -> None:
        self.device_key = device_key
        self.state = state
        self.topics = Topics(state.device_id)
        #: Where the furthest audit head seen is kept between runs, so a log rolled back while the console was
        #: not running is still caught (the Audit page checks the chain passes through it).
        self.heads = heads
        self.heartbeats = HeartbeatCheck(device_key, seen=load_heads(heads))
        self._saved: AuditPosition | None = self.heartbeats.seen
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
        seen = self.heartbeats.seen
        if self.heads is not None and seen is not None and seen != self._saved:
            try:
                save_heads(self.heads, seen)
                self._saved = seen
            except OSError as exc:
                log.warning("console: could not keep the audit head in %s: %s", self.heads, exc.strerror)
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
