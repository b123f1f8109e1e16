"""The hub side of doorkeep's MQTT: subscribe to a device's signed events and heartbeats, verify each, report loudly.

Used by ``doorkeep events`` (tools/cmd_hub.py), the demo's subscriber and the owner link (tools/owner_link.py).

Example::

    watcher = EventWatcher(verify_key, out=sys.stdout, err=sys.stderr, as_json=False)
    watcher.connect(MqttSection(host="127.0.0.1", port=1883))
    watcher.wait(count=10, seconds=60)
    watcher.close()
    print(watcher.summary())
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from doorkeep.device.config import MqttSection
from doorkeep.device.errors import InvalidArgument, PayloadError
from doorkeep.device.identity import device_id_for
from doorkeep.device.publish.heartbeat import verify_heartbeat
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.payload import VerifiedEvent, verify
from doorkeep.device.publish.topics import Topics
from doorkeep.device.safe_text import printable

REJECT_MARK = "!! REJECTED"


def parse_verify_key(text: str) -> bytes:
    """A device public key from 64 hex chars (as ``doorkeep identity show`` prints it), base64/base64url, or a text
    file holding either.

    A file of 32 raw bytes is refused: that is the form of the device's SECRET key (``device.key``), and taking it
    for a public key would listen on another device id and verify nothing.

    Raises:
        InvalidArgument: nothing usable, or a secret key (the message says what was expected).
    """
    candidate: bytes | str = text
    if len(text) < 200 and os.path.isfile(text):
        raw = Path(text).read_bytes()
        if len(raw) == 32:
            raise InvalidArgument(f"--device-key {text}: this file holds 32 raw bytes, the form of a device's SECRET "
                                  "key (device.key) — never copy it off the device. Give its public key: run "
                                  "`doorkeep identity show` on the device")
        candidate = raw.decode("ascii", errors="replace")
    s = str(candidate).strip()
    try:
        if len(s) == 64:
            return bytes.fromhex(s)
    except ValueError:
        pass
    try:
        key = base64.b64decode(s.replace("-", "+").replace("_", "/") + "=" * (-len(s) % 4), validate=True)
        if len(key) == 32:
            return key
    except (binascii.Error, ValueError):
        pass
    raise InvalidArgument(f"--device-key {text!r}: expected a 32-byte Ed25519 public key as 64 hex chars (what "
                          "`doorkeep identity show` prints), base64, or a file holding one")


@dataclass(frozen=True)
class Verdict:
    """One received message: ``event`` when verified, else ``reason``/``detail``."""

    topic: str
    size: int
    event: VerifiedEvent | None = None
    reason: str = ""
    detail: str = ""
    duplicate: bool = False

    @property
    def verified(self) -> bool:
        return self.event is not None

    def as_json(self) -> dict[str, object]:
        if self.event is None:
            return {"verified": False, "reason": self.reason, "detail": self.detail, "topic": self.topic,
                    "bytes": self.size}
        e = self.event
        return {"verified": True, "topic": self.topic, "device_id": e.device_id, "event_id": e.event_id,
                "kind": e.kind, "phase": e.phase, "t": e.t, "t_start": e.t_start, "t_end": e.t_end,
                "score": e.score, "zone": e.zone, "clip": e.clip, "bytes": self.size, "duplicate": self.duplicate}


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


TABLE_HEADER = f"{'TIME':<12} {'DEVICE':<19} {'EVENT':<24} {'KIND':<8} {'PHASE':<5} {'SCORE':>5} {'ZONE':<20} CLIP"


def table_row(e: VerifiedEvent) -> str:
    return (f"{_clock(e.t):<12} {e.device_id:<19} {e.event_id:<24} {e.kind:<8} {e.phase:<5} {e.score:>5.2f} "
            f"{(e.zone or '-'):<20} {'yes' if e.clip else 'no'}")


@dataclass(frozen=True)
class AuditPosition:
    """How far a device's audit log had got, from a verified heartbeat."""

    records: int
    head: str
    t_ms: int


class HeartbeatCheck:
    """Verifies one device's signed heartbeats and warns when the audit head goes back.

    :meth:`check` returns the heartbeat's fields and raises :class:`PayloadError` for a heartbeat that is unsigned,
    forged or malformed. It keeps the highest audit position seen (``seen``; pass one in to continue from an earlier
    run) and returns a warning in ``last_warning`` when a *signed* heartbeat reports fewer records than seen before
    (the log was rolled back or truncated, or an old heartbeat is replayed) or the same count with another head (a
    fork). Check the log itself with ``doorkeep audit verify --expect-head <seen.head>``.
    """

    def __init__(self, verify_key: bytes, *, seen: AuditPosition | None = None) -> None:
        self.verify_key = verify_key
        self.seen = seen
        self.last_warning = ""

    def check(self, payload: bytes) -> dict[str, object]:
        hb = verify_heartbeat(payload, self.verify_key)
        self.last_warning = ""
        records, head = hb.get("audit_records"), hb.get("audit_head")
        if not isinstance(records, int) or not isinstance(head, str):
            return hb
        pos = AuditPosition(records, head, int(hb["t"]))
        old = self.seen
        if old is not None and records < old.records:
            self.last_warning = (f"audit head went back: {records} records (head {head[:16]}…) after {old.records} "
                                 f"(head {old.head[:16]}…) were seen — rolled back, truncated or a replayed heartbeat")
        elif old is not None and records == old.records and head != old.head:
            self.last_warning = f"audit head changed without new records ({old.head[:16]}… → {head[:16]}…): a fork"
        else:
            self.seen = pos
        return hb


class EventWatcher:
    """Verifies every message on one device's event topic and prints it (table or JSON lines).

    Rejected messages (forged, tampered, unsigned, malformed) go to ``err`` with :data:`REJECT_MARK`, to ``out``
    as ``"verified": false`` in JSON mode, and are counted by reason.
    """

    def __init__(self, verify_key: bytes, *, out: TextIO, err: TextIO, as_json: bool = False) -> None:
        self.verify_key = verify_key
        self.device_id = device_id_for(verify_key)
        self.topic = Topics.hub_event_filter(self.device_id)
        self.out, self.err, self.as_json = out, err, as_json
        self.verified = 0
        self.duplicates = 0
        self.rejected: Counter[str] = Counter()
        self.heartbeats = HeartbeatCheck(verify_key)
        self.heartbeat_problems: Counter[str] = Counter()
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._client: MqttClient | None = None
        self._header_done = False

    def check(self, topic: str, payload: bytes) -> Verdict:
        """Verify one message and record/print the verdict."""
        try:
            ev = verify(payload, self.verify_key)
        except PayloadError as exc:
            v = Verdict(topic, len(payload), reason=getattr(exc, "reason", "invalid"), detail=str(exc))
        else:
            key = (ev.event_id, ev.phase)
            v = Verdict(topic, len(payload), event=ev, duplicate=key in self._seen)
            self._seen.add(key)
        with self._changed:
            if v.verified:
                self.verified += 1
                self.duplicates += v.duplicate
            else:
                self.rejected[v.reason] += 1
            self._print(v)
            self._changed.notify_all()
        return v

    def _print(self, v: Verdict) -> None:
        if not v.verified:
            self.err.write(f"{REJECT_MARK} ({printable(v.reason)}) on {v.topic}: {printable(v.detail)}\n")
            self.err.flush()
        if self.as_json:
            self.out.write(json.dumps(v.as_json(), sort_keys=True) + "\n")
        elif v.event is not None and not v.duplicate:
            if not self._header_done:
                self.out.write(TABLE_HEADER + "\n")
                self._header_done = True
            self.out.write(table_row(v.event) + "\n")
        self.out.flush()

    def check_heartbeat(self, topic: str, payload: bytes) -> None:
        """Verify a heartbeat; a forged/unsigned one or an audit head that goes back is flagged on ``err``."""
        try:
            self.heartbeats.check(payload)
        except PayloadError as exc:
            problem, text = f"heartbeat {getattr(exc, 'reason', 'invalid')}", str(exc)
        else:
            if not self.heartbeats.last_warning:
                return
            problem, text = "audit head went back", self.heartbeats.last_warning
        with self._changed:
            self.heartbeat_problems[problem] += 1
            self.err.write(f"{REJECT_MARK} ({problem}) on {topic}: {text}\n")
            self.err.flush()

    @property
    def total(self) -> int:
        return self.verified + sum(self.rejected.values())

    def connect(self, settings: MqttSection) -> None:
        """Subscribe through a fresh MQTT connection (client id ``doorkeep-hub-<random>``)."""
        self._client = MqttClient(settings, client_id="doorkeep-hub-" + secrets.token_hex(4))
        self._client.subscribe(self.topic, self.check, qos=1)
        self._client.subscribe(Topics(self.device_id).stats, self.check_heartbeat, qos=1)
        self._client.start()

    @property
    def last_error(self) -> str:
        """Why the latest attempt to reach the broker failed ("" when connected or not tried yet)."""
        return self._client.last_error if self._client is not None else ""

    def wait_subscribed(self, timeout: float) -> None:
        """Block until the subscription is acknowledged; raises PublishTimeout after ``timeout`` seconds."""
        assert self._client is not None, "connect() first"
        self._client.wait_subscribed(timeout)

    def wait(self, *, count: int = 0, seconds: float = 0.0, stop: threading.Event | None = None) -> None:
        """Block until ``count`` messages (0: no limit), ``seconds`` elapsed (0: no limit) or ``stop`` is set."""
        deadline = time.monotonic() + seconds if seconds > 0 else None
        with self._changed:
            while not (count and self.total >= count) and not (stop is not None and stop.is_set()):
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    break
                self._changed.wait(left)

    def close(self) -> None:
        if self._client is not None:
            self._client.stop()
            self._client = None

    def summary(self) -> str:
        rej = sum(self.rejected.values())
        text = f"summary: {self.verified} verified ({self.duplicates} duplicate), {rej} REJECTED"
        if rej:
            text += " (" + ", ".join(f"{r} {n}" for r, n in sorted(self.rejected.items())) + ")"
        if self.heartbeat_problems:
            text += "; heartbeat: " + ", ".join(f"{r} {n}" for r, n in sorted(self.heartbeat_problems.items()))
        return text

    @property
    def flagged(self) -> int:
        """Rejected events plus heartbeat problems (``doorkeep events`` exits 3 when non-zero)."""
        return sum(self.rejected.values()) + sum(self.heartbeat_problems.values())
