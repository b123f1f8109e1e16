"""Benchmarks for the inbound channel (request inbox and owner channel).

- ``request_flood_audit_kib``: growth of the device's audit log (KiB, fsync on, as shipped) while 10,000 replays of
  a captured footage request and 10,000 garbage messages arrive over a real mosquitto. Goal < 64.
- ``request_flood_msgs_per_s``: how fast the device's inbox disposes of that flood.
- ``request_flood_event_latency_p50_ms`` / ``_p95_ms``: a person appears in a frame → verified ``start`` event at a
  subscriber (the whole device path of bench_mqtt's ``event_latency``: synthetic 720p source, BlazePose, tracker,
  durable outbox, paho, mosquitto) **while** replays and garbage keep arriving on the request inbox of the same
  connection, as fast as a QoS 1 publisher can send them. Compare with ``event_latency_p95_ms`` of the same run.
- ``clip_fetch_mb_s``: an owner fetching a 32 MiB clip file over loopback MQTT (OwnerLink: 2 MiB ranges, two in
  flight; the device streams from the file with 16 messages awaiting PUBACK), and checking it against its manifest.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import nacl.signing
from doorkeep.device.channel.wiring import DeviceChannel, build_channel
from doorkeep.device.config import Config, MqttSection
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.vault.vault import AUDIT_FILE, Vault, build_vault

N = 10_000


def flood_messages(n: int) -> tuple[bytes, list[bytes]]:
    """A captured request (to replay) and garbage of many shapes (random bytes, broken JSON, forgeries)."""
    import random

    from doorkeep.device.vault.keys import SecretKeys
    from doorkeep.device.vault.requests import make_request

    replay = make_request(SecretKeys.generate("recipient"), requester="Springfield PD", incident="2026-1142",
                          purpose="burglary", window=(time.time() - 3600, time.time())).to_bytes()
    rng = random.Random(1)
    garbage = []
    for i in range(min(n, 512)):
        if i % 3 == 0:
            garbage.append(rng.randbytes(rng.randint(1, 8192)))
        elif i % 3 == 1:
            garbage.append(b'{"format":"doorkeep-request","v":1,' + rng.randbytes(rng.randint(0, 4000)))
        else:
            b = bytearray(replay)
            b[rng.randrange(len(b))] ^= 1 + rng.randrange(255)
            garbage.append(bytes(b))
    return replay, garbage


def _device_channel(pub: MqttPublisher, state: Path) -> tuple[DeviceChannel, Vault]:
    config = Config.from_dict({"device": {"state_dir": str(state)}})
    vault = build_vault(config, pub.identity)
    return build_channel(config, pub.identity, pub.client, pub.topics, vault=vault), vault


@contextmanager
def flooding(pub: MqttPublisher, *, n: int | None = None) -> Iterator[dict[str, Any]]:
    """The device's inbound channel on ``pub``'s connection, and a flooder publishing replays + garbage to its
    request inbox (``n`` of each, else until the block ends). Yields figures filled in at the end."""
    state = Path(tempfile.mkdtemp(prefix="dk-flood-"))
    channel, vault = _device_channel(pub, state)
    s = pub.client.settings
    flooder = MqttClient(MqttSection(host=s.host, port=s.port, discovery=False), client_id="doorkeep-flooder")
    replay, garbage = flood_messages(n or N)
    stop = threading.Event()
    out: dict[str, Any] = {"sent": 0}

    def flood() -> None:
        i = 0
        while not stop.is_set() and (n is None or i < n):
            flooder.publish_raw(pub.topics.request_in, replay, qos=1)
            flooder.publish_raw(pub.topics.request_in, garbage[i % len(garbage)], qos=1).wait(30)
            i += 1
        out["sent"] = 2 * i

    channel.start()
    pub.client.wait_subscribed(10)
    flooder.start()
    flooder.wait_connected(10)
    audit = state / AUDIT_FILE
    before = audit.stat().st_size
    t0 = time.monotonic()
    thread = threading.Thread(target=flood, name="doorkeep-bench-flood", daemon=True)
    thread.start()
    try:
        yield out
    finally:
        if n is None:
            stop.set()
        thread.join()
        gate = channel.gate
        deadline = time.monotonic() + 300
        while gate.forwarded + gate.refused.total < out["sent"] and time.monotonic() < deadline:
            time.sleep(0.05)
        out["seconds"] = time.monotonic() - t0
        flooder.stop()
        channel.close()
        vault.close()
        out["audit_bytes"] = audit.stat().st_size - before
        out["handled"] = gate.forwarded + gate.refused.total


def flood_audit_growth() -> dict[str, float]:
    from doorkeep.tools.bench_mqtt import _broker

    with ExitStack() as stack:
        host, port, _kind = _broker(stack)
        ident = DeviceIdentity(nacl.signing.SigningKey(bytes([21]) * 32))
        state = stack.enter_context(tempfile.TemporaryDirectory())
        pub = MqttPublisher(MqttSection(host=host, port=port, discovery=False, heartbeat_s=3600), ident,
                            state_dir=state)
        pub.start()
        stack.callback(pub.close)
        with flooding(pub, n=N) as fig:
            pass
    return {"request_flood_audit_kib": round(fig["audit_bytes"] / 1024, 2),
            "request_flood_msgs_per_s": round(fig["handled"] / max(fig["seconds"], 1e-9), 1)}


def flood_event_latency(*, cycles: int) -> dict[str, float]:
    from doorkeep.tools.bench_mqtt import frame_to_event_latency

    figures: dict[str, Any] = {}

    @contextmanager
    def during(pub: MqttPublisher) -> Iterator[None]:
        with flooding(pub) as fig:
            yield
        figures.update(fig)

    lat = frame_to_event_latency(cycles=cycles, during=during)
    print(f"bench_channel: {figures.get('handled', 0)} flood messages handled during the latency run",
          file=sys.stderr)
    return {"request_flood_event_latency_p50_ms": lat["event_latency_p50_ms"],
            "request_flood_event_latency_p95_ms": lat["event_latency_p95_ms"]}


def clip_fetch_speed(mib: int = 32) -> dict[str, float]:
    """Owner fetches a ``mib`` MiB clip over loopback MQTT (and checks it against the manifest)."""
    from doorkeep.device.vault.keys import SecretKeys, pin_owner_public
    from doorkeep.tools.bench_mqtt import _broker
    from doorkeep.tools.owner_link import OwnerLink

    with ExitStack() as stack:
        host, port, _kind = _broker(stack)
        state = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ident = DeviceIdentity(nacl.signing.SigningKey(bytes([22]) * 32))
        owner = SecretKeys.generate("owner")
        pin_owner_public(state, owner.public)
        pub = MqttPublisher(MqttSection(host=host, port=port, discovery=False, heartbeat_s=3600), ident,
                            state_dir=state)
        channel, vault = _device_channel(pub, state)
        clip_id = _big_clip(vault, ident, owner, mib)
        channel.start()
        pub.start()
        stack.callback(vault.close)
        stack.callback(pub.close)
        stack.callback(channel.close)
        link = OwnerLink(MqttSection(host=host, port=port, discovery=False), owner=owner,
                         device_key=ident.public_bytes, timeout=30)
        link.start()
        stack.callback(link.close)
        t0 = time.perf_counter()
        m = link.fetch_clip(clip_id, state / "fetched.clip")
        dt = time.perf_counter() - t0
    return {"clip_fetch_mb_s": round(m.size / 1e6 / dt, 1)}


def _big_clip(vault: Vault, ident: DeviceIdentity, owner: Any, mib: int) -> str:
    """A clip of ``mib`` MiB of (random) packets written with the real ClipWriter and a signed manifest."""
    import os

    from doorkeep.device.frames import Packet
    from doorkeep.device.vault.clips import ClipWriter, Codec
    from doorkeep.device.vault.manifest import Manifest

    clip_id = "20260101T000000Z-00000001"
    codec = Codec("h264", (1, 1_000_000), 1280, 720)
    w = ClipWriter(vault.store.clip_path(clip_id), owner=owner.public, clip_id=clip_id, device_id=ident.device_id,
                   t_start=1.7e9, event_id="bench", codec=codec, fsync_chunks=False)
    for i in range(mib * 16):
        w.add(Packet(os.urandom(64 * 1024), i, 100.0 + i / 30, 1.7e9 + i / 30, i % 30 == 0, i == 0))
    s = w.close()
    vault.store.write_manifest(Manifest(clip_id, ident.device_id, 1.7e9, s.t_last, ("bench",), s.header_hash.hex(),
                                        s.chunks, s.packets, s.plain_bytes, s.size, 0, codec, True).signed(ident))
    return clip_id


def run(*, quick: bool = False) -> dict[str, float]:
    out = flood_audit_growth()
    out |= clip_fetch_speed(8 if quick else 32)
    try:
        out |= flood_event_latency(cycles=4 if quick else 16)
    except Exception as exc:  # noqa: BLE001 (reported; the figures above still stand)
        print(f"bench_channel: flood event latency not measured: {exc}", file=sys.stderr)
    return out
