"""Constant memory (#14.5): export, bundle decryption, clip recovery and audit-log opening on inputs far larger than
the memory they may use. Each operation runs in a fresh interpreter; its peak RSS above that process's idle RSS is
read from /proc (doorkeep.tools.bench_util.peak_rss_above_idle), so holding the input in memory fails the test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from doorkeep.device.frames import Packet
from doorkeep.device.sources.encode import H264Encoder
from doorkeep.device.vault.audit import AuditLog
from doorkeep.device.vault.clips import ClipWriter, Codec
from doorkeep.device.vault.grants import issue_grant
from doorkeep.device.vault.keys import MIN
from doorkeep.device.vault.manifest import Manifest
from doorkeep.tools.bench_util import peak_rss_above_idle
from vault_support import Device, make_device, sealed_keys

pytestmark = pytest.mark.slow

INPUT_MB = 192
#: What an operation may add on top of its idle process, whatever the input size (the goal of #14.5, 64 MB for
#: a 1 GiB export; the old whole-file code needed 1-3 × the input here).
BOUND_MB = 64
W, H = 1280, 720
CODEC = Codec("h264", (1, 1_000_000), W, H)


def big_packets(total_mb: int) -> list[Packet]:
    """Real H.264 (lossless noise at 720p, ~1.4 MB a frame), repeated with rising timestamps up to ``total_mb``."""
    import numpy as np

    enc = H264Encoder(width=W, height=H, fps=10, gop=5, crf=0)
    rng = np.random.default_rng(1)
    gop: list[Packet] = []
    for i in range(10):
        frame = rng.integers(0, 256, (H * 3 // 2, W), dtype=np.uint8)
        gop += enc.encode(frame, pts=i * 100_000, t_capture=float(i), t_wall=1e9 + i / 10)
    gop += enc.flush()
    out, size, k = [], 0, 0
    while size < total_mb << 20:
        for p in gop:
            out.append(Packet(p.data, p.pts + k * 1_000_000, p.t_capture + k, p.t_wall + k, p.keyframe,
                              p.has_config))
            size += len(p.data)
        k += 1
    return out


def write_big_clip(dev: Device, store_root: Path, clip_id: str, packets: list[Packet], *, close: bool) -> None:
    from doorkeep.device.vault.store import ClipStore

    store = ClipStore(store_root)
    w = ClipWriter(store.clip_path(clip_id), owner=dev.owner.public, clip_id=clip_id,
                   device_id=dev.identity.device_id, t_start=packets[0].t_wall, event_id="ev", codec=CODEC,
                   fsync_chunks=False)
    for p in packets:
        w.add(p)
    if not close:  # torn by a "crash": no FINAL chunk, no manifest, and half a chunk at the end
        w.abort()
        with open(store.clip_path(clip_id), "ab") as f:
            f.write(b"\x00\x10\x00\x00" + bytes(5000))
        return
    s = w.close()
    store.write_manifest(Manifest(clip_id, dev.identity.device_id, packets[0].t_wall, s.t_last, ("ev",),
                                  s.header_hash.hex(), s.chunks, s.packets, s.plain_bytes, s.size, 0, CODEC,
                                  True).signed(dev.identity))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("memory")
    dev = make_device(tmp)
    packets = big_packets(INPUT_MB)
    write_big_clip(dev, dev.vault.store.root, "big", packets, close=True)
    write_big_clip(dev, tmp / "torn-vault", "torn", packets, close=False)
    for name in ("grant.json", "grant2.json"):
        grant = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "big"),
                            recipient=dev.recipient.public, recipient_name="R", purpose="p", requester="q")
        (tmp / name).write_bytes(grant.to_bytes())
    dev.vault.export_to_file((tmp / "grant2.json").read_bytes(), tmp / "fixture.bundle")
    dev.recipient.save(tmp / "recipient.key", b"pw", limits=MIN)
    dev.vault.close()
    yield tmp, dev
    shutil.rmtree(tmp, ignore_errors=True)


SETUP = """
from pathlib import Path
from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
tmp = Path({tmp!r})
state = tmp / "state"
ident = DeviceIdentity.load_or_create(state)
"""


def probe(tmp: Path, setup: str, op: str) -> dict[str, float]:
    return peak_rss_above_idle(SETUP.format(tmp=str(tmp)) + setup, op)


def test_export_streams(world) -> None:
    tmp, _ = world
    r = probe(tmp, """
from doorkeep.device.vault.vault import build_vault
vault = build_vault(Config.from_dict({"device": {"state_dir": str(state)}}), ident)
grant = (tmp / "grant.json").read_bytes()
""", "vault.export_to_file(grant, tmp / 'out.bundle')")
    assert (tmp / "out.bundle").stat().st_size > INPUT_MB << 20
    assert r["peak_mb"] < BOUND_MB, r


def test_decrypt_streams(world) -> None:
    tmp, _ = world
    (tmp / "mp4").mkdir(exist_ok=True)
    r = probe(tmp, """
import av  # the MP4 muxer's own import is not the bundle's memory
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.tools.release_open import decrypt_bundle
keys = SecretKeys.load(tmp / "recipient.key", b"pw")
""", "report = decrypt_bundle(tmp / 'fixture.bundle', keys, tmp / 'mp4', allow_unverified_owner=True)")
    assert (tmp / "mp4" / "big.mp4").stat().st_size > INPUT_MB << 20
    assert r["peak_mb"] < BOUND_MB, r


def test_recovery_streams(world) -> None:
    tmp, _ = world
    r = probe(tmp, """
from doorkeep.device.vault.store import ClipStore
store = ClipStore(tmp / "torn-vault")
""", "rec = store.recover_one('torn', ident); assert rec.action == 'recovered' and rec.bytes_cut == 5004, rec")
    assert r["peak_mb"] < BOUND_MB, r


def test_audit_open_streams(world) -> None:
    tmp, dev = world
    path = tmp / "big-audit.log"
    with AuditLog.open(path, dev.identity) as log:
        first = log.append("boot").to_line()
        last = log.append("event", n=1).to_line()
    with open(path, "wb") as f:  # a huge log: first record, a sparse hole of INPUT_MB, newline, a last record
        f.write(first)
        f.seek(len(first) + (INPUT_MB << 20))
        f.write(b"\n" + last)
    r = probe(tmp, """
from doorkeep.device.vault.audit import AuditLog
""", "AuditLog.open(tmp / 'big-audit.log', ident).close()")
    assert r["peak_mb"] < BOUND_MB, r
