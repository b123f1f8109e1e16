"""Fixtures for a real mosquitto broker on loopback (owned by [mqtt]; other areas use them too).

Every test that talks MQTT gets a REAL ``/usr/sbin/mosquitto`` on a free 127.0.0.1 port, configured from a private
temp dir. Fixtures:

- ``mosquitto`` — a fresh plain broker per test (anonymous, no persistence). Attributes: ``host``, ``port``,
  ``url`` (``"127.0.0.1:PORT"``), ``log_text()``; methods ``stop()``, ``start()``, ``restart()`` (same port,
  for outage tests), ``kill()`` (SIGKILL, like a power cut).
- ``Mosquitto(persistent=True)`` — sessions and queued messages survive ``restart()`` (outage tests).
- ``mosquitto_module`` — one plain broker shared by a test module (use it only where broker state does not
  matter: distinct topics per test, no retained leftovers relied upon).
- ``mosquitto_tls`` — a broker with mutual TLS only (``require_certificate true``, ``use_identity_as_username
  true``) and an ACL: a client whose certificate CN is a device id may only use ``doorkeep/<CN>/#``, its Home
  Assistant discovery topic ``homeassistant/device/<CN>/config`` and read ``homeassistant/status``; CN ``hub``
  reads everything under ``doorkeep/#`` and ``homeassistant/#`` and may write ``homeassistant/status`` and
  ``doorkeep/+/recipient/#``/``doorkeep/+/pair/#`` (hub-side replies). ``mosquitto_tls.certs`` is a
  :class:`CertAuthority`: ``.ca`` (CA cert path) and ``.client(cn) -> ClientCert(cert, key)``.
- ``cert_authority`` — the same certificate factory on its own (CA + server cert), for tests that need certs
  without a broker.
- :class:`Subscriber` (a plain helper, not a fixture): ``with Subscriber(broker, "doorkeep/#") as sub:`` collects
  ``(topic, payload, retain)`` tuples; ``sub.get(timeout)``, ``sub.wait_for(n, timeout)``. Pass ``cert=`` for the
  TLS broker, ``protocol=5`` for MQTT 5.

Certificates are generated at test time with the ``openssl`` CLI (Debian package ``openssl``).

Mosquitto started as root drops to user ``mosquitto``, so every file it reads lives in a 0755 temp dir with 0644
files (keys included — they are throwaway test keys), and its log file is world-writable.

If mosquitto is missing the MQTT tests are skipped with a clear message — except under ``CI=true``, where a missing
broker fails the run (CI must prove these properties, not skip them).
"""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pytest
from doorkeep.device.publish.mqtt import stop_loop
from doorkeep.tools.local_broker import (
    LocalMosquitto,
    find_mosquitto,
    free_port,
    private_dir,
)

__all__ = [
    "CertAuthority",
    "ClientCert",
    "Mosquitto",
    "Subscriber",
    "cert_authority",
    "find_mosquitto",
    "free_port",
    "mosquitto",
    "mosquitto_module",
    "mosquitto_tls",
]


def _require(binary: str | None, what: str, install: str) -> str:
    if binary:
        return binary
    msg = f"{what} not found; install it with: {install}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI=true: {msg}", pytrace=False)
    pytest.skip(msg)
    raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class ClientCert:
    """A client certificate and its private key (PEM files)."""

    cn: str
    cert: Path
    key: Path


class CertAuthority:
    """A throwaway CA (EC P-256) plus a server certificate for ``localhost``/``127.0.0.1``, made with openssl."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._openssl = _require(shutil.which("openssl"), "openssl", "apt-get install -y openssl")
        self.ca = directory / "ca.crt"
        self.ca_key = directory / "ca.key"
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", str(self.ca_key), "-out", str(self.ca), "-days", "2", "-subj", "/CN=doorkeep-test-ca")
        self.server = self._issue("localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                  "extendedKeyUsage=serverAuth\n")
        self._clients: dict[str, ClientCert] = {}
        for p in directory.iterdir():
            p.chmod(0o644)

    def _run(self, *args: str) -> None:
        proc = subprocess.run([self._openssl, *args], capture_output=True, text=True, check=False)
        if proc.returncode:
            raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")

    def _issue(self, cn: str, extensions: str) -> ClientCert:
        safe = cn.replace("/", "_")
        key, csr, crt, ext = (self.dir / f"{safe}.{s}" for s in ("key", "csr", "crt", "ext"))
        ext.write_text(extensions)
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                  "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
        self._run("x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
                  "-CAcreateserial", "-days", "2", "-out", str(crt), "-extfile", str(ext))
        for p in (key, crt):
            p.chmod(0o644)
        return ClientCert(cn, crt, key)

    def client(self, cn: str) -> ClientCert:
        """A client certificate with common name ``cn`` (cached per CN)."""
        if cn not in self._clients:
            self._clients[cn] = self._issue(cn, "extendedKeyUsage=clientAuth\n")
        return self._clients[cn]


# ------------------------------------------------------------------------------------------------ the broker

#: ACL for the TLS broker. With ``use_identity_as_username`` the username is the certificate CN (%u).
TLS_ACL = """\
user hub
topic read doorkeep/#
topic read homeassistant/#
topic write homeassistant/status
topic write doorkeep/+/recipient/#
topic write doorkeep/+/pair/#

pattern readwrite doorkeep/%u/#
pattern readwrite homeassistant/device/%u/config
pattern read homeassistant/status
"""


class Mosquitto(LocalMosquitto):
    """One real mosquitto on 127.0.0.1 (see :class:`doorkeep.tools.local_broker.LocalMosquitto`): ``host``,
    ``port``, ``url``, ``certs``, ``start()``, ``stop()``, ``kill()``, ``restart()`` (same port), ``log_text()``.
    Skips the test (fails it under CI=true) when mosquitto is not installed."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(binary=_require(find_mosquitto(), "mosquitto", "apt-get install -y mosquitto"), **kw)


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A fresh anonymous mosquitto on loopback for this test."""
    broker = Mosquitto()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def mosquitto_module() -> Iterator[Mosquitto]:
    """One anonymous mosquitto for the whole test module (only where broker state does not matter)."""
    broker = Mosquitto()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def cert_authority() -> Iterator[CertAuthority]:
    """A throwaway CA with a server cert for 127.0.0.1; ``.client(cn)`` issues client certs."""
    d = private_dir("dk-certs-")
    try:
        yield CertAuthority(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mosquitto_tls(cert_authority: CertAuthority) -> Iterator[Mosquitto]:
    """Mutual-TLS mosquitto with the per-device ACL (:data:`TLS_ACL`); ``.certs`` issues client certs."""
    broker = Mosquitto(tls=cert_authority, acl=TLS_ACL)
    try:
        yield broker
    finally:
        broker.close()


# ------------------------------------------------------------------------------------------------ a test subscriber


class Subscriber:
    """A paho client subscribed to ``topic_filter`` (QoS1) that collects ``(topic, payload, retain)`` tuples.

    Connects and waits for SUBACK in ``__init__``; use as a context manager (or call ``close()``). It reconnects
    (and re-subscribes) after a broker restart; with ``clean_session=False`` and a ``client_id`` on a
    ``persistent`` broker, QoS1 messages published while it was away are delivered too.
    """

    def __init__(self, broker: Mosquitto, topic_filter: str, *, cert: ClientCert | None = None,
                 protocol: int = 4, client_id: str = "", clean_session: bool = True) -> None:
        import ssl

        import paho.mqtt.client as paho

        self.messages: queue.Queue[tuple[str, bytes, bool]] = queue.Queue()
        self.all: list[tuple[str, bytes, bool]] = []
        subscribed: queue.Queue[object] = queue.Queue()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=paho.MQTTv5 if protocol == 5 else paho.MQTTv311,
                                  clean_session=None if protocol == 5 else clean_session)
        self.client.reconnect_delay_set(1, 2)  # follows a broker restart quickly
        if cert is not None:
            assert broker.certs is not None, "cert= needs the TLS broker"
            self.client.tls_set(ca_certs=str(broker.certs.ca), certfile=str(cert.cert), keyfile=str(cert.key),
                                tls_version=ssl.PROTOCOL_TLS_CLIENT)

        def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
            item = (msg.topic, bytes(msg.payload), bool(msg.retain))
            self.all.append(item)
            self.messages.put(item)

        self.client.on_message = on_message
        self.client.on_subscribe = lambda *a: subscribed.put(a)
        self.client.on_connect = lambda c, *a: c.subscribe(topic_filter, qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        try:
            subscribed.get(timeout=10)
        except queue.Empty:
            self.close()
            raise TimeoutError(f"no SUBACK for {topic_filter!r} from {broker.url} within 10 s") from None

    def get(self, timeout: float = 10.0) -> tuple[str, bytes, bool]:
        """The next message; raises ``queue.Empty`` after ``timeout`` seconds."""
        return self.messages.get(timeout=timeout)

    def wait_for(self, n: int, timeout: float = 10.0, *, topic: str | None = None) -> list[tuple[str, bytes, bool]]:
        """Collect ``n`` messages (only on ``topic`` if given); fails the test after ``timeout`` seconds."""
        got: list[tuple[str, bytes, bool]] = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"expected {n} messages{' on ' + topic if topic else ''}, got {len(got)}: {got[-5:]}")
            try:
                item = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            if topic is None or item[0] == topic:
                got.append(item)
        return got

    def close(self) -> None:
        self.client.disconnect()  # before loop_stop: it wakes the loop thread at once
        stop_loop(self.client)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def retained_messages(broker: Mosquitto, topic_filter: str) -> dict[str, bytes]:
    """The broker's retained messages under ``topic_filter`` (``…/#``), by topic. A marker published below it on the
    same connection after subscribing comes back after every retained one, so none is missed."""
    marker = topic_filter.removesuffix("#") + f"marker-{time.monotonic_ns()}"
    with Subscriber(broker, topic_filter) as sub:
        sub.client.publish(marker, b"m", qos=1)
        sub.wait_for(1, topic=marker)
        return {topic: payload for topic, payload, retain in sub.all if retain and payload}
