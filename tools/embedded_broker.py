"""The demo's embedded MQTT broker: amqtt (MQTT 3.1.1 only) on loopback, in a background thread, so
``doorkeep demo`` needs no system service (tools/demo.py; ``--broker HOST[:PORT]`` uses a real one instead).

Example::

    broker = EmbeddedBroker()          # 127.0.0.1, a free port
    broker.start()
    ...connect to broker.host, broker.port...
    broker.stop()
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

from doorkeep.device.errors import PublishError

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
