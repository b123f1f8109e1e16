"""Recipient side of an MQTT export: collect a bundle's chunks from the recipient topic into a file.

The device publishes the bundle in self-describing, hash-checked chunks (docs/formats.md#bundle-chunk-mqtt) on
``doorkeep/<device>/recipient/r-<key id>``; :class:`~doorkeep.device.vault.bundle_chunks.BundleAssembler` writes
each at its offset in a ``.part`` file (memory: one chunk), which becomes the bundle file once every chunk is in.
``doorkeep decrypt`` then verifies everything (a chunk's hash only catches transmission damage; the bundle's
signatures catch forgery).
"""

from __future__ import annotations

import os
import queue
import secrets
import time
from pathlib import Path
from typing import Any, TextIO

from doorkeep.device.errors import ChannelError, ChannelTimeout, FormatError
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.topics import Topics
from doorkeep.device.vault.bundle_chunks import BundleAssembler
from doorkeep.device.vault.keys import PublicKeys
from doorkeep.device.vault.vault import recipient_topic_id


def receive_bundle(settings: Any, *, device_id: str, recipient: PublicKeys, out: Path, seconds: float,
                   err: TextIO | None = None) -> int:
    """Subscribe to this recipient's topic on ``device_id`` and write the next bundle to ``out``; returns its size.

    Raises:
        ChannelTimeout: nothing complete within ``seconds`` (the partial file is removed).
        ChannelError: ``bad_bundle`` when a chunk is damaged.
    """
    topic = Topics(device_id).recipient(recipient_topic_id(recipient))
    chunks: queue.Queue[bytes] = queue.Queue(maxsize=256)
    client = MqttClient(settings, client_id="doorkeep-recipient-" + secrets.token_hex(4))
    client.subscribe(topic, lambda _t, p: chunks.put(p), qos=1)
    client.start()
    part = out.with_name(out.name + ".part")
    asm = BundleAssembler(part)
    deadline = time.monotonic() + seconds
    try:
        client.wait_subscribed(min(seconds, 15.0))
        if err is not None:
            print(f"doorkeep: waiting on {topic} for a bundle (the owner sends the grant to the device)", file=err,
                  flush=True)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChannelTimeout(f"no complete bundle on {topic} within {seconds:g} s")
            try:
                data = chunks.get(timeout=min(left, 1.0))
            except queue.Empty:
                continue
            try:
                done = asm.add(data)
            except FormatError as exc:
                if "another bundle" in str(exc):
                    continue  # a second export on the same topic: this one first
                raise ChannelError("bad_bundle", str(exc)) from None
            if done is not None:
                os.replace(part, out)
                return out.stat().st_size
    except BaseException:
        asm.close()
        part.unlink(missing_ok=True)
        raise
    finally:
        client.stop()
