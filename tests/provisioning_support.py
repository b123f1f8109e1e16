"""Helpers for the provisioning tests: a device in a temp state dir, owner keys, an in-memory channel, real clips."""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from doorkeep.device.frames import Packet
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.audit import AuditLog
from doorkeep.device.vault.clips import ClipWriter, Codec
from doorkeep.device.vault.keys import PublicKeys, SecretKeys
from doorkeep.provisioning.device_state import DeviceProvisioning
from doorkeep.provisioning.identity import first_boot
from doorkeep.provisioning.pairing import DevicePairing
from doorkeep.provisioning.pairing_owner import OwnerPairing


@dataclass
class Device:
    state: Path
    identity: DeviceIdentity
    audit: AuditLog
    prov: DeviceProvisioning

    def audit_kinds(self) -> list[str]:
        import json

        return [json.loads(line)["kind"] for line in (self.state / "audit.log").read_text().splitlines()]

    def audit_records(self, kind: str) -> list[dict]:
        import json

        recs = [json.loads(line) for line in (self.state / "audit.log").read_text().splitlines()]
        return [r["f"] for r in recs if r["kind"] == kind]


def new_device(state: Path) -> Device:
    ident = first_boot(state)
    audit = AuditLog.open(state / "audit.log", ident)
    return Device(state, ident, audit, DeviceProvisioning(state, identity=ident, audit=audit))


def owner_keys() -> SecretKeys:
    return SecretKeys.generate("owner")


def pair_in_memory(dev: Device, keys: SecretKeys, *, machine: DevicePairing | None = None,
                   **owner_kw: object) -> tuple[str, str, int]:
    """Run the whole exchange without a broker (on ``machine``, a device window already open, if given); returns
    (owner code, device code, counter from ``done``)."""
    d = machine or DevicePairing(dev.prov)
    o = OwnerPairing(keys, **owner_kw)  # type: ignore[arg-type]
    (accept,) = d.handle(o.start())
    (reveal,) = o.handle(accept)
    assert d.handle(reveal) == []
    (confirm,) = o.decide(True)
    assert d.handle(confirm) == []
    (done,) = d.decide(True)
    o.handle(done)
    assert o.result is not None and d.result is not None
    return o.code or "", d.code or "", o.result.counter


class CodeComparison:
    """Two "humans" reading each other's screen: each confirm callback waits for the other side's code."""

    def __init__(self, timeout: float = 20.0) -> None:
        self.codes: dict[str, str] = {}
        self._cv = threading.Condition()
        self.timeout = timeout

    def side(self, name: str, other: str):
        def confirm(code: str) -> bool:
            with self._cv:
                self.codes[name] = code
                self._cv.notify_all()
                self._cv.wait_for(lambda: other in self.codes, timeout=self.timeout)
                return self.codes.get(other) == code

        return confirm


class QueueChannel:
    """One end of an in-memory duplex pipe."""

    def __init__(self, inbox: queue.Queue[bytes], outbox: queue.Queue[bytes]) -> None:
        self.inbox, self.outbox = inbox, outbox

    def send(self, data: bytes) -> None:
        self.outbox.put(data)

    def recv(self, timeout: float) -> bytes | None:
        try:
            return self.inbox.get(timeout=timeout)
        except queue.Empty:
            return None


def channel_pair() -> tuple[QueueChannel, QueueChannel]:
    a: queue.Queue[bytes] = queue.Queue()
    b: queue.Queue[bytes] = queue.Queue()
    return QueueChannel(a, b), QueueChannel(b, a)


def write_clip(directory: Path, owner: PublicKeys, device_id: str, clip_id: str = "clip-1") -> Path:
    """A real encrypted clip (sealed to ``owner``) with two packets."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / f"{clip_id}.clip"
    w = ClipWriter(path, owner=owner, clip_id=clip_id, device_id=device_id, t_start=time.time(), event_id="ev1",
                   codec=Codec(width=64, height=48), fsync_chunks=False)
    for i in range(2):
        w.add(Packet(data=b"\x00\x00\x00\x01" + bytes([i]) * 100, pts=i * 33_000, t_capture=time.monotonic(),
                     t_wall=time.time(), keyframe=i == 0, has_config=i == 0))
    w.close()
    return path
