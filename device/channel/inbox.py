"""The device's one inbound worker: owner commands, owner documents and footage requests, off the network thread.

paho calls :meth:`Inbox._on_message` on its network thread, which also sends every event; so that callback only
checks the size against the topic's bound and appends to a queue bounded in messages *and* bytes. Anything over a
bound is dropped and counted by the topic's handler (one audit record per interval). The worker thread
(``doorkeep-inbox``) handles the queue in order and ticks the handlers' counted audit records once a second.

Example::

    inbox = Inbox(client)
    inbox.route(topics.request_in, gate, max_bytes=SPEC["request_in"].max_bytes)
    inbox.route(topics.owner_cmd, owner_channel, max_bytes=SPEC["owner_cmd"].max_bytes)
    inbox.start()          # subscribes; the subscriptions are renewed after every reconnect
    ...
    inbox.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..publish.mqtt import MqttClient
from ..worker import Worker

log = logging.getLogger(__name__)


class Handler(Protocol):
    """What a routed topic's handler provides (RequestGate, OwnerChannel, the owner-document handler)."""

    def handle(self, payload: bytes) -> None: ...

    def refuse(self, reason: str) -> None: ...


@dataclass(frozen=True)
class _Route:
    topic: str
    handler: Handler
    max_bytes: int
    qos: int


class Inbox(Worker):
    """Bounded queue + one worker thread (``doorkeep-inbox``) for every inbound topic.

    Args:
        client: the device's MQTT client.
        max_items, max_bytes: queue bounds; beyond them a message is dropped and counted ``queue_full``.
        tickers: called once a second on the worker thread (the counted audit records' ``tick``).
    """

    def __init__(self, client: MqttClient, *, max_items: int = 1024, max_bytes: int = 8 << 20,
                 tickers: list[Callable[..., None]] | None = None) -> None:
        super().__init__("inbox")
        self.client = client
        self.max_items, self.max_bytes = max_items, max_bytes
        self.tickers = list(tickers or [])
        self._routes: dict[str, _Route] = {}
        self._q: deque[tuple[_Route, bytes]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._subscribed = False
        self.handled = 0
        self.dropped = 0

    def route(self, topic: str, handler: Handler, *, max_bytes: int, qos: int = 1) -> None:
        """Handle ``topic`` with ``handler`` (subscribed at :meth:`start`, or now if already started)."""
        self._routes[topic] = _Route(topic, handler, max_bytes, qos)
        if self._subscribed:
            self.client.subscribe(topic, self._on_message, qos=qos)

    def start(self) -> None:
        """Start the worker, then subscribe (renewed by the client after every reconnect)."""
        super().start()
        if not self._subscribed:
            self._subscribed = True
            for r in self._routes.values():
                self.client.subscribe(r.topic, self._on_message, qos=r.qos)

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Unsubscribe, finish the message being handled, drop the rest, write the counted records."""
        if self._subscribed:
            self._subscribed = False
            for topic in self._routes:
                self.client.unsubscribe(topic)
        ended = super().stop(timeout)
        with self._cond:
            self._q.clear()
            self._bytes = 0
        self._tick(force=True)
        return ended

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------------------------ network thread
    def _on_message(self, topic: str, payload: bytes) -> None:
        route = self._routes.get(topic)
        if route is None:
            return
        if len(payload) > route.max_bytes or not self._subscribed:
            route.handler.refuse("too_big")
            return
        with self._cond:
            if len(self._q) >= self.max_items or self._bytes + len(payload) > self.max_bytes:
                self.dropped += 1
                full = True
            else:
                self._q.append((route, payload))
                self._bytes += len(payload)
                self._cond.notify()
                full = False
        if full:
            route.handler.refuse("queue_full")

    # ------------------------------------------------------------------------------------- worker thread
    def _run(self) -> None:
        next_tick = time.monotonic() + 1.0
        while True:
            with self._cond:
                while not self._q and not self.stopping:
                    left = next_tick - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self.stopping:
                    return
                item = self._q.popleft() if self._q else None
                if item is not None:
                    self._bytes -= len(item[1])
            if item is not None:
                route, payload = item
                try:
                    route.handler.handle(payload)
                except Exception:  # one bad message must never stop the inbox
                    log.exception("handling a message on %s failed", route.topic)
                    route.handler.refuse("error")
                self.handled += 1
            self.mark()
            if time.monotonic() >= next_tick:
                self._tick()
                next_tick = time.monotonic() + 1.0

    def _tick(self, *, force: bool = False) -> None:
        for fn in self.tickers:
            try:
                fn(force=force)
            except Exception:
                log.exception("inbox ticker failed")

    @property
    def backlog(self) -> int:
        with self._cond:
            return len(self._q)
