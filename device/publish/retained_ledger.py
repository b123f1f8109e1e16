"""Every retained message this state directory left on the broker, so that none outlives its use (no phantom
Home Assistant devices).

A device leaves retained messages: its Home Assistant discovery config at ``<prefix>/device/<id>/config``,
``availability``, ``person`` and ``stats`` (:meth:`.topics.Topics.retained`). They outlive their use when the
owner changes ``mqtt.discovery_prefix`` or sets ``mqtt.discovery = false`` (a signed config may do either), or when
the identity changes (a factory reset whose broker was down, a state directory restored from a backup): Home
Assistant keeps showing the old device, its entities forever "unavailable". The ledger
(``<state_dir>/retained.json``) lists every such topic. On each connect, before announcing, every recorded topic
the device no longer uses gets an empty retained message (Home Assistant then deletes that device) and leaves the
ledger once the broker acknowledges it; then the topics in use are recorded.

Without a ledger (a device that announced before it existed) the history is unknown: discovery turned off then
clears the config under the current prefix once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from ..fileio import write_atomic
from .mqtt import MqttClient, PublishHandle
from .topics import Topics

log = logging.getLogger(__name__)

LEDGER_FILE = "retained.json"


class RetainedLedger:
    """The retained topics recorded in ``path`` (JSON ``{"v": 1, "topics": […]}``, 0600)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def topics(self) -> list[str] | None:
        """The recorded topics; ``None`` when there is no ledger yet. An unreadable ledger reads as empty (logged):
        the worst outcome is an old message left behind, never one removed that is in use."""
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return self._unreadable(exc)
        if not isinstance(doc, dict) or doc.get("v") != 1:
            return self._unreadable("unknown layout")
        topics = doc.get("topics")
        if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
            return self._unreadable("unknown layout")
        return list(topics)

    def _unreadable(self, why: object) -> list[str]:
        log.warning("retained-topic ledger %s unreadable (%s): old Home Assistant devices may linger", self.path, why)
        return []

    def record(self, topics: Iterable[str]) -> None:
        self._update(add=set(topics))

    def forget(self, topic: str) -> None:
        self._update(remove={topic})

    def _update(self, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        with self._lock:
            known = self.topics()
            new = (set(known or []) | set(add)) - set(remove)
            if known is None or new != set(known):
                write_atomic(self.path, json.dumps({"v": 1, "topics": sorted(new)}).encode(), mode=0o600)


def clear_stale(client: MqttClient, ledger: RetainedLedger, topics: Topics, *, discovery: bool) -> list[str]:
    """On connect, before announcing: an empty retained message on every recorded topic the device no longer uses
    (another identity's, another prefix's, the discovery config when discovery is off), each dropped from the ledger
    once acknowledged; then the topics in use are recorded (before they are published, so a crash in between still
    knows of them). Returns the topics cleared.

    Runs on the network thread: never blocks; a ledger that cannot be written (a full or read-only disk) is logged
    and the device goes on."""
    in_use = {t for t in topics.retained() if discovery or t != topics.discovery}
    try:
        known = ledger.topics()
        stale = set(known or []) - in_use
        if known is None and not discovery:
            stale.add(topics.discovery)
        for topic in sorted(stale):
            client.publish_raw(topic, b"", qos=1, retain=True).add_done_callback(_forget_when_acked(ledger))
        ledger.record(in_use)
    except OSError as exc:
        log.warning("retained-topic ledger %s not writable (%s): old Home Assistant devices may linger", ledger.path,
                    exc.strerror or exc)
        return []
    if stale:
        log.info("cleared %d retained message(s) this device no longer uses (old Home Assistant devices): %s",
                 len(stale), ", ".join(sorted(stale)))
    return sorted(stale)


def _forget_when_acked(ledger: RetainedLedger) -> Callable[[PublishHandle], None]:
    def done(handle: PublishHandle) -> None:
        if handle.refused:
            return
        try:
            ledger.forget(handle.topic)
        except OSError as exc:  # cleared on the broker all the same; the next connect clears it again (idempotent)
            log.warning("retained-topic ledger %s not writable: %s", ledger.path, exc.strerror or exc)

    return done
