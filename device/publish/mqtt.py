"""The one module that owns the paho-mqtt client (paho-mqtt 2, ``CallbackAPIVersion.VERSION2``).

Everything doorkeep sends or receives over MQTT goes through :class:`MqttClient`: the publisher's outbox, the
discovery announcer and heartbeat, the vault's chunked export and provisioning's pairing (``publish_raw`` and
``subscribe``).

- Connection: host/port, TLS (CA, client certificate and key), username/password (or a password file), client id
  (default: the device id), keepalive, MQTT 3.1.1 by default or 5, reconnect with exponential backoff (paho's
  loop thread keeps retrying, also when the broker is down at start).
- Availability: last will ``offline`` (retained, QoS1) on the availability topic; ``online`` (retained) after each
  successful connect; ``offline`` published on a clean ``stop()`` (a clean disconnect does not fire the will).
- A refused connect (CONNACK reason code ≠ 0) does not mark the client connected.
- The operator hears about the link once per change, on the activity stream (:mod:`doorkeep.device.activity`):
  ``cannot connect to HOST:PORT: reason, retrying in N s`` once per failure streak (a refused CONNACK included),
  ``MQTT connection to HOST:PORT lost: reason`` when an established link drops, and ``MQTT connected to
  HOST:PORT`` (with how many attempts and how long it took) when it comes back — never a line per retry.

Example::

    client = MqttClient(cfg.mqtt, client_id=identity.device_id, availability_topic=topics.availability)
    client.start()
    client.wait_connected(5)
    client.publish_raw(topics.pairing("hello"), b"...", qos=1).wait(5)
    client.stop()
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from ..activity import log as activity
from ..config import MqttSection
from ..errors import InvalidArgument, PublishError
from .topics import OFFLINE, ONLINE

log = logging.getLogger(__name__)

MessageCallback = Callable[[str, bytes], object]  # called as callback(topic, payload); its return value is ignored
_FAILURE = 0x80  # MQTT 5 reason codes >= 0x80 are failures (3.1.1 CONNACK: anything non-zero)


class PublishTimeout(PublishError, TimeoutError):
    """A publish was not acknowledged within the wait."""


class PublishRefused(PublishError):
    """The broker refused a publish (MQTT 5 PUBACK reason code >= 0x80, e.g. "Not authorized"); not an OSError."""


class PublishHandle:
    """One outgoing message. ``done()`` once acknowledged (PUBACK for QoS1) or refused; ``wait()`` blocks."""

    def __init__(self, topic: str, mid: int) -> None:
        self.topic = topic
        self.mid = mid
        self.reason: ReasonCode | None = None
        self._done = threading.Event()
        self._callbacks: list[Callable[[PublishHandle], None]] = []
        self._lock = threading.Lock()

    @property
    def refused(self) -> bool:
        """True when the broker answered with a failure reason code (MQTT 5 only)."""
        return self.reason is not None and int(self.reason.value) >= _FAILURE

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until acknowledged.

        Raises:
            PublishTimeout: not acknowledged within ``timeout`` seconds (it may still be delivered later).
            PublishRefused: the broker refused it.
        """
        if not self._done.wait(timeout):
            raise PublishTimeout(f"publish to {self.topic!r} (mid {self.mid}) not acknowledged within {timeout} s")
        if self.refused:
            raise PublishRefused(f"broker refused publish to {self.topic!r}: {self.reason}")

    def add_done_callback(self, fn: Callable[[PublishHandle], None]) -> None:
        """Call ``fn(handle)`` once done (immediately if already done). Runs on the network thread: keep it short."""
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(fn)
                return
        fn(self)

    def _settle(self, reason: ReasonCode | None) -> None:
        with self._lock:
            self.reason = reason
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:
                log.exception("publish done-callback failed for %s", self.topic)


def stop_loop(client: paho.Client) -> None:
    """``client.loop_stop()`` without paho's race: after ``disconnect()`` its network thread may end and clear
    ``client._thread`` between loop_stop's check and its ``join()`` (``AttributeError: 'NoneType' … 'join'``)."""
    try:
        client.loop_stop()
    except AttributeError:
        pass  # the thread has already ended, which is all loop_stop waits for


def _read_password(settings: MqttSection) -> str | None:
    if settings.password_file:
        try:
            return Path(settings.password_file).expanduser().read_text().strip()
        except OSError as exc:
            raise PublishError(f"mqtt.password_file {settings.password_file!r}: {exc.strerror}") from None
    return settings.password or None


class ConnectionLog:
    """What the operator is told about one connection: a line per change, never per retry (see the module doc).

    It mirrors paho's reconnect backoff (``reconnect_delay_set``: ``min_s`` after a loss or the first failure,
    doubling per failed attempt up to ``max_s``, reset by a successful CONNACK) so a line can say when the next
    attempt comes. Attributes: ``failures`` in the current streak, ``last_error`` (reason of the latest failure,
    "" once connected), ``connected``.
    """

    def __init__(self, where: str, *, min_s: float, max_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.where, self.min_s, self.max_s, self.clock = where, min_s, max_s, clock
        self.failures = 0
        self.last_error = ""
        self.connected = False
        self._delay: float | None = None
        self._since: float | None = None
        self._ever = False

    def failed(self, reason: str) -> None:
        """A connect attempt failed (no TCP/TLS connection, or a refused CONNACK)."""
        self._delay = self.min_s if self._delay is None else min(self._delay * 2, self.max_s)
        self.last_error = reason
        self.failures += 1
        if self.failures == 1:
            self._since = self._since if self._since is not None else self.clock()
            activity.warning("cannot connect to %s: %s, retrying in %s s", self.where, reason, _secs(self._delay))

    def lost(self, reason: str) -> None:
        """An established connection dropped; paho waits ``min_s`` before its first reconnect."""
        self.connected = False
        self._delay, self._since, self.failures = self.min_s, self.clock(), 0
        self.last_error = reason
        activity.warning("MQTT connection to %s lost: %s; reconnecting in %s s", self.where, reason,
                         _secs(self.min_s))

    def up(self) -> None:
        """Connected (CONNACK accepted)."""
        if self._since is not None and self._ever:
            activity.info("MQTT connected to %s again after %s s (%d failed attempts)", self.where,
                          _secs(self.clock() - self._since), self.failures)
        elif self.failures:
            activity.info("MQTT connected to %s after %d failed attempts", self.where, self.failures)
        else:
            activity.info("MQTT connected to %s", self.where)
        self.connected, self._ever = True, True
        self.failures, self.last_error, self._delay, self._since = 0, "", None, None


def _secs(s: float) -> str:
    return f"{s:.0f}" if s >= 10 or s == int(s) else f"{s:.1f}"


def _reason(exc: BaseException | None) -> str:
    """An exception as the short reason an operator reads (``Connection refused``, ``Name or service not known``)."""
    if exc is None:
        return "connection failed"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class MqttClient:
    """The device's MQTT connection.

    Args:
        settings: the ``[mqtt]`` config section.
        client_id: MQTT client id (``settings.client_id`` wins when set); normally the device id.
        availability_topic: where ``online``/``offline`` (and the last will) go; ``None`` for a hub-side client.

    Raises:
        PublishError: unreadable TLS or password files.
    """

    def __init__(self, settings: MqttSection, *, client_id: str, availability_topic: str | None = None) -> None:
        self.settings = settings
        self.availability_topic = availability_topic
        self._lock = threading.Lock()
        self._pending: dict[int, PublishHandle] = {}
        self._early: dict[int, ReasonCode] = {}
        self._subs: dict[str, tuple[int, MessageCallback]] = {}
        self._connect_listeners: list[Callable[[], None]] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._suback_pending: set[int] = set()
        self._started = False
        self.link = ConnectionLog(f"{settings.host}:{settings.port}", min_s=settings.reconnect_min_s,
                                  max_s=max(settings.reconnect_min_s, settings.reconnect_max_s))
        protocol = paho.MQTTv5 if settings.protocol == "5" else paho.MQTTv311
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=settings.client_id or client_id,
                                   protocol=protocol)
        self._configure(settings)

    def _configure(self, s: MqttSection) -> None:
        c = self._client
        if s.tls or s.ca:
            for what, path in (("ca", s.ca), ("cert", s.cert), ("key", s.key)):
                if path and not Path(path).expanduser().is_file():
                    raise PublishError(f"mqtt.{what} {path!r}: no such file")
            c.tls_set(ca_certs=str(Path(s.ca).expanduser()) if s.ca else None,
                      certfile=str(Path(s.cert).expanduser()) if s.cert else None,
                      keyfile=str(Path(s.key).expanduser()) if s.key else None,
                      cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if s.username:
            c.username_pw_set(s.username, _read_password(s))
        if self.availability_topic:
            c.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        c.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=max(s.reconnect_min_s, s.reconnect_max_s))
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe

    # ------------------------------------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def last_error(self) -> str:
        """Why the latest connect attempt failed ("" while connected or before the first attempt)."""
        return self.link.last_error

    def start(self) -> None:
        """Connect in the background; paho's loop thread keeps reconnecting with backoff."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive)
        self._client.loop_start()

    def wait_connected(self, timeout: float | None = None) -> None:
        """Block until connected. Raises PublishTimeout if not connected within ``timeout`` seconds (the message
        carries the latest connect failure's reason)."""
        if not self._connected.wait(timeout):
            why = f" ({self.last_error})" if self.last_error else ""
            raise PublishTimeout(f"not connected to {self.settings.host}:{self.settings.port} within {timeout:g} s"
                                 f"{why}")

    def wait_subscribed(self, timeout: float | None = None) -> None:
        """Block until connected and every subscription made so far is acknowledged (SUBACK).

        Raises PublishTimeout after ``timeout`` seconds.
        """
        if not self._subscribed.wait(timeout):
            raise PublishTimeout(f"subscriptions not acknowledged by {self.settings.host}:{self.settings.port} "
                                 f"within {timeout} s")

    def stop(self, *, timeout: float = 2.0) -> None:
        """Publish ``offline`` (if connected), disconnect cleanly and stop the loop thread. Idempotent."""
        with self._lock:
            if not self._started:
                return
            self._started = False
        if self.availability_topic and self.connected:
            try:
                self.publish_raw(self.availability_topic, OFFLINE, qos=1, retain=True).wait(timeout)
            except PublishError:
                log.warning("could not publish offline before disconnecting")
        self._connected.clear()
        self._client.disconnect()
        stop_loop(self._client)

    def add_connect_listener(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after every successful (re)connect, on the network thread (don't block in it)."""
        self._connect_listeners.append(fn)
        if self.connected:
            fn()

    # ------------------------------------------------------------------------------------------ messages

    def publish_raw(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> PublishHandle:
        """Queue one message; returns a handle (``wait(timeout)``, ``done()``).

        Works while disconnected: paho keeps the message and sends it after reconnecting (in memory only — the
        durable outbox is for events).
        """
        if qos not in (0, 1, 2):
            raise InvalidArgument(f"qos must be 0, 1 or 2, got {qos!r}")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise PublishError(f"publish to {topic!r} failed: {paho.error_string(info.rc)}")
        handle = PublishHandle(topic, info.mid)
        with self._lock:  # paho calls on_publish for every QoS (QoS0: once written to the socket)
            early = self._early.pop(info.mid, None)
            if early is None:
                self._pending[info.mid] = handle
        if early is not None:
            handle._settle(early)
        return handle

    def subscribe(self, topic_filter: str, callback: MessageCallback, *, qos: int = 1) -> None:
        """Deliver messages matching ``topic_filter`` to ``callback(topic, payload)`` (network thread).

        The subscription is renewed after every reconnect.
        """
        with self._lock:
            self._subs[topic_filter] = (qos, callback)
        if self.connected:
            self._subscribe([(topic_filter, qos)])

    def _subscribe(self, subs: list[tuple[str, int]]) -> None:
        with self._lock:
            self._subscribed.clear()
            for topic, qos in subs:
                rc, mid = self._client.subscribe(topic, qos=qos)
                if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                    self._suback_pending.add(mid)
            if not self._suback_pending:
                self._subscribed.set()

    def unsubscribe(self, topic_filter: str) -> None:
        with self._lock:
            self._subs.pop(topic_filter, None)
        if self.connected:
            self._client.unsubscribe(topic_filter)

    # ------------------------------------------------------------------------------------------ paho callbacks

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason_code: ReasonCode,
                    _properties: Any) -> None:
        if int(reason_code.value) != 0:
            self.link.failed(f"the broker refused the connection ({reason_code})")
            return
        self.link.up()
        self._connected.set()
        if self.availability_topic:
            self.publish_raw(self.availability_topic, ONLINE, qos=1, retain=True)
        with self._lock:
            subs = [(t, q) for t, (q, _cb) in self._subs.items()]
            self._suback_pending.clear()
        self._subscribe(subs)
        for fn in list(self._connect_listeners):
            try:
                fn()
            except Exception:
                log.exception("MQTT connect listener failed")

    def _on_connect_fail(self, _client: paho.Client, _userdata: Any) -> None:
        # paho calls this inside its ``except OSError`` around the connect attempt: the exception is the reason
        self.link.failed(_reason(sys.exc_info()[1]))

    def _on_disconnect(self, _client: paho.Client, _userdata: Any, _flags: Any, reason_code: ReasonCode,
                       _properties: Any) -> None:
        if self._connected.is_set():
            self.link.lost(str(reason_code))
        self._connected.clear()
        self._subscribed.clear()

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, mid: int, reason_codes: list[ReasonCode],
                      _properties: Any) -> None:
        for rc in reason_codes:
            if int(rc.value) >= _FAILURE:
                log.error("MQTT broker refused a subscription: %s", rc)
        with self._lock:
            self._suback_pending.discard(mid)
            if not self._suback_pending:
                self._subscribed.set()

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason_code: ReasonCode,
                    _properties: Any) -> None:
        with self._lock:
            handle = self._pending.pop(mid, None)
            if handle is None:
                self._early[mid] = reason_code  # acknowledged before publish_raw registered the handle
        if handle is not None:
            handle._settle(reason_code)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            matches = [cb for f, (_q, cb) in self._subs.items() if paho.topic_matches_sub(f, msg.topic)]
        for cb in matches:
            try:
                cb(msg.topic, bytes(msg.payload))
            except Exception:
                log.exception("MQTT message handler for %s failed", msg.topic)
