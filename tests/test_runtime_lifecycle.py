"""#10.3 the device lifecycle is transactional: a failure while building or at any start step unwinds everything —
no thread left (threading.enumerate), no file of the state dir open (audit log, outbox), the source closed; and
close() releases parts that were built but never started."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from doorkeep.device.assembly import Device, assemble
from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.sources.synthetic import SyntheticSource
from doorkeep.device.vault.keys import SecretKeys, pin_owner_public
from worker_faults import Fault, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.detection]


def _open_files(under: Path) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(under)):
            out.append(target)
    return out


@pytest.fixture
def setup(tmp_path, mosquitto, model_path):
    state = tmp_path / "state"
    identity = DeviceIdentity.load_or_create(state)
    pin_owner_public(state, SecretKeys.generate("owner").public)
    config = Config.from_dict({"device": {"state_dir": str(state)},
                               "capture": {"main_width": 320, "main_height": 240},
                               "mqtt": {"host": mosquitto.host, "port": mosquitto.port},
                               "vault": {"fsync_chunks": False}})
    before = set(threading.enumerate())

    def build() -> tuple[Device, SyntheticSource]:
        source = SyntheticSource(width=320, height=240, fps=30)
        return assemble(config, identity=identity, source=source), source

    def check_released(source: SyntheticSource) -> None:
        wait_until(lambda: set(threading.enumerate()) <= before, timeout=10,
                   what=f"threads to end: {sorted(t.name for t in set(threading.enumerate()) - before)}")
        assert _open_files(state) == []
        assert source._closed and not source.running

    return build, check_released, state


def _break(obj: object, method: str) -> None:
    def boom(*_a: object, **_kw: object) -> None:
        raise Fault(f"{method} failed")

    setattr(obj, method, boom)


START_STEPS: dict[str, Callable[[Device], tuple[object, str]]] = {
    "vault": lambda d: (d.vault, "start"),
    "publisher": lambda d: (d.publisher, "start"),
    "detect worker": lambda d: (d.bell.loop.detect_worker, "start"),
    "events worker": lambda d: (d.bell.loop.events_worker, "start"),
    "source": lambda d: (d.bell.source, "_start"),
    "supervisor": lambda d: (d.supervisor, "start"),
}


@pytest.mark.parametrize("step", list(START_STEPS))
def test_a_failure_at_any_start_step_unwinds_everything(setup, step: str) -> None:
    build, check_released, _state = setup
    device, source = build()
    obj, method = START_STEPS[step](device)
    _break(obj, method)
    with pytest.raises(Fault):
        device.start()
    check_released(source)
    device.close()  # idempotent after the unwind


def test_close_releases_parts_built_but_never_started(setup) -> None:
    build, check_released, state = setup
    device, source = build()
    assert _open_files(state)  # the audit log and the outbox are open once built
    device.close()
    check_released(source)


def test_a_clean_run_leaves_nothing_behind(setup) -> None:
    build, check_released, _state = setup
    device, source = build()
    with device:
        wait_until(lambda: source.frames > 10, what="frames")
        assert {w.name for w in device.workers} >= {"doorkeep-detect", "doorkeep-events", "doorkeep-outbox",
                                                     "doorkeep-heartbeat", "doorkeep-vault-writer",
                                                     "doorkeep-capture-SyntheticSource"}
    check_released(source)


@pytest.mark.parametrize("part", ["vault", "publisher", "bell", "button"])
def test_a_failure_while_building_closes_what_was_built(setup, monkeypatch, part: str) -> None:
    import doorkeep.device.assembly as assembly

    _build, check_released, state = setup
    opened: list[SyntheticSource] = []

    def open_source(capture: object) -> SyntheticSource:  # what [capture] source = "synthetic" opens, recorded
        opened.append(SyntheticSource(width=320, height=240, fps=30))
        return opened[-1]

    def boom(*_a: object, **_kw: object) -> None:
        raise Fault(f"{part} failed")

    monkeypatch.setattr(assembly, "open_source", open_source)
    monkeypatch.setattr(*{"vault": (assembly, "build_vault"), "publisher": (assembly, "publisher_from_config"),
                          "bell": (assembly.Doorbell, "from_config"), "button": (assembly, "SoftwareButton")}[part],
                        boom)
    config = Config.from_dict({"device": {"state_dir": str(state)}, "vault": {"fsync_chunks": False},
                               "capture": {"source": "synthetic", "main_width": 320, "main_height": 240}})
    with pytest.raises(Fault):
        assemble(config, identity=DeviceIdentity.load_or_create(state))
    check_released(opened[0])  # the camera assemble opened is released, the audit log and outbox closed
