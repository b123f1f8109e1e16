"""systemd service notification (``sd_notify``) without a dependency: one datagram to ``$NOTIFY_SOCKET``.

Under ``Type=notify`` systemd waits for ``READY=1`` before it considers doorkeep started, and with ``WatchdogSec=``
it restarts the service unless ``WATCHDOG=1`` arrives at least once per period. Outside systemd (no
``$NOTIFY_SOCKET``) every call is a cheap no-op, so the runtime calls these unconditionally.

In doorkeep the :class:`~doorkeep.device.supervisor.Supervisor` pings the watchdog, and only while every worker
thread is alive and capture advances, so a dead outbox, heartbeat, clip writer or camera stops the pings.

Example::

    notifier = Notifier.from_env()
    notifier.ready("capturing")
    while healthy():
        ...
        notifier.watchdog()   # rate-limited to half the watchdog period
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends sd_notify messages to one socket; :meth:`watchdog` is rate-limited so it is safe per frame."""

    def __init__(self, address: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = address
        # systemd asks for pings at least every WATCHDOG_USEC; we ping twice per period.
        self.watchdog_interval_s = (watchdog_usec / 2e6) if watchdog_usec else None
        self._last_ping = float("-inf")

    @classmethod
    def from_env(cls) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET`` and ``$WATCHDOG_USEC`` (honouring ``$WATCHDOG_PID``)."""
        addr = os.environ.get("NOTIFY_SOCKET") or None
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        watchdog = int(usec) if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(addr, watchdog_usec=watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram. Returns False when not under systemd or the send failed."""
        if not self.address:
            return False
        addr = self.address
        if addr.startswith("@"):  # abstract namespace socket
            addr = "\0" + addr[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), addr)
        except OSError:
            return False  # systemd going away must never stop capture
        return True

    def ready(self, status: str = "") -> bool:
        """Tell systemd the service is up (``READY=1``), optionally with a status line."""
        return self.notify("READY=1", *( [f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def watchdog(self, *, now: float | None = None) -> bool:
        """Ping the watchdog (``WATCHDOG=1``) if half the period has passed since the last ping."""
        if not self.address:
            return False
        t = time.monotonic() if now is None else now
        if self.watchdog_interval_s is not None and t - self._last_ping < self.watchdog_interval_s:
            return False
        self._last_ping = t
        return self.notify("WATCHDOG=1")


_default: Notifier | None = None


def _notifier() -> Notifier:
    global _default
    if _default is None:
        _default = Notifier.from_env()
    return _default


def notify_ready(status: str = "") -> bool:
    """``READY=1`` to the process's ``$NOTIFY_SOCKET`` (no-op outside systemd)."""
    return _notifier().ready(status)


def notify_watchdog() -> bool:
    """``WATCHDOG=1`` (rate-limited to half of ``$WATCHDOG_USEC``; no-op outside systemd). Call it only while the
    whole service is healthy (doorkeep's supervisor does)."""
    return _notifier().watchdog()
