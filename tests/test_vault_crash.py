"""SIGKILL a recording process mid-clip, 20 times over one state dir: earlier clips and the audit chain stay
valid; the torn clip is detected, recovered to its last complete chunk (or discarded), and audited."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from doorkeep.device.vault.audit import AuditLog, verify
from doorkeep.device.vault.clips import decrypt_clip, open_clip_key, parse_header
from doorkeep.device.vault.store import ClipStore
from vault_support import make_device, make_packets

CHILD = textwrap.dedent("""
    import dataclasses, pickle, sys, time
    from pathlib import Path
    from doorkeep.device.config import Config
    from doorkeep.device.events import Event
    from doorkeep.device.identity import DeviceIdentity
    from doorkeep.device.preroll import PacketRing
    from doorkeep.device.vault.vault import build_vault

    state = Path(sys.argv[1])
    packets = pickle.loads(Path(sys.argv[2]).read_bytes())
    cfg = Config.from_dict({"device": {"state_dir": str(state)},
                            "vault": {"postroll_s": 0.02, "chunk_bytes": 4096, "fsync_chunks": True}})
    vault = build_vault(cfg, DeviceIdentity.load_or_create(state))
    ring = PacketRing(seconds=0.1)
    vault.start(ring)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        for j, p in enumerate(packets):
            now = time.time()
            if j == 3:
                vault.on_event(Event(f"ev{n}", "person", "start", now, now))
            if j == len(packets) - 6:
                vault.on_event(Event(f"ev{n}", "person", "end", now, now, now))
            ring.on_packet(dataclasses.replace(p, t_wall=now))
            time.sleep(0.002)
""")


def test_sigkill_mid_clip_20_times(tmp_path: Path) -> None:
    dev = make_device(tmp_path)
    dev.vault.close()
    state, ident, owner = dev.state, dev.identity, dev.owner
    store = ClipStore(state / "vault")
    pk = tmp_path / "packets.pkl"
    pk.write_bytes(pickle.dumps(make_packets(30)))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rng = random.Random(1234)
    seen: dict[str, bytes] = {}  # clip id -> manifest bytes of every clip verified so far
    head = None
    outcomes: list[str] = []
    for _ in range(20):
        child = subprocess.Popen([sys.executable, str(script), str(state), str(pk)], stdout=subprocess.PIPE,
                                 env={**os.environ, "PYTHONHASHSEED": "0"})
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(rng.uniform(0.02, 0.4))
        child.send_signal(signal.SIGKILL)
        child.wait()

        r = verify(state / "audit.log", ident.verify_key, expect_head=head)
        assert r.ok or (r.reason == "torn" and r.first_bad == r.records), r
        torn_before = [c for c in store.clip_ids() if not store.manifest_path(c).exists()]
        with AuditLog.open(state / "audit.log", ident) as log:  # repairs a torn tail, audited
            recoveries = store.recover(ident, log)
        assert [x.clip_id for x in recoveries] == torn_before
        outcomes += [x.action for x in recoveries]
        r = verify(state / "audit.log", ident.verify_key, expect_head=head)
        assert r.ok, r  # nothing earlier was lost: the previous head is still in the chain
        head = r.head
        lines = [json.loads(x) for x in (state / "audit.log").read_text().splitlines()]
        for x in recoveries:
            assert any(rec["kind"] == f"clip_{x.action}" and rec["f"]["clip_id"] == x.clip_id for rec in lines)

        for clip_id in store.clip_ids():
            mbytes = store.manifest_path(clip_id).read_bytes()
            if clip_id in seen:
                assert seen[clip_id] == mbytes  # earlier clips untouched
            m = store.manifest(clip_id).verify(ident.verify_key)
            data = store.clip_path(clip_id).read_bytes()
            m.check_clip(data)
            _, packets = decrypt_clip(data, open_clip_key(parse_header(data), owner), require_final=m.complete)
            assert packets and packets[0].keyframe
            seen[clip_id] = mbytes
    assert len(seen) >= 10
    assert outcomes, "no kill landed mid-clip"
