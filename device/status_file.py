"""``<state_dir>/status.json``: what the running device is doing, for ``doorkeep status`` (no control socket).

The service rewrites this small file atomically (temporary file + rename) when something an operator asks about
changes — day/night mode, MQTT connected or lost, a person event, the outbox backlog — at most once every
``min_interval_s``, and at least every ``refresh_s`` so a reader can tell a live service from a hung one. It is
not fsynced: it describes only the running process (a power cut loses nothing that matters), and skipping the
fsync spares the SD card. Format (version 1, docs/formats.md "Device status file")::

    {"format": "doorkeep/status", "v": 1, "state": "running", "pid": 812, "device_id": "dk-…",
     "started_at": 1764600000.0, "updated_at": 1764600042.5, "uptime_s": 42.5, "mode": "day", "fps": 29.9,
     "mqtt": {"enabled": true, "host": "hub.local", "port": 1883, "connected": true, "backlog": 0},
     "last_event": {"kind": "person", "phase": "end", "t": 1764600040.1, "zone": "porch", "event_id": "…"}}

``state`` is ``running`` until the service stops cleanly (``stopped``); ``last_event`` is ``null`` until one.

Example (assemble() does this for every device)::

    status = StatusFile(state_dir / STATUS_FILE, snapshot=lambda: {...})
    status.start(); ...; status.on_event(event); ...; status.stop()
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import FormatError
from .events import Event
from .stats import Stats
from .worker import Worker

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
FORMAT = "doorkeep/status"
VERSION = 1
#: Keys that change on every write; a write is due on a change of anything else.
_VOLATILE = ("updated_at", "uptime_s", "fps")


class StatusFile(Worker):
    """Keeps ``path`` up to date from ``snapshot()`` (a dict of the live figures) plus the last event."""

    def __init__(self, path: str | os.PathLike[str], *, snapshot: Callable[[], dict[str, Any]], poll_s: float = 1.0,
                 min_interval_s: float = 2.0, refresh_s: float = 30.0, stats: Stats | None = None) -> None:
        super().__init__("status", stats=stats)
        self.path = Path(path)
        self.snapshot = snapshot
        self.poll_s = poll_s
        self.min_interval_s = min_interval_s
        self.refresh_s = refresh_s
        self.started_at = time.time()
        self.writes = 0
        self._last_event: dict[str, Any] | None = None
        self._poke = threading.Event()
        self._event_lock = threading.Lock()
        self._written: dict[str, Any] | None = None
        self._written_at = 0.0

    # ------------------------------------------------------------------------------------------------ inputs
    def on_event(self, event: Event) -> None:
        """An event sink: remember the newest event and write soon (on the events thread: no I/O here)."""
        with self._event_lock:
            self._last_event = {"kind": event.kind, "phase": event.phase, "t": round(time.time(), 3),
                                "zone": event.zone, "event_id": event.event_id}
        self._poke.set()

    def poke(self, *_: object) -> None:
        """Something changed (a mode switch, MQTT connected): write at the next chance."""
        self._poke.set()

    # ------------------------------------------------------------------------------------------------ the file
    def current(self, state: str = "running") -> dict[str, Any]:
        with self._event_lock:
            last = dict(self._last_event) if self._last_event else None
        now = time.time()
        return {"format": FORMAT, "v": VERSION, "state": state, "pid": os.getpid(), **self.snapshot(),
                "started_at": round(self.started_at, 3), "updated_at": round(now, 3),
                "uptime_s": round(now - self.started_at, 1), "last_event": last}

    def write(self, doc: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_bytes(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode() + b"\n")
        os.replace(tmp, self.path)  # readers see the old or the new file, never half of one
        self._written, self._written_at = doc, time.monotonic()
        self.writes += 1

    def _due(self, doc: dict[str, Any], now: float) -> bool:
        if self._written is None or now - self._written_at >= self.refresh_s:
            return True
        changed = any(doc.get(k) != self._written.get(k) for k in doc.keys() - set(_VOLATILE))
        return changed and now - self._written_at >= self.min_interval_s

    def _run(self) -> None:
        failing = False
        while not self.stopping:
            self._poke.wait(self.poll_s)
            if self.stopping:
                break
            self._poke.clear()
            try:
                doc = self.current()
                if self._due(doc, time.monotonic()):
                    self.write(doc)
                failing = False
            except OSError as exc:  # a full or read-only disk must not stop the device; say so once
                if not failing:
                    log.warning("cannot write %s: %s (doorkeep status will show stale figures)", self.path, exc)
                failing = True
            self.mark()

    def _wake(self) -> None:
        self._poke.set()

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop the thread, then leave ``state: stopped`` behind (the last mode and event stay readable)."""
        ended = super().stop(timeout)
        try:
            self.write(self.current("stopped"))
        except OSError as exc:
            log.warning("cannot write %s: %s", self.path, exc)
        return ended

    def close(self) -> None:
        self.stop()


def read_status(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The status file's contents, ``None`` when absent.

    Raises:
        FormatError: not a doorkeep status file of a version this code reads.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_bytes())
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{p}: not a status file ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("v") != VERSION:
        raise FormatError(f"{p}: not a doorkeep status file of version {VERSION}")
    return data
