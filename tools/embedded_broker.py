"""The demo's MQTT side: an embedded broker (amqtt, MQTT 3.1.1 only) on loopback, the device's publisher, and a
hub subscriber that verifies and prints every signed event — so ``doorkeep demo`` needs no system service.

``doorkeep demo --broker HOST[:PORT]`` skips the embedded broker and uses a real one.

Example::

    bell = build_demo(config, args)                     # the demo's Doorbell
    mqtt = attach_demo_mqtt(bell, broker=args.broker)   # embedded broker unless --broker; prints verified events
    try:
        ...run the bell...
    finally:
        mqtt.close()
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, TextIO

from doorkeep.device.button import SoftwareButton
from doorkeep.device.config import MqttSection
from doorkeep.device.errors import PublishError
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.publisher import MqttPublisher

log = logging.getLogger(__name__)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """amqtt on ``host:port`` (loopback; a free port by default), run on an asyncio loop in a daemon thread.

    Raises:
        PublishError: amqtt is not installed (``pip install 'doorkeep[demo]'``) or the broker did not start.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        try:
            import amqtt.broker  # noqa: F401
        except ImportError:
            raise PublishError("the embedded demo broker needs amqtt: pip install 'doorkeep[demo]' "
                               "(or pass --broker HOST[:PORT])") from None
        self._thread = threading.Thread(target=self._main, name="doorkeep-embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise PublishError(f"embedded MQTT broker did not start on {self.url}: {self._error}")

    def _main(self) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": self.url}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }

        async def _start() -> None:
            self._broker = Broker(config)
            await self._broker.start()

        try:
            loop.run_until_complete(_start())
        except Exception as exc:  # noqa: BLE001  (reported to start() in the caller thread)
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Shut the broker down and end its thread (idempotent)."""
        loop, self._loop = self._loop, None
        if loop is None or self._broker is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop).result(timeout)
        except Exception:
            log.exception("embedded broker shutdown failed")
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)


class DemoMqtt:
    """The demo's MQTT pieces: broker (embedded unless given), the device publisher, a verifying subscriber."""

    def __init__(self, publisher: MqttPublisher, watcher: Any, broker: EmbeddedBroker | None, state_dir: Path,
                 ) -> None:
        self.publisher = publisher
        self.watcher = watcher
        self.broker = broker
        self._state_dir = state_dir
        #: The demo's doorbell button (``press()``); Enter on a terminal presses it.
        self.button = SoftwareButton(sinks=[publisher])

    @classmethod
    def start(cls, identity: DeviceIdentity, *, broker: str | None = None, out: TextIO = sys.stdout,
              device_name: str = "doorkeep demo", timeout: float = 10.0) -> DemoMqtt:
        """Start everything and wait until the subscriber listens and the publisher is connected.

        ``broker``: ``HOST[:PORT]`` of a real broker, or ``None`` for the embedded one. The demo's outbox lives in
        a temporary directory removed by :meth:`close`.
        """
        from doorkeep.tools.cmd_hub import parse_broker
        from doorkeep.tools.hub import EventWatcher

        embedded = None
        if broker:
            host, port = parse_broker(broker)
        else:
            embedded = EmbeddedBroker()
            embedded.start(timeout)
            host, port = embedded.host, embedded.port
        settings = MqttSection(host=host, port=port, reconnect_max_s=2, heartbeat_s=5)
        watcher = EventWatcher(identity.public_bytes, out=out, err=sys.stderr)
        state = Path(tempfile.mkdtemp(prefix="doorkeep-demo-mqtt-"))
        publisher = MqttPublisher(settings, identity, state_dir=state, device_name=device_name)
        try:
            watcher.connect(MqttSection(host=host, port=port, reconnect_max_s=2, discovery=False))
            watcher.wait_subscribed(timeout)
            publisher.start()
            publisher.client.wait_connected(timeout)
        except BaseException:
            cls(publisher, watcher, embedded, state).close()
            raise
        where = f"embedded broker {host}:{port}" if embedded else f"broker {host}:{port}"
        print(f"doorkeep demo: signed events from {identity.device_id} on {where}; "
              f"verifying with its public key {identity.public_bytes.hex()}", file=out, flush=True)
        return cls(publisher, watcher, embedded, state)

    def close(self) -> None:
        """Flush what can be flushed, stop the publisher, the subscriber and the broker (idempotent)."""
        if self.publisher.client.connected:
            self.publisher.drain(2.0)
        self.publisher.close()
        self.watcher.close()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        shutil.rmtree(self._state_dir, ignore_errors=True)


def attach_demo_mqtt(bell: Any, *, broker: str | None = None, identity: DeviceIdentity | None = None,
                     out: TextIO = sys.stdout) -> DemoMqtt:
    """Give a demo :class:`~doorkeep.device.app.Doorbell` its MQTT side, before ``bell.start()``.

    Starts the embedded broker (unless ``broker`` is ``HOST[:PORT]``), adds the signing publisher to the bell's
    event sinks with the bell's stats as its heartbeat, and prints every verified event (and loudly every rejected
    one). On a terminal, Enter rings the doorbell. ``identity``: default a fresh one for this run. Close the result
    after the bell stops.
    """
    demo = DemoMqtt.start(identity or DeviceIdentity.generate(), broker=broker, out=out)
    demo.publisher.heartbeat.stats = bell.stats.snapshot
    bell.loop.event_sinks.append(demo.publisher)
    if sys.stdin is not None and sys.stdin.isatty():
        print("doorkeep demo: press Enter to ring the doorbell", file=out, flush=True)
        threading.Thread(target=_ring_on_enter, args=(demo.button,), name="doorkeep-demo-button",
                         daemon=True).start()
    return demo


def _ring_on_enter(button: SoftwareButton) -> None:
    for _line in sys.stdin:
        button.press()
