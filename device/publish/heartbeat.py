"""The retained stats heartbeat on ``doorkeep/<id>/stats``: device health for the hub and Home Assistant.

Built from ``Stats.snapshot()`` (device/stats.py; any ``() -> dict`` works), the publisher's outbox figures and the
vault's audit-log head hash. Flat top-level keys are what Home Assistant's sensors read (docs/mqtt.md#stats):
``fps``, ``drops``, ``inference_ms``, ``storage_mb``, ``outbox``, ``outbox_dropped``, ``audit_head``; the full
counters/gauges follow when they fit in the 1 KiB bound.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import PayloadError
from ..worker import Worker
from .mqtt import MqttClient
from .topics import SPEC

log = logging.getLogger(__name__)

HEARTBEAT_VERSION = 1


def _drops(snap: dict[str, Any]) -> int:
    """Frames lost anywhere: every counter or gauge whose name says drop/overrun."""
    total = 0.0
    for group in ("counters", "gauges"):
        for name, v in (snap.get(group) or {}).items():
            if ("drop" in name or "overrun" in name) and isinstance(v, int | float):
                total += v
    return int(total)


def heartbeat_payload(snapshot: dict[str, Any], *, outbox: int = 0, outbox_dropped: int = 0,
                      audit_head: str | None = None, flags: dict[str, str] | None = None,
                      now: float | None = None) -> bytes:
    """The heartbeat JSON (≤ 1024 bytes; the detailed counters/gauges are left out if they would not fit).

    ``flags`` are short top-level strings present only while something is wrong (``vault_fault``: the errno name
    of the storage fault that stopped recording; docs/mqtt.md#stats)."""
    gauges = snapshot.get("gauges") or {}
    detect = (snapshot.get("latency_ms") or {}).get("detect") or {}
    storage = next((v for k, v in gauges.items() if "storage" in k and k.endswith("bytes")), 0.0)
    hb: dict[str, Any] = {
        "v": HEARTBEAT_VERSION,
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
    if audit_head is not None:
        hb["audit_head"] = audit_head
    for k, v in (flags or {}).items():
        hb[k] = str(v)[:32]
    bound = SPEC["stats"].max_bytes
    full = dict(hb, counters=snapshot.get("counters") or {}, gauges=gauges)
    for candidate in (full, hb):
        data = json.dumps(candidate, separators=(",", ":"), sort_keys=True).encode()
        if len(data) <= bound:
            return data
    raise PayloadError(f"heartbeat is {len(data)} bytes even without details (bound {bound})")


class Heartbeat(Worker):
    """``doorkeep-heartbeat``: publishes the heartbeat every ``interval_s`` and after every (re)connect."""

    def __init__(self, client: MqttClient, topic: str, *, interval_s: float,
                 stats: Callable[[], dict[str, Any]] | None = None,
                 extra: Callable[[], dict[str, int]] | None = None,
                 audit_head: Callable[[], str] | None = None,
                 flags: Callable[[], dict[str, str]] | None = None) -> None:
        super().__init__("heartbeat")
        self.client = client
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
            payload = heartbeat_payload(self.snapshot(), audit_head=head, flags=flags, **self.extra())
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
