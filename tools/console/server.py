"""The console process: owner session + verified live feed + web app, served by uvicorn on a pre-bound socket.

Binding the socket first lets ``port=0`` pick a free port and lets the app know its own ``host:port`` before it
answers (the Host check). uvicorn runs on its own thread (``doorkeep-console-http``) for the demo and tests, or in
the foreground for ``doorkeep console``.

Example::

    with ConsoleService(settings, key_path=key, device_id=dev.device_id, device_key=dev.key) as svc:
        print(svc.url)
        svc.wait()
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self

from doorkeep.device.config import MqttSection
from doorkeep.device.errors import DoorkeepError

from .feed import MqttFeed
from .link import DeviceLink
from .media import ClipMedia
from .session import OwnerSession
from .timeline import LiveState
from .web import Console, allowed_hosts, build_app

log = logging.getLogger(__name__)

DEFAULT_PORT = 8140


class ConsoleTimeout(DoorkeepError, TimeoutError):
    """The console's web server did not start serving in time."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(64)
    sock.set_inheritable(True)
    return sock


class ConsoleService:
    """One console for one paired device.

    Args:
        settings: the owner's MQTT broker.
        key_path: the owner's secret key file (unlocked in the browser).
        device_id, device_key: the paired device.
        device_name: shown in the header.
        host, port: where to listen (default loopback, port 8140; 0 = any free port).
        idle_s: lock after this long without a request.
        book: the owner's device book path (counters for signed configuration documents).
    """

    def __init__(self, settings: MqttSection, *, key_path: Path, device_id: str, device_key: bytes,
                 device_name: str = "doorbell", host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 idle_s: float = 600.0, book: Path | None = None) -> None:
        self.settings = settings
        self.session = OwnerSession(key_path, idle_s=idle_s)
        self.state = LiveState(device_id)
        heads = Path(book).parent / f"console-heads-{device_id}.json" if book is not None else None
        self.feed = MqttFeed(settings, device_key=device_key, state=self.state, heads=heads)
        self.link = DeviceLink(settings, device_key=device_key, state=self.state,
                               seen=lambda: self.feed.heartbeats.seen)
        self.media = ClipMedia(fetch=self.link.fetch_clip, keys=self.session.owner_keys,
                               snapshot=lambda clip_id: self.link.require().fetch_snapshot(clip_id).jpeg)
        self.actions = ThreadPoolExecutor(max_workers=1, thread_name_prefix="doorkeep-console-action")
        self.session.on_unlock(self.link.open)
        self.session.on_lock(self.link.close)
        self.session.on_lock(self.media.wipe)
        self.console = Console(self.session, self.state, device_key, device_name=device_name,
                               broker=f"{settings.host}:{settings.port}", link=self.link, media=self.media,
                               actions=self.actions, extras={"book": book})
        self.host = host
        self.sock = bind(host, port)
        self.port = int(self.sock.getsockname()[1])
        self.app = build_app(self.console, hosts=allowed_hosts(host, self.port))
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def _uvicorn(self) -> Any:
        import uvicorn

        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        return self._server

    def _start_parts(self) -> None:
        self.session.start()
        self.feed.start()
        self.link.start()

    def start(self) -> None:
        """Connect to the broker and serve on a background thread."""
        self._start_parts()
        server = self._uvicorn()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self.sock]},
                                        name="doorkeep-console-http", daemon=True)
        self._thread.start()

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until uvicorn accepts connections."""
        import time

        deadline = time.monotonic() + timeout
        while not (self._server is not None and self._server.started):
            if time.monotonic() > deadline:
                raise ConsoleTimeout(f"console not serving within {timeout} s")
            time.sleep(0.02)

    def serve_forever(self) -> None:
        """Connect and serve in the foreground until SIGINT/SIGTERM (uvicorn handles the signals)."""
        self._start_parts()
        try:
            self._uvicorn().run(sockets=[self.sock])
        finally:
            self.close()

    def close(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.session.close()  # locks: the owner channel closes, decrypted media is wiped
        self.link.stop()
        self.actions.shutdown(wait=False, cancel_futures=True)
        self.media.close()
        self.feed.close()
        self.sock.close()

    def __enter__(self) -> Self:
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
