"""Issue 14, "what it must show": the whole assembled device — synthetic camera, capture loop, vault, MQTT publisher
on a real mosquitto — meets EACCES, EIO, EROFS and ENOSPC on its vault while it records.

* EACCES (creating files) and EIO (appending) come from the vault's one disk seam (device/vault/diskio.py; as root
  a ``chmod`` denies nothing) while old clips stay shreddable, so a fault taken for a full disk would show; EROFS
  from a real read-only bind mount of the vault directory; ENOSPC from a real small tmpfs (the whole state dir:
  vault, audit log and outbox) filled to the last byte.
* For every fault: capture never stops, every event (person and doorbell) reaches the broker, verified, while the
  fault lasts, and the audit chain verifies afterwards.
* For the non-ENOSPC faults: not one clip is shredded or changed, the signed heartbeat carries ``vault_fault``, and
  recording resumes by itself once the fault clears. For ENOSPC: retention frees space (reason ``disk_full`` only)
  and recording resumes.

The unit-level tests of each rule are in test_vault_faults.py (#14.1), test_vault_disk_full.py (#14.2),
test_vault_bounds.py (#14.3) and test_vault_time.py (#14.4).
"""

from __future__ import annotations

import errno
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from types import SimpleNamespace

import pytest
from doorkeep.device.assembly import Device, assemble
from doorkeep.device.config import Config
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.payload import verify as verify_event
from doorkeep.device.sources.synthetic import Scene, SyntheticSource, default_scene
from doorkeep.device.vault.audit import iter_records, verify
from doorkeep.device.vault.keys import SecretKeys, pin_owner_public
from fixtures_broker import Subscriber
from vault_faults import FaultyIO, fake_packets, fill, read_only
from vault_support import write_clip
from worker_faults import wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]

FAULTS = ["EACCES", "EIO", "EROFS", "ENOSPC"]


class Rig:
    """One assembled device with a paired vault, a subscriber on its event and stats topics, and old footage."""

    def __init__(self, state: Path, mosquitto: object) -> None:
        self.state = state
        self.identity = DeviceIdentity.load_or_create(state)
        self.owner = SecretKeys.generate("owner")
        pin_owner_public(state, self.owner.public)
        config = Config.from_dict({
            "device": {"state_dir": str(state)},
            "capture": {"main_width": 320, "main_height": 240},
            "button": {"holdoff_s": 0.1},
            "mqtt": {"host": mosquitto.host, "port": mosquitto.port,  # type: ignore[attr-defined]
                     "heartbeat_s": 1, "reconnect_max_s": 1, "discovery": False},
            "vault": {"fsync_chunks": False, "chunk_bytes": 4096, "postroll_s": 0.2, "max_retry_s": 1,
                      "reserve_mb": 0.25}})
        still = Scene(background=default_scene(320, 240).background)  # no motion: the detector stays idle
        self.source = SyntheticSource(width=320, height=240, fps=15, scene=still, noise=6)
        self.device: Device = assemble(config, identity=self.identity, source=self.source, status_file=False)
        assert self.device.vault is not None
        self.vault = self.device.vault
        self.io = FaultyIO()  # the vault's disk seam; healthy until told to fail
        self.vault.store.disk = self.io
        now = time.time()
        dev = SimpleNamespace(vault=self.vault, owner=self.owner, identity=self.identity)
        for i in range(8):  # about 1.3 MB of older footage
            write_clip(dev, f"old{i}", list(fake_packets(10, size=16_000, t0=now - 3600 + i, seed=i)))
        self.before = self.footage()
        topic = f"doorkeep/{self.identity.device_id}/"
        self.events = Subscriber(mosquitto, topic + "event")  # type: ignore[arg-type]
        self.stats = Subscriber(mosquitto, topic + "stats")  # type: ignore[arg-type]
        self.n = 0

    def footage(self) -> dict[str, bytes]:
        store = self.vault.store
        return {c: store.clip_path(c).read_bytes() + store.manifest_path(c).read_bytes() for c in store.clip_ids()}

    def records(self) -> list[tuple[str, dict]]:
        return [(r.kind, r.fields) for r in iter_records(self.state / "audit.log", 0)]

    def kinds(self, kind: str) -> list[dict]:
        return [f for k, f in self.records() if k == kind]

    def person(self, phase: str, eid: str) -> None:
        """A person event on the device's real event path (the events worker: vault, then the publisher)."""
        t = time.time()
        ev = Event(eid, "person", phase, t, t, t if phase == "end" else None,  # type: ignore[arg-type]
                   score=0.9, mono_end=time.monotonic() if phase == "end" else None)
        self.device.bell.loop._queue_event(ev)

    def visit(self) -> list[str]:
        """A person comes and goes and rings: returns the event ids that must reach the broker."""
        self.n += 1
        eid = f"{self.n:016x}"
        self.person("start", eid)
        time.sleep(0.5)
        press = self.device.button.press()  # type: ignore[union-attr]
        assert press is not None
        self.person("end", eid)
        return [eid, press.event_id]

    def delivered(self, ids: list[str], timeout: float = 20.0) -> None:
        """Every one of ``ids`` reaches the broker, signed by this device."""
        want, seen = set(ids), set()
        deadline = time.monotonic() + timeout
        while not want <= seen:
            assert time.monotonic() < deadline, f"events not delivered: {sorted(want - seen)}"
            try:
                _, payload, _ = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.add(verify_event(payload, self.identity.verify_key).event_id)

    def heartbeat_flag(self, timeout: float = 10.0) -> str | None:
        """``vault_fault`` of the next heartbeat published from now on."""
        while not self.stats.messages.empty():
            self.stats.messages.get_nowait()
        _, payload, _ = self.stats.get(timeout=timeout)
        flag = json.loads(payload).get("vault_fault")
        return str(flag) if flag is not None else None

    def close(self) -> None:
        self.events.close()
        self.stats.close()


def capturing(rig: Rig, seconds: float) -> int:
    """Frames the camera delivered over ``seconds``."""
    f0 = rig.source.frames
    time.sleep(seconds)
    return rig.source.frames - f0


@pytest.fixture
def rig_for(tmp_path: Path, mosquitto: object, small_tmpfs: Callable[[int], Path],
            model_path: Path) -> Iterator[Callable[[str], Rig]]:
    rigs: list[Rig] = []

    def make(fault: str) -> Rig:
        state = small_tmpfs(6 * 1024) / "state" if fault == "ENOSPC" else tmp_path / "state"
        rigs.append(Rig(state, mosquitto))
        return rigs[-1]

    yield make
    for r in rigs:
        r.device.close()
        r.close()
    assert [t.name for t in threading.enumerate() if t.name.startswith("doorkeep-")] == []


def inject(rig: Rig, fault: str) -> AbstractContextManager[object]:
    """Start the fault now; the context ends it."""
    if fault in ("EACCES", "EIO"):
        # new files refused / appends failing, while the old clips stay shreddable: a wrongly classified fault
        # would destroy footage here (today's main before #14.1 did)
        rig.io.fail(getattr(errno, fault), ops={"open"} if fault == "EACCES" else {"write", "fsync"})

        class Clear:
            def __enter__(self) -> None:
                return None

            def __exit__(self, *exc: object) -> None:
                rig.io.fail(None)
        return Clear()
    if fault == "EROFS":
        return read_only(rig.vault.store.root)
    filler = fill(rig.state.parent)

    class Free:
        def __enter__(self) -> None:
            return None

        def __exit__(self, *exc: object) -> None:
            filler.unlink()
    return Free()


@pytest.mark.parametrize("fault", FAULTS)
def test_a_vault_fault_during_recording(rig_for: Callable[[str], Rig], fault: str) -> None:
    rig = rig_for(fault)
    device, vault = rig.device, rig.vault
    device.start()
    wait_until(lambda: device.publisher is not None and device.publisher.client.connected, what="MQTT connect")
    assert rig.heartbeat_flag() is None

    # a visitor arrives: a clip is being recorded when the fault strikes
    rig.person("start", "00000000000000aa")
    wait_until(lambda: vault.recorder is not None and vault.recorder.recording is not None, what="a clip to open")
    recording = vault.recorder.recording  # type: ignore[union-attr]
    time.sleep(1.0)
    with inject(rig, fault):
        rig.person("end", "00000000000000aa")  # closing the clip meets the fault too (EROFS: the manifest)
        if fault == "ENOSPC":
            wait_until(lambda: rig.kinds("clip_shredded"), timeout=30, what="retention to free space")
        else:
            wait_until(lambda: vault.health.fault == fault, timeout=15, what=f"the {fault} fault")
            assert rig.heartbeat_flag() == fault  # the hub sees why nothing is recorded
        during = rig.visit() + rig.visit()  # events go on while the fault lasts ...
        rig.delivered(["00000000000000aa", *during])
        assert capturing(rig, 1.0) >= 8  # ... and so does capture (15 fps)
        if fault != "ENOSPC":
            assert vault.health.fault == fault and rig.kinds("clip_shredded") == []
            assert vault.recorder.recording is None  # type: ignore[union-attr]
    # the fault clears: recording resumes by itself
    wait_until(lambda: vault.health.ok and not vault.keeper.waiting_for_space, timeout=20, what="the vault to heal")
    assert rig.heartbeat_flag() is None
    rig.person("start", "00000000000000bb")
    wait_until(lambda: vault.recorder.recording is not None, what="recording to resume")  # type: ignore[union-attr]
    time.sleep(0.5)
    rig.person("end", "00000000000000bb")
    rig.delivered(["00000000000000bb"])
    wait_until(lambda: any("00000000000000bb" in f["event_ids"] for f in rig.kinds("clip_written")),
               what="the clip after the fault")
    device.close()

    kinds = [k for k, _ in rig.records()]
    shreds = rig.kinds("clip_shredded")
    after = rig.footage()
    if fault == "ENOSPC":
        assert shreds and {s["reason"] for s in shreds} == {"disk_full"}
        assert shreds[0]["clip_id"].startswith("old")  # the oldest went first
    else:
        assert shreds == [], "a storage fault shredded footage"
        assert set(rig.before) <= set(after), "old clips disappeared"
        assert {c: after[c] for c in rig.before} == rig.before, "old footage changed"
        assert kinds.count("vault_fault") == 1 and kinds.count("vault_fault_cleared") == 1  # once per episode
        assert recording in after  # the clip the fault interrupted is kept (recovered or closed)
    assert verify(rig.state / "audit.log", rig.identity.verify_key).ok
    assert device.bell.stats.snapshot()["counters"].get("detect_errors", 0) == 0
