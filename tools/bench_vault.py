"""Vault benchmarks.

- ``vault_write_ratio``: encrypted clip write throughput (ClipWriter as shipped: packet framing + secretstream +
  chunk hashes + an fsync per chunk, ``fsync_chunks=True``, the default) divided by plain file write throughput of
  the same packets in the same chunks with the same fsync per chunk, same run, same disk. 1.0 means encryption is
  free; the goal is that the encrypted throughput stays well above what a camera produces (a few Mbit/s).
- ``vault_write_mb_s``: the encrypted throughput itself (MB/s), fsyncs included; ``vault_plain_write_mb_s`` the
  plain side's.
- ``grant_verify_ms``: the device's full grant check (parse, owner signature, device, expiry, replay, scope) for a
  grant naming 4 clips, median of many.
- ``export_peak_rss_mb``: peak memory of ``Vault.export_to_file`` of a 1 GiB grant (8 clips of 128 MiB, 20 kB
  packets, a keyframe every 60, default 256 KiB chunks) above the idle process (vault built), measured in a fresh
  subprocess from /proc; the export fsyncs as shipped. Goal: <= 64 MB whatever the size (#14.5).
- ``export_mb_s``: that export's throughput (read + check every chunk against its manifest + write + fsync).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from doorkeep.device.frames import Packet


def _packets(n: int, size: int) -> list[Packet]:
    blob = os.urandom(size)
    return [Packet(blob, i, i / 30, i / 30, i % 30 == 0, i % 30 == 0) for i in range(n)]


def _write_ratio(tmp: Path, *, n: int, size: int, reps: int) -> tuple[float, float, float]:
    from doorkeep.device.vault.clips import ClipWriter, Codec
    from doorkeep.device.vault.keys import SecretKeys

    owner = SecretKeys.generate("owner").public
    packets = _packets(n, size)
    total = n * size
    enc_best = plain_best = float("inf")
    for r in range(reps):
        t = time.perf_counter()
        w = ClipWriter(tmp / f"c{r}.clip", owner=owner, clip_id=f"c{r}", device_id="dk-bench", t_start=0.0,
                       event_id="e", codec=Codec(), chunk_bytes=256 * 1024)  # fsync_chunks: the default (True)
        for p in packets:
            w.add(p)
        w.close()
        enc_best = min(enc_best, time.perf_counter() - t)
        t = time.perf_counter()
        fd = os.open(tmp / f"p{r}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        buf = bytearray()
        for p in packets:  # same chunking and fsyncs as the clip writer, no crypto
            if buf and (p.keyframe or len(buf) >= 256 * 1024):
                os.write(fd, bytes(buf))
                os.fsync(fd)
                buf.clear()
            buf += p.data
        os.write(fd, bytes(buf))
        os.fsync(fd)
        os.close(fd)
        plain_best = min(plain_best, time.perf_counter() - t)
        (tmp / f"c{r}.clip").unlink()
        (tmp / f"p{r}.bin").unlink()
    return plain_best / enc_best, total / enc_best / 1e6, total / plain_best / 1e6


def _grant_verify_ms(tmp: Path, *, n: int) -> float:
    import nacl.public
    import nacl.utils
    from doorkeep.device.identity import DeviceIdentity
    from doorkeep.device.vault.grants import ReplaySet, check_grant, issue_grant
    from doorkeep.device.vault.keys import SecretKeys

    owner, rec = SecretKeys.generate("owner"), SecretKeys.generate("recipient")
    dev = DeviceIdentity.generate().device_id
    ids = [f"clip{i}" for i in range(4)]
    sealed = {c: nacl.public.SealedBox(owner.public.box_key).encrypt(nacl.utils.random(32)) for c in ids}
    data = issue_grant(owner, device_id=dev, sealed_keys=sealed, recipient=rec.public, recipient_name="r",
                       purpose="p", requester="q").to_bytes()
    replay = ReplaySet(tmp / "replay")
    times = []
    for _ in range(n):
        t = time.perf_counter()
        check_grant(data, owner=owner.public, device_id=dev, existing=ids, replay=replay)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def _export(tmp: Path, *, clips: int, clip_mb: int) -> tuple[float, float]:
    from doorkeep.device.identity import DeviceIdentity
    from doorkeep.device.vault.clips import ClipWriter, Codec, read_header
    from doorkeep.device.vault.grants import issue_grant
    from doorkeep.device.vault.keys import SecretKeys, pin_owner_public
    from doorkeep.device.vault.manifest import Manifest
    from doorkeep.device.vault.store import ClipStore
    from doorkeep.tools.bench_util import peak_rss_above_idle

    state = tmp / "state"
    ident = DeviceIdentity.load_or_create(state)
    owner, recipient = SecretKeys.generate("owner"), SecretKeys.generate("recipient")
    pin_owner_public(state, owner.public)
    store = ClipStore(state / "vault")
    packets = _packets(60, 20_000)
    sealed, total = {}, 0
    for k in range(clips):
        cid = f"bench{k:04d}"
        w = ClipWriter(store.clip_path(cid), owner=owner.public, clip_id=cid, device_id=ident.device_id,
                       t_start=float(k), event_id="e", codec=Codec(), fsync_chunks=False)
        while w.size < clip_mb << 20:
            for p in packets:
                w.add(p)
        s = w.close()
        store.write_manifest(Manifest(cid, ident.device_id, float(k), float(k + 1), ("e",), s.header_hash.hex(),
                                      s.chunks, s.packets, s.plain_bytes, s.size, 0, Codec(), True).signed(ident))
        with open(store.clip_path(cid), "rb") as f:
            sealed[cid] = read_header(f)[0].sealed_key
        total += s.size
    grant = issue_grant(owner, device_id=ident.device_id, sealed_keys=sealed, recipient=recipient.public,
                        recipient_name="bench", purpose="bench", requester="bench")
    (tmp / "grant.json").write_bytes(grant.to_bytes())
    setup = f"""
from pathlib import Path
from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.vault import build_vault
tmp = Path({str(tmp)!r})
vault = build_vault(Config.from_dict({{"device": {{"state_dir": str(tmp / "state")}}}}),
                    DeviceIdentity.load_or_create(tmp / "state"))
grant = (tmp / "grant.json").read_bytes()
"""
    r = peak_rss_above_idle(setup, "vault.export_to_file(grant, tmp / 'export.bundle')")
    return r["peak_mb"], total / r["seconds"] / 1e6


def run(*, quick: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dk-bench-vault-") as d:
        tmp = Path(d)
        ratio, mb_s, plain_mb_s = _write_ratio(tmp, n=150 if quick else 900, size=20_000, reps=2 if quick else 5)
        ms = _grant_verify_ms(tmp, n=50 if quick else 500)
        peak, export_mb_s = _export(tmp / "export", clips=2 if quick else 8, clip_mb=32 if quick else 128)
    return {"vault_write_ratio": round(ratio, 3), "vault_write_mb_s": round(mb_s, 1),
            "vault_plain_write_mb_s": round(plain_mb_s, 1), "grant_verify_ms": round(ms, 3),
            "export_peak_rss_mb": round(peak, 1), "export_mb_s": round(export_mb_s, 1)}
