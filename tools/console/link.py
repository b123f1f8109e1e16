"""The console's owner channel to the device (tools/owner_link.py's ``OwnerLink``), open only while unlocked.

``OwnerLink`` signs every command with the owner key, so it exists only between unlock and lock: ``open(keys)``
connects it in the background (thread ``doorkeep-console-link``), ``close()`` drops it. Pages ask for it with
:meth:`DeviceLink.require`, which waits briefly for the connection and otherwise raises :class:`NotConnected`
with a sentence for the owner. The clip list it fetches is folded into the timeline (:meth:`refresh_clips`):
each visit gets the clip whose device-signed listing names its event, and clips recorded while the console was
not running become visits too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from doorkeep.device.config import MqttSection
from doorkeep.device.errors import DoorkeepError
from doorkeep.device.publish.payload import payload_event_id
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.device.worker import Worker

from .timeline import LiveState, Visit

log = logging.getLogger(__name__)


class NotConnected(DoorkeepError):
    """The owner channel is not up (the console is locked, or the broker/device cannot be reached)."""


def _owner_link_class() -> Any:
    from doorkeep.tools.owner_link import OwnerLink

    return OwnerLink


class DeviceLink:
    """Holds the ``OwnerLink`` of the unlocked session.

    Args:
        settings: the owner's broker.
        device_key: the paired device's public key.
        state: the timeline the clip list is folded into.
        factory: builds the link (``OwnerLink``); tests may pass a subclass.
        seen: the furthest audit position seen in a signed heartbeat (the feed's, kept between runs).
    """

    def __init__(self, settings: MqttSection, *, device_key: bytes, state: LiveState,
                 factory: Callable[..., Any] | None = None, seen: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.device_key = device_key
        self.state = state
        self._factory = factory
        self._seen = seen
        self._lock = threading.Lock()
        self._link: Any = None
        self._ready = threading.Event()
        self.error = ""
        self.clips: dict[str, Any] = {}
        self.refresher = _ClipRefresher(self)
        state.subscribe(self._on_change)

    def start(self) -> None:
        self.refresher.start()

    def stop(self) -> None:
        self.refresher.stop()
        self.close()

    def _on_change(self, kind: str, key: str) -> None:
        """A visit that ended with a clip (a person gone, or a doorbell press: it has no end): its clip closes after
        the post-roll; list clips again then."""
        if kind == "visit":
            v = self.state.visit(key)
            if v is not None and v.clip and v.clip_id is None and (v.t_end is not None or v.kind == "doorbell"):
                self.refresher.poke()

    def open(self, keys: SecretKeys) -> None:
        """Connect a new link signed by ``keys`` in the background (the previous one is closed)."""
        self.close()
        factory = self._factory or _owner_link_class()
        link = factory(self.settings, owner=keys, device_key=self.device_key)
        if self._seen is not None and self._seen() is not None:
            link.heartbeats.seen = self._seen()  # the furthest audit head ever seen, even before this run
        with self._lock:
            self._link = link
            self._ready.clear()
            self.error = ""
        threading.Thread(target=self._connect, args=(link,), name="doorkeep-console-link", daemon=True).start()

    def _connect(self, link: Any) -> None:
        try:
            link.start()
        except DoorkeepError as exc:
            self.error = str(exc)
            log.warning("console: owner channel not connected: %s", exc)
            return
        with self._lock:
            if self._link is not link:  # locked (or re-unlocked) while connecting
                link.close()
                return
            self._ready.set()
        self.refresher.poke(0.0)

    def close(self, _reason: str = "") -> None:
        with self._lock:
            link, self._link = self._link, None
            self._ready.clear()
            self.clips = {}
        if link is not None:
            link.close()

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def require(self, timeout: float = 10.0) -> Any:
        """The connected link, waiting up to ``timeout`` s for it.

        Raises:
            NotConnected: locked, or the device's broker cannot be reached (the message says which).
        """
        with self._lock:
            link = self._link
        if link is None:
            raise NotConnected("the console is locked")
        if not self._ready.wait(timeout):
            raise NotConnected(f"cannot reach the device over the broker {self.settings.host}:{self.settings.port}"
                               + (f": {self.error}" if self.error else ""))
        return link

    def fetch_clip(self) -> Any:
        """``OwnerLink.fetch_clip`` of the live link (for the clip fetcher), or None when locked."""
        try:
            return self.require(timeout=10.0).fetch_clip
        except NotConnected:
            return None

    def refresh_clips(self) -> list[Any]:
        """Fetch the device's signed clip list and fold it into the timeline; returns it (oldest first)."""
        clips: list[Any] = self.require().list_clips()
        self.clips = {c.clip_id: c for c in clips}
        for c in clips:
            self._fold(c)
        return clips

    def _fold(self, c: Any) -> None:
        linked = False
        for raw in c.event_ids:
            eid = payload_event_id(raw)
            if self.state.visit(eid) is not None:
                self.state.attach_clip(eid, c.clip_id)
                linked = True
        if not linked and c.t_start is not None:
            eid = payload_event_id(c.event_ids[0]) if c.event_ids else c.clip_id
            self.state.add_visit(Visit(eid, "person", c.t_start, c.t_end, 0.0, None, True, clip_id=c.clip_id,
                                       seen_at=time.time()))


class _ClipRefresher(Worker):
    """Lists the device's clips while unlocked: at unlock, a few seconds after a visit with a clip ends (the clip
    closes after its post-roll), and every :attr:`every_s` seconds."""

    every_s = 60.0
    #: After a visit ends: its clip closes after the post-roll (default 5 s).
    after_s = (6.0, 15.0)

    def __init__(self, link: DeviceLink) -> None:
        super().__init__("console-clips")
        self.link = link
        self._due: list[float] = []
        self._lock = threading.Lock()
        self._wakeup = threading.Event()

    def poke(self, delay: float | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            self._due += [now + d for d in ((delay,) if delay is not None else self.after_s)]
        self._wake()

    def _wake(self) -> None:
        self._wakeup.set()

    def _run(self) -> None:
        last = time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            with self._lock:
                due = [t for t in self._due if t <= now]
                self._due = [t for t in self._due if t > now]
                nxt = min(self._due, default=last + self.every_s)
            if (due or now - last >= self.every_s) and self.link.connected:
                last = now
                try:
                    self.link.refresh_clips()
                except DoorkeepError as exc:
                    log.warning("console: could not list the device's clips: %s", exc)
            self._wakeup.wait(max(0.05, min(nxt - time.monotonic(), self.every_s)))
            self._wakeup.clear()
