"""A throwaway mosquitto on loopback: the test fixtures (tests/fixtures_broker.py) and ``doorkeep bench`` use it.

mosquitto started as root drops to user ``mosquitto``: every file it reads lives in a 0755 temp dir with 0644
files, and its log is world-writable. Stopping sends SIGTERM (resent: one sent right after start can be ignored),
then SIGKILL.

Example::

    with LocalMosquitto() as broker:
        print(broker.url)            # 127.0.0.1:PORT
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Self

from doorkeep.device.errors import PublishError

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto")


class BrokerError(PublishError):
    """mosquitto is not installed, exited, or did not accept connections in time."""


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    for p in MOSQUITTO_CANDIDATES:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("mosquitto")


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (bind to 0, read, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def private_dir(prefix: str) -> Path:
    """A temp dir mosquitto (after dropping root) can read: 0755 under /tmp."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


class LocalMosquitto:
    """One real mosquitto process on 127.0.0.1:``port``; stop/start/restart keep the port.

    Args:
        binary: mosquitto's path (default: found on the system; BrokerError if absent).
        tls: mutual TLS — an object with ``ca`` and ``server.cert``/``server.key`` paths (the fixtures'
            ``CertAuthority``); clients must present a certificate, whose CN becomes their username.
        acl: ACL file text (``pattern`` rules may use ``%u``).
        extra_conf: appended to the generated config.
        persistent: keep sessions, subscriptions and queued QoS1 messages across ``restart()``.
    """

    def __init__(self, *, binary: str | None = None, tls: Any = None, acl: str | None = None, extra_conf: str = "",
                 persistent: bool = False) -> None:
        found = binary or find_mosquitto()
        if not found:
            raise BrokerError("mosquitto not found; install it with: apt-get install -y mosquitto")
        self.binary = found
        self.host = "127.0.0.1"
        self.port = free_port()
        self.dir = private_dir("dk-mosq-")
        self.certs = tls
        self.log = self.dir / "mosquitto.log"
        self.log.touch()
        self.log.chmod(0o666)
        if persistent:  # sessions, subscriptions and queued QoS1 messages survive a restart (saved every second)
            data = self.dir / "data"
            data.mkdir()
            data.chmod(0o777)
            persistence = ["persistence true", f"persistence_location {data}/", "autosave_interval 1"]
        else:
            persistence = ["persistence false"]
        lines = [f"listener {self.port} {self.host}", *persistence, f"log_dest file {self.log}",
                 "log_type error", "log_type warning", "log_type notice", "log_type information",
                 "max_queued_messages 100000"]
        if tls is None:
            lines.append("allow_anonymous true")
        else:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server.cert}", f"keyfile {tls.server.key}",
                      "require_certificate true", "use_identity_as_username true", "tls_version tlsv1.2"]
        if acl is not None:
            acl_file = self.dir / "acl"
            acl_file.write_text(acl)
            acl_file.chmod(0o644)
            lines.append(f"acl_file {acl_file}")
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n" + extra_conf)
        self.conf.chmod(0o644)
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        """``host:port`` as the CLI's ``--broker`` takes it."""
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        """Start (or start again, on the same port) and wait until the port accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {err}\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.01)
        self.kill()
        raise BrokerError(f"mosquitto did not accept connections on {self.url} within 10 s\n{self.log_text()}")

    def stop(self) -> None:
        """Graceful stop: SIGTERM (resent — one sent right after start can be ignored), then SIGKILL."""
        p = self.proc
        if p is None or p.poll() is not None:
            self.proc = None
            return
        for _ in range(3):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            p.kill()
            p.wait(timeout=5.0)
        self._close(p)

    def kill(self) -> None:
        """Abrupt stop (SIGKILL), like pulling the broker's power."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(timeout=5.0)
        if p is not None:
            self._close(p)

    def _close(self, p: subprocess.Popen[bytes]) -> None:
        if p.stderr:
            p.stderr.close()
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port (retained state and sessions survive only if ``persistent``)."""
        self.stop()
        self.start()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
