"""Benchmarks for the mqtt area.

- ``event_payload_bytes``: the largest signed event payload any encodable event can produce (24-char id, 20-byte
  zone, 9-digit duration, ``end``) — the guarantee, goal ≤ 256; ``event_payload_bytes_typical``: a person start
  with the demo's 16-hex id and zone ``porch``.
- ``event_latency_p50_ms`` / ``event_latency_p95_ms``: a person appears in a frame → the signed ``start`` event is
  received (and verified) by a subscriber through a real mosquitto. The whole device path runs: the synthetic source
  at 30 fps (720p main stream encoded, 320×240 lores), frame ring, motion gate, the default pinned detector, the
  person tracker (2 of 3 inferences), the MQTT publisher with its durable outbox (SQLite, synchronous=FULL), paho,
  mosquitto, a paho subscriber. The scene is the demo's real photos with the person appearing abruptly, once every
  2.5 s (one sample per appearance; the first is warm-up): 106 appearances give ``event_latency_samples`` >= 100
  (about 4.5 minutes; an appearance without an event gives no sample, so the count is reported, not assumed).
  Appearance time = wall time of the first frame showing the person.
- If the detector cannot be built (model not fetched) the latency figures are replaced by
  ``event_publish_latency_p50_ms``/``_p95_ms``: ``on_event`` → received, without capture and detection.
"""

from __future__ import annotations

import dataclasses
import math
import queue
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from typing import Any

import nacl.signing
import numpy as np
from doorkeep.device.config import MqttSection
from doorkeep.device.errors import PublishError
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.mqtt import PublishTimeout, stop_loop
from doorkeep.device.publish.payload import encode, verify
from doorkeep.device.publish.publisher import MqttPublisher
from doorkeep.device.publish.topics import Topics

FPS = 30.0
PERIOD_S = 2.5    # one appearance per period: absent 1 s, present 1 s, absent 0.5 s (+ end_after_s = 1 s)
APPEAR_S = 1.0
LEAVE_S = 2.0


def payload_sizes() -> dict[str, float]:
    ident = DeviceIdentity(nacl.signing.SigningKey(bytes(32)))
    worst = Event("x" * 24, "person", "end", 1.9e9, 1.9e9 - 99_999, 1.9e9, 1.0, "z" * 20, True)
    typical = Event("0123456789abcdef", "person", "start", 1.9e9, 1.9e9, None, 0.87, "porch", True)
    return {"event_payload_bytes": float(len(encode(worst, ident))),
            "event_payload_bytes_typical": float(len(encode(typical, ident)))}


def _broker(stack: ExitStack) -> tuple[str, int, str]:
    from doorkeep.tools.local_broker import LocalMosquitto, find_mosquitto

    if find_mosquitto():
        b = stack.enter_context(LocalMosquitto())
        return b.host, b.port, "mosquitto"
    from doorkeep.tools.embedded_broker import EmbeddedBroker

    e = EmbeddedBroker()
    e.start()
    stack.callback(e.stop)
    return e.host, e.port, "amqtt (mosquitto not installed)"


class _Receiver:
    """A paho subscriber recording (receive wall time, verified event) for every start event."""

    def __init__(self, host: str, port: int, ident: DeviceIdentity) -> None:
        import paho.mqtt.client as paho

        self.starts: queue.Queue[tuple[float, str]] = queue.Queue()
        ready = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        topic = Topics(ident.device_id).event

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            t = time.time()
            ev = verify(msg.payload, ident.public_bytes)
            if ev.phase in ("start", "press"):
                self.starts.put((t, ev.event_id))

        self.client.on_message = on_message
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: ready.set()
        self.client.connect(host, port)
        self.client.loop_start()
        if not ready.wait(10):
            raise PublishTimeout("benchmark subscriber: no SUBACK")

    def close(self) -> None:
        self.client.disconnect()
        stop_loop(self.client)


def _rig(stack: ExitStack, *, seed: int) -> tuple[MqttPublisher, _Receiver, str]:
    """Broker, a verifying subscriber and a connected publisher (outbox in a temp dir), closed by ``stack``."""
    ident = DeviceIdentity(nacl.signing.SigningKey(bytes([seed]) * 32))
    state = stack.enter_context(tempfile.TemporaryDirectory())
    host, port, kind = _broker(stack)
    rx = _Receiver(host, port, ident)
    stack.callback(rx.close)
    pub = MqttPublisher(MqttSection(host=host, port=port, heartbeat_s=3600, discovery=False), ident, state_dir=state)
    pub.start()
    stack.callback(pub.close)
    pub.client.wait_connected(10)
    return pub, rx, kind


def _percentiles(ms: list[float], prefix: str) -> dict[str, float]:
    p50, p95 = np.percentile(np.asarray(ms), (50, 95))
    return {f"{prefix}_p50_ms": round(float(p50), 2), f"{prefix}_p95_ms": round(float(p95), 2)}


def _first_present_frames(cycles: int) -> list[int]:
    n = round(PERIOD_S * FPS)
    first = next(i for i in range(n) if i / FPS > APPEAR_S)
    return [k * n + first for k in range(cycles)]


@dataclasses.dataclass
class Appearances:
    """The device pipeline on a scene where the person appears abruptly once per :data:`PERIOD_S` (for latency
    benchmarks): build the Doorbell with ``config``, ``source``, ``detector`` and ``on_frame``; ``appeared[k]`` is
    the wall time of the first frame showing the person in appearance ``k``."""

    config: Any
    source: Any
    detector: Any
    appeared: dict[int, float]
    on_frame: Any

    def latencies_ms(self, received: list[float]) -> list[float]:
        """Per appearance (after the first, which warms the detector up): the first ``received`` time at or after
        it and before the next, minus the appearance time."""
        lat = []
        for k, t_appear in sorted(self.appeared.items()):
            nxt = self.appeared.get(k + 1, math.inf)
            hits = [t for t in received if t_appear <= t < nxt]
            if hits and k > 0:
                lat.append((min(hits) - t_appear) * 1e3)
        return lat


def appearances(*, cycles: int) -> Appearances:
    """The whole device path at 720p / 30 fps with the pinned detector (raises if the model is not fetched)."""
    from doorkeep.device.config import CaptureSection, Config
    from doorkeep.device.detect.detector import build_detector
    from doorkeep.device.sources.photo_scene import photo_scene
    from doorkeep.device.sources.synthetic import SyntheticSource

    config = Config().replace(capture=CaptureSection(source="synthetic", main_width=1280, main_height=720))
    config = config.replace(events=dataclasses.replace(config.events, end_after_s=1.0))
    detector = build_detector(config, fetch=False)
    w, h = config.capture.main_width, config.capture.main_height
    eps = 1e-6
    path = ((0.0, -1.0, 0.55), (APPEAR_S, -1.0, 0.55), (APPEAR_S + eps, 0.5, 0.55), (LEAVE_S, 0.5, 0.55),
            (LEAVE_S + eps, -1.0, 0.55), (PERIOD_S, -1.0, 0.55))
    scene = dataclasses.replace(photo_scene(w, h), path=path)
    source = SyntheticSource(width=w, height=h, fps=FPS, scene=scene, realtime=True)
    appear_frames = _first_present_frames(cycles)
    appeared: dict[int, float] = {}

    def on_frame(_frame: np.ndarray, info: Any, _gate: bool, _dets: Any) -> None:
        for k, i in enumerate(appear_frames):
            if k not in appeared and info.seq >= i:
                appeared[k] = info.t_wall - (info.seq - i) / FPS

    return Appearances(config, source, detector, appeared, on_frame)


def frame_to_event_latency(*, cycles: int,
                           during: Callable[[MqttPublisher], AbstractContextManager[Any]] | None = None
                           ) -> dict[str, float]:
    """Person appears in a frame → verified start event at a subscriber, through the real device pipeline.
    ``during(publisher)``: a context kept open while measuring (bench_channel floods the request inbox)."""
    from doorkeep.device.app import Doorbell
    from doorkeep.device.person_events import PersonTracker

    a = appearances(cycles=cycles)
    with ExitStack() as stack:
        pub, rx, kind = _rig(stack, seed=5)
        bell = Doorbell.from_config(a.config, source=a.source, detector=a.detector,
                                    tracker=PersonTracker.from_config(a.config), event_sinks=[pub],
                                    on_frame=a.on_frame)
        received: list[float] = []
        with bell, (during(pub) if during is not None else nullcontext()):
            deadline = time.monotonic() + cycles * PERIOD_S + 5
            while len(received) < cycles and time.monotonic() < deadline:
                try:
                    received.append(rx.starts.get(timeout=0.5)[0])
                except queue.Empty:
                    continue
        print(f"bench_mqtt: {len(received)} start events over {cycles} appearances via {kind}", file=sys.stderr)
    lat = a.latencies_ms(received)
    if not lat:
        raise PublishError("no person start event was received")
    return _percentiles(lat, "event_latency") | {"event_latency_samples": float(len(lat))}


def publish_latency(*, n: int) -> dict[str, float]:
    """``on_event`` → verified event at a subscriber (no capture/detection): the MQTT share of the latency."""
    lat = []
    with ExitStack() as stack:
        pub, rx, _kind = _rig(stack, seed=6)
        for i in range(n):
            t0 = time.time()
            pub.on_event(Event(f"b{i}", "doorbell", "press", t0, t0))
            t1, _id = rx.starts.get(timeout=10)
            lat.append((t1 - t0) * 1e3)
            time.sleep(1 / FPS)
    return _percentiles(lat, "event_publish_latency")


def run(*, quick: bool = False) -> dict[str, float]:
    out = payload_sizes()
    out |= publish_latency(n=30 if quick else 200)
    try:
        out |= frame_to_event_latency(cycles=4 if quick else 106)
    except Exception as exc:  # noqa: BLE001  (reported; the MQTT-only figures above still stand)
        print(f"bench_mqtt: frame-to-event latency not measured: {exc}", file=sys.stderr)
    return out
