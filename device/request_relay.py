"""Footage requests: requester → device → the owner's hub, and a constant acknowledgement back to the requester.

A requester (say, a police department drawing a geofence) publishes a signed request on
``doorkeep/<id>/request/in``. The inbox worker (device/channel/inbox.py, never the MQTT network thread) hands it
to :class:`RequestGate`, which checks, cheapest first:

1. form (JSON, fields, sizes) → ``malformed``;
2. ``issued_at`` within ``±skew_s`` of the device clock (default 600 s) → ``stale`` / ``future``;
3. the (requester key, request id) pair not seen while fresh → ``replayed``;
4. the requester's signature → ``bad_signature``;
5. the requester key's token bucket, then the overall one → ``rate_key`` / ``rate_overall``.

Only a request that passed 1–4 takes tokens, so replayed or garbage messages cannot use up a requester's budget:
a key's first fresh request always passes its own bucket. Refusals are counted into one ``request_refused`` audit
record per interval. An accepted request is audited (a bounded record), forwarded to the hub as received inside a
device-signed notice, and acknowledged to the requester with a device-signed ack that is the same whatever footage
exists. The gate looks at no clip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from .activity import log as activity
from .channel.limits import (
    Auditor,
    AuditTally,
    FreshnessWindow,
    KeyedBuckets,
    TokenBucket,
)
from .errors import FormatError, PublishError
from .identity import DeviceIdentity
from .publish.mqtt import MqttClient
from .publish.topics import SPEC, Topics
from .safe_text import printable
from .vault.requests import (
    MAX_REQUEST_BYTES,
    Request,
    audit_fields,
    sign_ack,
    sign_notice,
)

log = logging.getLogger(__name__)


class RequestGate:
    """Admits, audits, forwards and acknowledges footage requests (called on the inbox worker thread).

    Args:
        client: the device's MQTT client (notices and acks are published through it).
        topics: the device's topics.
        identity: signs notices and acks.
        audit: the audit log.
        window: request ids seen while fresh (persisted).
        per_key, overall: token buckets (per requester key; all requests).
        refused: the counted ``request_refused`` audit record.
    """

    def __init__(self, client: MqttClient, topics: Topics, *, identity: DeviceIdentity, audit: Auditor,
                 window: FreshnessWindow, per_key: KeyedBuckets, overall: TokenBucket, refused: AuditTally,
                 clock: Callable[[], float] = time.time) -> None:
        self.client, self.topics, self.identity, self.audit = client, topics, identity, audit
        self.window, self.per_key, self.overall, self.refused = window, per_key, overall, refused
        self._clock = clock
        self.forwarded = 0

    def refuse(self, reason: str) -> None:
        self.refused.note(reason)

    def handle(self, data: bytes) -> None:
        try:
            req = self.admit(data)
        except FormatError as exc:
            self.refused.note(getattr(exc, "reason", "malformed"))
            return
        self.forward(req, data)

    def admit(self, data: bytes) -> Request:
        """Every check; raises :class:`RequestRefused` (a FormatError) with ``reason``."""
        if len(data) > MAX_REQUEST_BYTES:
            raise RequestRefused("too_big")
        try:
            req = Request.parse(data)
        except FormatError:
            raise RequestRefused("malformed") from None
        seen_id = f"{req.key_id}:{req.request_id}"
        why = self.window.check(seen_id, req.issued_at)
        if why is not None:
            raise RequestRefused(why)
        try:
            req.verify()
        except FormatError:
            raise RequestRefused("bad_signature") from None
        mine = self.per_key.bucket(req.key_id)
        if not mine.available():
            raise RequestRefused("rate_key")
        if not self.overall.take():
            raise RequestRefused("rate_overall")
        mine.take()
        self.window.add(seen_id, req.issued_at)
        return req

    def forward(self, req: Request, data: bytes) -> None:
        """Audit, notify the owner's hub, acknowledge to the requester."""
        self.audit.append("request_received", **audit_fields(req, data))
        notice, ack = SPEC["request"], SPEC["request_ack"]
        try:
            self.client.publish_raw(self.topics.request,
                                    sign_notice(self.identity, data, req, received_at=self._clock()),
                                    qos=notice.qos, retain=notice.retain)
            self.client.publish_raw(self.topics.request_ack(req.key_id), sign_ack(self.identity, req),
                                    qos=ack.qos, retain=ack.retain)
        except PublishError:
            log.exception("could not forward request %s", req.request_id)
            return
        self.forwarded += 1
        activity.info("footage request %s from %s forwarded to the owner", req.request_id,
                      printable(req.requester[:64]))


class RequestRefused(FormatError):
    """A footage request was refused; ``reason`` is its code (docs/formats.md#footage-request)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"request refused: {reason}")


def request_limits(state_dir: Any, audit: Auditor, *, skew_s: float = 600.0, per_key_per_hour: float = 6.0,
                   per_key_burst: float = 3.0, overall_per_hour: float = 120.0, overall_burst: float = 20.0,
                   refusal_interval_s: float = 60.0) -> dict[str, Any]:
    """The default limits for a :class:`RequestGate` (state files under ``state_dir``)."""
    from pathlib import Path

    return {"window": FreshnessWindow(Path(state_dir) / "requests.seen", skew_s=skew_s),
            "per_key": KeyedBuckets(rate=per_key_per_hour / 3600, burst=per_key_burst),
            "overall": TokenBucket(rate=overall_per_hour / 3600, burst=overall_burst),
            "refused": AuditTally(audit, "request_refused", interval_s=refusal_interval_s,
                                  what="refused footage requests")}
