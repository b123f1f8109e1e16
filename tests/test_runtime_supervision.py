"""A fault test per worker of the assembled device (real mosquitto, the real pinned model, a paired vault): make the
worker raise once → the device's supervisor restarts it (or asks for a process exit when it cannot be restarted
in-process) and the systemd watchdog is not pinged while it is down."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from doorkeep.device.assembly import Device, assemble
from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.sources.synthetic import SyntheticSource
from doorkeep.device.vault.keys import SecretKeys, pin_owner_public
from doorkeep.device.worker import Worker
from worker_faults import check_exit_requested_after_crash, check_restarted_after_one_crash, raise_once, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.detection]


@pytest.fixture
def device(tmp_path, mosquitto, model_path) -> Iterator[Device]:
    state = tmp_path / "state"
    identity = DeviceIdentity.load_or_create(state)
    pin_owner_public(state, SecretKeys.generate("owner").public)
    config = Config.from_dict({
        "device": {"state_dir": str(state)},
        "capture": {"main_width": 320, "main_height": 240},
        "mqtt": {"host": mosquitto.host, "port": mosquitto.port, "heartbeat_s": 1, "reconnect_max_s": 1},
        "vault": {"fsync_chunks": False}})
    dev = assemble(config, identity=identity, source=SyntheticSource(width=320, height=240, fps=30))
    with dev:
        wait_until(lambda: dev.publisher is not None and dev.publisher.client.connected, what="MQTT connect")
        yield dev
    assert [t.name for t in threading.enumerate() if t.name.startswith("doorkeep-")] == []


@dataclass
class Case:
    worker: Callable[[Device], Worker]
    target: Callable[[Device], object]  # object whose method is made to raise once
    method: str


CASES = {
    "detect": Case(lambda d: d.bell.loop.detect_worker, lambda d: d.bell.ring, "read_latest"),
    "events": Case(lambda d: d.bell.loop.events_worker, lambda d: d.bell.loop._events, "get"),
    "outbox": Case(lambda d: d.publisher._sender, lambda d: d.publisher._sender, "_step"),  # type: ignore[union-attr]
    "heartbeat": Case(lambda d: d.publisher.heartbeat, lambda d: d.publisher.heartbeat, "beat"),  # type: ignore[union-attr]
    "vault-writer": Case(lambda d: d.vault.recorder.worker, lambda d: d.vault.recorder, "_writer_step"),  # type: ignore[union-attr]
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_worker_raising_once_is_restarted_and_the_watchdog_waits(device: Device, name: str) -> None:
    case = CASES[name]
    worker = case.worker(device)
    assert worker.name == f"doorkeep-{name}" and worker in device.supervisor.workers and worker.alive
    raise_once(case.target(device), case.method)
    check_restarted_after_one_crash(worker, sup=device.supervisor)
    assert device.bell.stats.snapshot()["crashes"][worker.name]["count"] == 1
    assert not device.supervisor.exit_requested.is_set()


def test_capture_raising_once_asks_for_a_process_restart(device: Device) -> None:
    source = device.bell.source
    raise_once(source, "_emit_packet")
    sup = check_exit_requested_after_crash(source.worker, sup=device.supervisor)  # type: ignore[attr-defined]
    assert "doorkeep-capture-SyntheticSource" in sup.exit_reason and "cannot be restarted" in sup.exit_reason
    assert source.finished.is_set() and source.error is not None


def test_published_events_still_flow_after_the_outbox_sender_restarted(device: Device) -> None:
    from doorkeep.device.events import Event

    pub = device.publisher
    assert pub is not None
    raise_once(pub._sender, "_step")
    check_restarted_after_one_crash(pub._sender, sup=device.supervisor)
    pub.on_event(Event(event_id="a" * 16, kind="doorbell", phase="press", t=1.0, t_start=1.0))
    assert pub.drain(10), "the restarted sender did not empty the outbox"


def test_doorkeep_run_exits_non_zero_when_the_supervisor_gives_up(device: Device, capsys) -> None:
    from doorkeep.tools.cmd_run import serve

    threading.Timer(0.3, device.supervisor._give_up, ("doorkeep-outbox crashed; 5 restarts within 600 s",)).start()
    assert serve(device, seconds=30, every=0) == 1  # returns at once, not after 30 s
    assert "doorkeep: doorkeep-outbox crashed; 5 restarts within 600 s; exiting so the service restarts" in \
        capsys.readouterr().err
