"""Provisioning figures: a full pairing exchange, applying a signed configuration, a factory reset.

All three are dominated by fsyncs (audit records, atomic state writes, shredding), so they measure the storage as
much as the code. Run: ``doorkeep bench --only provisioning`` (once ``BENCH_MODULES`` lists this module).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from doorkeep.device.frames import Packet
from doorkeep.device.vault.audit import AuditLog
from doorkeep.device.vault.clips import ClipWriter, Codec
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.provisioning.device_state import DeviceProvisioning
from doorkeep.provisioning.identity import first_boot
from doorkeep.provisioning.pairing import DevicePairing
from doorkeep.provisioning.pairing_owner import OwnerPairing
from doorkeep.provisioning.reset import factory_reset
from doorkeep.provisioning.signed_config import SignedConfigStore, sign_config


def _device(state: Path) -> DeviceProvisioning:
    ident = first_boot(state)
    return DeviceProvisioning(state, identity=ident, audit=AuditLog.open(state / "audit.log", ident))


def pair(prov: DeviceProvisioning, keys: SecretKeys) -> None:
    """The whole pairing exchange in memory, both sides saying yes."""
    d, o = DevicePairing(prov), OwnerPairing(keys)
    (accept,) = d.handle(o.start())
    (reveal,) = o.handle(accept)
    d.handle(reveal)
    (confirm,) = o.decide(True)
    d.handle(confirm)
    (done,) = d.decide(True)
    o.handle(done)


def _clip(directory: Path, keys: SecretKeys, device_id: str, i: int) -> None:
    w = ClipWriter(directory / f"c{i}.clip", owner=keys.public, clip_id=f"c{i}", device_id=device_id,
                   t_start=time.time(), event_id="e", codec=Codec(), fsync_chunks=False)
    w.add(Packet(b"\x00\x00\x00\x01\x65" + bytes(1000), 0, time.monotonic(), time.time(), True, True))
    w.close()


def run(quick: bool = False) -> dict[str, float]:
    reps = 5 if quick else 20
    clips = 20 if quick else 100
    keys = SecretKeys.generate("owner")
    with tempfile.TemporaryDirectory(prefix="dk-bench-prov-") as tmp:
        root = Path(tmp)
        pair_ms = []
        for i in range(reps):
            prov = _device(root / f"p{i}")
            t = time.perf_counter()
            pair(prov, keys)
            pair_ms.append((time.perf_counter() - t) * 1e3)
        store = SignedConfigStore(prov)
        apply_ms = []
        for c in range(1, reps + 1):
            doc = sign_config({"motion": {"hold_s": float(c)}}, device_id=prov.identity.device_id, counter=c,
                              keys=keys).to_bytes()
            t = time.perf_counter()
            store.apply(doc)
            apply_ms.append((time.perf_counter() - t) * 1e3)
        victim = _device(root / "reset")
        (root / "reset" / "vault").mkdir()
        for i in range(clips):
            _clip(root / "reset" / "vault", keys, victim.identity.device_id, i)
        t = time.perf_counter()
        factory_reset(victim.state_dir, identity=victim.identity, audit=victim.audit)
        reset_ms = (time.perf_counter() - t) * 1e3
    return {"pair_exchange_ms": statistics.median(pair_ms), "config_apply_ms": statistics.median(apply_ms),
            "factory_reset_ms_per_clip": reset_ms / clips}
