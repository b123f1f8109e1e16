"""Shared helpers for the vault tests: real H.264 packets (PyAV libx264) and a ready-made device + owner."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from doorkeep.device.config import Config
from doorkeep.device.frames import Packet
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.sources.encode import H264Encoder
from doorkeep.device.vault.keys import SecretKeys, pin_owner_public
from doorkeep.device.vault.vault import Vault, build_vault

W, H, FPS, GOP = 64, 48, 10, 5


def make_packets(n: int, *, t0: float | None = None, seed: int = 0) -> list[Packet]:
    """``n`` encoded frames of a moving gradient with noise; wall times ``t0 + i/FPS``, capture (monotonic) times
    from now on at the same rate."""
    t0 = time.time() if t0 is None else t0
    m0 = time.monotonic()
    enc = H264Encoder(width=W, height=H, fps=FPS, gop=GOP)
    rng = np.random.default_rng(seed)
    base = (np.add.outer(np.arange(H * 3 // 2), np.arange(W)) * 3 % 256).astype(np.uint8)
    out: list[Packet] = []
    for i in range(n):
        frame = np.roll(base, i, axis=1) ^ rng.integers(0, 16, base.shape, dtype=np.uint8)
        out += enc.encode(frame, pts=round(i * 1e6 / FPS), t_capture=m0 + i / FPS, t_wall=t0 + i / FPS)
    out += enc.flush()
    return out


def decode_packets(packets: list[Packet]) -> list[np.ndarray]:
    import av

    ctx = av.CodecContext.create("h264", "r")
    frames = []
    for p in packets:
        for f in ctx.decode(av.Packet(p.data)):
            frames.append(f.to_ndarray(format="yuv420p"))
    for f in ctx.decode(None):
        frames.append(f.to_ndarray(format="yuv420p"))
    return frames


@dataclass
class Device:
    state: Path
    identity: DeviceIdentity
    owner: SecretKeys
    recipient: SecretKeys
    vault: Vault


def make_device(tmp: Path, *, postroll_s: float = 1.0, chunk_bytes: int = 4096, owner: SecretKeys | None = None,
                **vault_cfg: object) -> Device:
    state = tmp / "state"
    identity = DeviceIdentity.load_or_create(state)
    owner = owner or SecretKeys.generate("owner")
    pin_owner_public(state, owner.public)
    cfg = Config.from_dict({"device": {"state_dir": str(state)},
                            "capture": {"main_width": W, "main_height": H},
                            "vault": {"postroll_s": postroll_s, "chunk_bytes": chunk_bytes, "fsync_chunks": False,
                                      **vault_cfg}})
    return Device(state, identity, owner, SecretKeys.generate("recipient"), build_vault(cfg, identity))


def write_clip(dev: Device, clip_id: str, packets: list[Packet], *, event_id: str = "ev") -> None:
    """A finished clip + signed manifest written straight through ClipWriter (fast; no recorder thread)."""
    from doorkeep.device.vault.clips import ClipWriter, Codec
    from doorkeep.device.vault.manifest import Manifest

    store = dev.vault.store
    codec = Codec("h264", (1, 1_000_000), W, H)
    w = ClipWriter(store.clip_path(clip_id), owner=dev.owner.public, clip_id=clip_id,
                   device_id=dev.identity.device_id, t_start=packets[0].t_wall, event_id=event_id, codec=codec,
                   chunk_bytes=4096, fsync_chunks=False)
    for p in packets:
        w.add(p)
    s = w.close()
    store.write_manifest(Manifest(clip_id, dev.identity.device_id, packets[0].t_wall, s.t_last, (event_id,),
                                  s.header_hash.hex(), s.chunks, s.packets, s.plain_bytes, s.size, 0, codec,
                                  True).signed(dev.identity))


def sealed_keys(dev: Device, *clip_ids: str) -> dict[str, bytes]:
    from doorkeep.device.vault.clips import parse_header

    return {c: parse_header(dev.vault.store.clip_path(c).read_bytes()).sealed_key for c in clip_ids}


def release(dev: Device, grant_bytes: bytes, **kw: object) -> bytes:
    """Release through the vault's streaming export into memory (small test bundles); returns the bundle."""
    import io

    buf = io.BytesIO()
    dev.vault.export_stream(grant_bytes, buf.write, destination="test", **kw)  # type: ignore[arg-type]
    return buf.getvalue()


def records(dev: Device) -> list[dict]:
    """The audit log's records as ``{"kind", "f"}`` (every segment)."""
    from doorkeep.device.vault.audit import iter_records

    return [{"kind": r.kind, "f": r.fields} for r in iter_records(dev.state / "audit.log", 0)]


def wait_until(cond: Callable[[], object], *, timeout: float = 30.0, what: str = "") -> None:
    """Poll ``cond`` until true; fail the test after ``timeout`` seconds (robust on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
