"""Helpers for the owner-channel and request tests: the device's inbound side on a real mosquitto, and its owner."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from doorkeep.device.channel.wiring import DeviceChannel, build_channel
from doorkeep.device.config import Config, MqttSection
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.topics import Topics
from doorkeep.device.rings import FrameRing
from doorkeep.device.vault.vault import AUDIT_FILE
from doorkeep.tools.owner_link import OwnerLink
from vault_support import Device, make_device

LORES = (320, 240)


def audit_records(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state / AUDIT_FILE).read_text().splitlines()]


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def scene_frame(width: int, height: int) -> np.ndarray:
    """An I420 frame with a bright square on grey (so a mask over it is visible)."""
    f = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
    f[height // 4: height // 2, width // 4: width // 2] = 235
    return f


@dataclass
class Rig:
    dev: Device
    config: Config
    client: MqttClient
    topics: Topics
    channel: DeviceChannel
    ring: FrameRing

    @property
    def device_id(self) -> str:
        return self.dev.identity.device_id


@contextmanager
def device_rig(tmp: Path, broker: Any, *, channel_cfg: dict[str, Any] | None = None,
               apply_config: Any = None, on_applied: Any = None, owner: Any = None) -> Iterator[Rig]:
    """A vault device with its inbound channel connected to ``broker`` (subscriptions acknowledged)."""
    dev = make_device(tmp, owner=owner)
    config = Config.from_dict({"device": {"state_dir": str(dev.state)}, "channel": channel_cfg or {},
                               "mqtt": {"host": broker.host, "port": broker.port, "discovery": False}})
    client = MqttClient(MqttSection(host=broker.host, port=broker.port, discovery=False),
                        client_id=dev.identity.device_id)
    topics = Topics(dev.identity.device_id)
    ring = FrameRing(width=LORES[0], height=LORES[1])
    ring.push(scene_frame(*LORES), time.monotonic())
    channel = build_channel(config, dev.identity, client, topics, vault=dev.vault, ring=ring,
                            apply_config=apply_config, on_applied=on_applied)
    channel.start()
    client.start()
    try:
        client.wait_connected(10)
        client.wait_subscribed(10)
        yield Rig(dev, config, client, topics, channel, ring)
    finally:
        channel.close()
        client.stop()
        dev.vault.close()


@contextmanager
def owner_link(rig: Rig, broker: Any, *, timeout: float = 10.0) -> Iterator[OwnerLink]:
    link = OwnerLink(MqttSection(host=broker.host, port=broker.port, discovery=False), owner=rig.dev.owner,
                     device_key=rig.dev.identity.public_bytes, timeout=timeout)
    link.start()
    try:
        yield link
    finally:
        link.close()



def utf8_request(keys: Any, *, requester: str, incident: str, purpose: str) -> bytes:
    """A signed request sent as compact UTF-8 JSON (what a requester may publish: the device accepts any JSON
    spelling of a validly signed request). Non-ASCII text is up to 6× longer in the canonical ASCII form, which is
    why the device must forward the bytes it received rather than re-serialise them."""
    import nacl.utils
    from doorkeep.device.vault.codec import canonical, signed_message
    from doorkeep.device.vault.requests import SIG_DOMAIN, Request

    r = Request(nacl.utils.random(16).hex(), requester, incident, purpose, (time.time() - 60, time.time()),
                int(time.time()), keys.public)
    signed = Request(**{**r.__dict__, "sig": keys.sign(signed_message(SIG_DOMAIN, canonical(r.body())))})
    return json.dumps(signed.to_json(), ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
