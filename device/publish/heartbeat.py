"""The retained, device-signed stats heartbeat on ``doorkeep/<id>/stats``: device health and the audit-log head.

Built from ``Stats.snapshot()`` (device/stats.py; any ``() -> dict`` works), the publisher's outbox figures and the
vault's audit-log position (record count and head hash). Flat top-level keys are what Home Assistant's sensors read
(docs/mqtt.md#stats-heartbeat): ``fps``, ``drops``, ``inference_ms``, ``storage_mb``, ``outbox``,
``outbox_dropped``, ``audit_head``; the full counters/gauges follow when they fit in the 1 KiB bound.

The heartbeat is signed by the device key (the event payload's scheme: ``sig`` last, over the bytes before it), so
a broker cannot substitute the audit head; a hub keeps the highest position it has seen and warns when a signed
heartbeat goes back (:func:`verify_heartbeat`, tools/hub.py ``HeartbeatCheck``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import nacl.exceptions
import nacl.signing

from ..identity import DeviceIdentity, device_id_for
from ..worker import Worker
from .mqtt import MqttClient
from .payload import EventPayloadError, sign_tail, split_tail
from .topics import SPEC

log = logging.getLogger(__name__)

HEARTBEAT_VERSION = 2
DOMAIN = b"doorkeep-heartbeat-v2\x00"
#: ``() -> (records, head hex)`` (``Vault.audit_position``) or ``() -> head hex`` alone.
AuditSource = Callable[[], "tuple[int, str] | str"]


def _drops(snap: dict[str, Any]) -> int:
    """Frames lost anywhere: every counter or gauge whose name says drop/overrun."""
    total = 0.0
    for group in ("counters", "gauges"):
        for name, v in (snap.get(group) or {}).items():
            if ("drop" in name or "overrun" in name) and isinstance(v, int | float):
                total += v
    return int(total)


def heartbeat_payload(snapshot: dict[str, Any], *, identity: DeviceIdentity, outbox: int = 0,
                      outbox_dropped: int = 0, audit_head: tuple[int, str] | str | None = None,
                      flags: dict[str, str] | None = None, now: float | None = None) -> bytes:
    """The signed heartbeat JSON (≤ 1024 bytes; the detailed counters/gauges are left out if they would not fit).

    ``flags`` are short top-level strings present only while something is wrong (``vault_fault``: the errno name
    of the storage fault that stopped recording; docs/mqtt.md#stats)."""
    gauges = snapshot.get("gauges") or {}
    detect = (snapshot.get("latency_ms") or {}).get("detect") or {}
    storage = next((v for k, v in gauges.items() if "storage" in k and k.endswith("bytes")), 0.0)
    hb: dict[str, Any] = {
        "v": HEARTBEAT_VERSION,
        "d": identity.device_id,
        "t": round((time.time() if now is None else now) * 1000),
        "uptime_s": round(float(snapshot.get("uptime_s", 0.0)), 1),
        # Capture rate when the loop reports it (gauge), else the analysed rate.
        "fps": round(float(gauges.get("capture_fps", snapshot.get("fps", 0.0))), 2),
        "drops": _drops(snapshot),
        "inference_ms": round(float(detect.get("p50", 0.0)), 2),
        "storage_mb": round(float(storage) / 1e6, 2),
        "outbox": int(outbox),
        "outbox_dropped": int(outbox_dropped),
    }
    if isinstance(audit_head, tuple):
        hb["audit_records"], hb["audit_head"] = int(audit_head[0]), str(audit_head[1])
    elif audit_head is not None:
        hb["audit_head"] = audit_head
    for k, v in (flags or {}).items():
        hb[k] = str(v)[:32]
    bound = SPEC["stats"].max_bytes
    full = dict(hb, counters=snapshot.get("counters") or {}, gauges=gauges)
    for candidate in (full, hb):
        body = json.dumps(candidate, separators=(",", ":"), sort_keys=True, allow_nan=False).encode()
        data = sign_tail(body, DOMAIN, identity.sign)
        if len(data) <= bound:
            return data
    raise EventPayloadError("unencodable", f"heartbeat is {len(data)} bytes even without details (bound {bound})")


def verify_heartbeat(payload: bytes, verify_key: bytes) -> dict[str, Any]:
    """Check a heartbeat's device signature and return its fields (without ``sig``).

    Raises:
        PayloadError: ``unsigned`` (an older device, or a substituted heartbeat), ``bad-signature``, ``too-big``,
            ``wrong-version``, ``wrong-device`` or ``malformed``.
    """
    if len(payload) > SPEC["stats"].max_bytes:
        raise EventPayloadError("too-big", f"{len(payload)} bytes")
    body, sig = split_tail(bytes(payload))
    try:
        fields = json.loads(body)
    except ValueError:
        raise EventPayloadError("malformed", "not JSON") from None
    if not isinstance(fields, dict):
        raise EventPayloadError("malformed", "not a JSON object")
    if fields.get("v") != HEARTBEAT_VERSION:
        raise EventPayloadError("wrong-version", f"heartbeat version {fields.get('v')!r}")
    try:
        nacl.signing.VerifyKey(verify_key).verify(DOMAIN + body, sig)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        raise EventPayloadError("bad-signature", "heartbeat not signed by this device") from None
    if fields.get("d") != device_id_for(verify_key):
        raise EventPayloadError("wrong-device", f"heartbeat names {str(fields.get('d'))[:40]!r}")
    if not isinstance(fields.get("t"), int) or not isinstance(fields.get("audit_records", 0), int):
        raise EventPayloadError("malformed", "t / audit_records must be integers")
    return fields


class Heartbeat(Worker):
    """``doorkeep-heartbeat``: publishes the heartbeat every ``interval_s`` and after every (re)connect."""

    def __init__(self, client: MqttClient, topic: str, *, identity: DeviceIdentity, interval_s: float,
                 stats: Callable[[], dict[str, Any]] | None = None,
                 extra: Callable[[], dict[str, int]] | None = None,
                 audit_head: AuditSource | None = None,
                 flags: Callable[[], dict[str, str]] | None = None) -> None:
        super().__init__("heartbeat")
        self.client = client
        self.identity = identity
        self.topic = topic
        self.interval_s = interval_s
        self.snapshot = stats or (dict)
        self.extra = extra or (dict)
        self.audit_head = audit_head
        self.flags = flags
        self._wakeup = threading.Event()
        self._listening = False

    def start(self) -> None:
        if not self._listening:
            self._listening = True
            self.client.add_connect_listener(self._wakeup.set)
        super().start()

    def _wake(self) -> None:
        self._wakeup.set()

    def beat(self) -> None:
        """Publish one heartbeat now (if connected)."""
        if not self.client.connected:
            return
        try:
            head = self.audit_head() if self.audit_head else None
            flags = self.flags() if self.flags else None
            payload = heartbeat_payload(self.snapshot(), identity=self.identity, audit_head=head, flags=flags,
                                        **self.extra())
        except Exception:
            log.exception("could not build the stats heartbeat")
            return
        spec = SPEC["stats"]
        self.client.publish_raw(self.topic, payload, qos=spec.qos, retain=spec.retain)

    def _run(self) -> None:
        while not self.stopping:
            self.beat()
            self.mark()
            self._wakeup.wait(self.interval_s)
            self._wakeup.clear()
