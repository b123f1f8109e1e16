"""Footage requests: requester → device → the owner's hub, and nothing back to the requester.

A requester (say, a police department drawing a geofence) publishes a signed request on
``doorkeep/<id>/request/in``. The device verifies and audits it (vault/requests.py) and forwards a notice to the
owner's hub on ``doorkeep/<id>/request``. It looks at no clip while doing so: whether footage exists for the window
is the owner's to decide and to tell. Only the owner can answer, with a signed grant.
"""

from __future__ import annotations

import logging

from .errors import FormatError
from .publish.mqtt import MqttClient
from .publish.topics import SPEC, Topics
from .safe_text import printable
from .vault.vault import Vault

log = logging.getLogger(__name__)


class RequestRelay:
    """Subscribes to the device's request inbox and forwards each verified request to the owner's hub."""

    def __init__(self, client: MqttClient, topics: Topics, vault: Vault) -> None:
        self.client = client
        self.topics = topics
        self.vault = vault
        self.forwarded = 0
        self.refused = 0

    def attach(self) -> None:
        """Subscribe (kept across reconnects by the client)."""
        self.client.subscribe(self.topics.request_in, self.on_request, qos=SPEC["request_in"].qos)

    def on_request(self, _topic: str, payload: bytes) -> None:
        if len(payload) > SPEC["request_in"].max_bytes:
            self.refused += 1
            self.vault.audit.append("request_refused", reason=f"too large ({len(payload)} bytes)")
            return
        try:
            notice = self.vault.handle_request(payload)  # verifies and audits (refusals too)
        except FormatError as exc:
            self.refused += 1
            log.warning("refused a footage request: %s", printable(exc))
            return
        spec = SPEC["request"]
        self.client.publish_raw(notice.topic, notice.payload, qos=spec.qos, retain=spec.retain)
        self.forwarded += 1
