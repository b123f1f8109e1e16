"""No event lost: the broker goes down for 30 s while events happen and the device process is killed and restarted
in between; every event arrives, once after de-duplication by id, in order."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import time
from pathlib import Path

import nacl.signing
import pytest
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.payload import verify
from doorkeep.device.publish.topics import Topics
from fixtures_broker import Mosquitto, Subscriber

pytestmark = [pytest.mark.broker]

DEVICE = Path(__file__).with_name("mqtt_device.py")
IDENT = DeviceIdentity(nacl.signing.SigningKey(bytes([11]) * 32))
OUTAGE_S = 30.0


def start_device(port: int, state: Path, first: int, count: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(DEVICE), str(port), str(state), str(first), str(count)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "done":
            return proc
    raise AssertionError(f"device exited early with {proc.wait()}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


def ordered_unique(payloads: list[bytes]) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in payloads:
        ev = verify(p, IDENT.public_bytes)
        key = (ev.event_id, ev.phase)
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def wait_unique(hub: Subscriber, topic: str, n: int, timeout: float = 60.0) -> None:
    """Wait until ``n`` distinct (event id, phase) arrived: resent duplicates do not count."""
    deadline = time.monotonic() + timeout
    while len(ordered_unique([p for t, p, _r in hub.all if t == topic])) < n:
        if time.monotonic() > deadline:
            break  # the assertion that follows shows what is missing
        try:
            hub.get(timeout=1.0)
        except queue.Empty:
            continue


def expected(n: int) -> list[tuple[str, str]]:
    return [(f"ev{i}", phase) for i in range(n) for phase in ("start", "end")]


@pytest.mark.slow
def test_broker_outage_and_device_restart_lose_nothing(tmp_path) -> None:
    broker = Mosquitto(persistent=True)
    topic = Topics(IDENT.device_id).event
    devices: list[subprocess.Popen[str]] = []
    try:
        with Subscriber(broker, topic, client_id="hub-outage", clean_session=False) as hub:
            devices.append(start_device(broker.port, tmp_path, 0, 10))   # broker up: delivered live
            hub.wait_for(20, timeout=30)
            broker.stop()
            down_at = time.monotonic()
            kill(devices.pop())                                          # device dies (nothing in flight)
            devices.append(start_device(broker.port, tmp_path, 10, 10))  # restarted: events go to the outbox
            kill(devices.pop())                                          # dies again with a full outbox
            devices.append(start_device(broker.port, tmp_path, 20, 10))  # restarted again, more events
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
            broker.start()                                               # same port; sessions restored
            wait_unique(hub, topic, 60)
        payloads = [p for t, p, _r in hub.all if t == topic]
        assert ordered_unique(payloads) == expected(30)
    finally:
        for d in devices:
            kill(d)
        broker.close()


def test_device_killed_with_unsent_events_resends_after_restart(mosquitto, tmp_path) -> None:
    """Shorter variant (no 30 s wait): the outbox survives a device kill while the broker is down."""
    topic = Topics(IDENT.device_id).event
    mosquitto.stop()
    dev = start_device(mosquitto.port, tmp_path, 0, 5)
    kill(dev)
    assert (tmp_path / "outbox.sqlite3").exists()
    mosquitto.start()
    with Subscriber(mosquitto, topic) as hub:
        dev = start_device(mosquitto.port, tmp_path, 5, 5)
        try:
            wait_unique(hub, topic, 20)
        finally:
            kill(dev)
    assert ordered_unique([p for _t, p, _r in hub.all]) == expected(10)
