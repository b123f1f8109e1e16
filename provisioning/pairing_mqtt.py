"""Pairing over MQTT: the device's pairing topics exist only while its pairing window is open.

Topics (docs/mqtt.md "pairing", built by :meth:`Topics.pairing`)::

    doorkeep/<id>/pair/open     device -> owner   announcement, every ANNOUNCE_S while the window is open
    doorkeep/<id>/pair/owner    owner  -> device  offer, reveal, confirm, abort
    doorkeep/<id>/pair/device   device -> owner   accept, done, abort

The device subscribes to ``pair/owner`` only while the window is open and unsubscribes when it closes, so outside
the window nothing it receives is even delivered; a message that still arrives is refused (``window-closed``).
Because a client's SUBSCRIBE is handled by the broker before its later PUBLISH, an owner that sees an
announcement knows the device is listening. All messages are QoS 1, never retained.

Running from the service (a pairing button): open a :class:`~.pairing.PairingWindow` on the button press and call
:func:`serve_pairing` on a worker thread with the service's own client. ``confirm(code)`` is the device's half of the
comparison: log the code (and show it where the product can — display, Home Assistant, an LED pattern) and return
True only when the owner confirms on the device too, e.g. a second press of the doorbell button within a minute.
A device that accepts without a local yes is open to whoever answers first inside its window.

Example (owner side)::

    client = MqttClient(MqttSection(host="hub.local"), client_id="doorkeep-owner-x")
    client.start(); client.wait_connected(5)
    device_id = wait_for_announcement(client, timeout=60)
    paired = run_owner(OwnerPairing(keys, device_id=device_id), MqttChannel.owner(client, device_id),
                       confirm=ask_human, timeout=120)
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass

from doorkeep.device.errors import FormatError
from doorkeep.device.publish.mqtt import MqttClient
from doorkeep.device.publish.topics import SPEC, Topics, check_segment
from doorkeep.device.safe_text import printable
from doorkeep.device.vault import codec
from doorkeep.device.worker import Worker

from .errors import PairingMismatch
from .pairing import Confirm, DevicePaired, DevicePairing, run_device

log = logging.getLogger(__name__)

ANNOUNCE_FORMAT = "doorkeep/pair-open"
ANNOUNCE_S = 2.0
LEAF_OPEN, LEAF_OWNER, LEAF_DEVICE = "open", "owner", "device"
#: Pairing messages are small; anything bigger is dropped unread.
MAX_MESSAGE = SPEC["pairing"].max_bytes


class MqttChannel:
    """A :class:`~.pairing.Channel` over two pairing topics of one device."""

    def __init__(self, client: MqttClient, *, send_topic: str, recv_topic: str) -> None:
        self.client = client
        self.send_topic = send_topic
        self.recv_topic = recv_topic
        self._inbox: queue.Queue[bytes] = queue.Queue(maxsize=64)
        client.subscribe(recv_topic, self._on_message, qos=1)

    @classmethod
    def device(cls, client: MqttClient, device_id: str) -> MqttChannel:
        t = Topics(device_id)
        return cls(client, send_topic=t.pairing(LEAF_DEVICE), recv_topic=t.pairing(LEAF_OWNER))

    @classmethod
    def owner(cls, client: MqttClient, device_id: str) -> MqttChannel:
        t = Topics(device_id)
        return cls(client, send_topic=t.pairing(LEAF_OWNER), recv_topic=t.pairing(LEAF_DEVICE))

    def _on_message(self, _topic: str, payload: bytes) -> None:
        if len(payload) > MAX_MESSAGE:
            log.warning("dropped a %d-byte pairing message (limit %d)", len(payload), MAX_MESSAGE)
            return
        try:
            self._inbox.put_nowait(bytes(payload))
        except queue.Full:
            log.warning("pairing inbox full; dropped a message")

    def send(self, data: bytes) -> None:
        self.client.publish_raw(self.send_topic, data, qos=1, retain=False).wait(10.0)

    def recv(self, timeout: float) -> bytes | None:
        try:
            return self._inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None

    def close(self) -> None:
        self.client.unsubscribe(self.recv_topic)


def announcement(device_id: str, fingerprint: str, remaining_s: float) -> bytes:
    return codec.canonical({"format": ANNOUNCE_FORMAT, "v": 1, "device_id": device_id, "fingerprint": fingerprint,
                            "remaining_s": int(remaining_s)}) + b"\n"


@dataclass(frozen=True)
class Announcement:
    """A device whose pairing window is open."""

    device_id: str
    fingerprint: str
    remaining_s: int


def parse_announcement(payload: bytes) -> Announcement:
    try:
        f = codec.Fields(codec.parse_json(payload, what="pairing announcement"), what="pairing announcement")
        f.header(ANNOUNCE_FORMAT, 1)
        return Announcement(check_segment(f.text("device_id", max_len=64), "device id"),
                            f.text("fingerprint", max_len=16), f.integer("remaining_s"))
    except (FormatError, ValueError) as exc:
        raise PairingMismatch(f"bad pairing announcement: {exc}") from None


class _Announcer(Worker):
    """``doorkeep-pair-announce``: announces the open window every ``ANNOUNCE_S`` while an offer is awaited."""

    def __init__(self, client: MqttClient, machine: DevicePairing, topic: str) -> None:
        super().__init__("pair-announce")
        self.client, self.machine, self.topic = client, machine, topic

    def _run(self) -> None:
        m, ident = self.machine, self.machine.prov.identity
        while not self.stopping and m.window.is_open() and m.state == "offer":
            self.client.publish_raw(self.topic, announcement(ident.device_id, ident.fingerprint,
                                                             m.window.remaining()), qos=1)
            self.wait(ANNOUNCE_S)


def serve_pairing(client: MqttClient, machine: DevicePairing, *, confirm: Confirm,
                  on_open: Callable[[float], None] | None = None) -> DevicePaired:
    """Device side: open the pairing topics for the window, announce, run the exchange, close the topics.

    ``on_open(remaining_s)`` is called once the broker has acknowledged the subscription, i.e. when an owner can
    really reach the device (default: a log line).

    Raises:
        PublishTimeout: the broker did not acknowledge the pairing subscription within 15 s.
        ProvisionRefused: the refusal that ended the exchange (audited by the state machine), or
            ``window-closed`` when the window expired first.
    """
    ident = machine.prov.identity
    channel = MqttChannel.device(client, ident.device_id)
    open_topic = Topics(ident.device_id).pairing(LEAF_OPEN)
    try:
        client.wait_subscribed(15.0)
    except BaseException:
        channel.close()
        raise
    announcer = _Announcer(client, machine, open_topic)
    announcer.start()
    if on_open is not None:
        on_open(machine.window.remaining())
    else:
        log.warning("pairing window open for %.0f s: device %s, fingerprint %s", machine.window.remaining(),
                    ident.device_id, ident.fingerprint)
    try:
        return run_device(machine, channel, confirm=confirm)
    finally:
        announcer.stop()
        channel.close()
        machine.window.close()


def wait_for_announcement(client: MqttClient, *, device_id: str | None = None, timeout: float) -> Announcement:
    """Owner side: wait until a device (``device_id`` or any single one) announces an open pairing window."""
    pattern = SPEC["pairing"].pattern.format(id=check_segment(device_id, "device id") if device_id else "+",
                                             leaf=LEAF_OPEN)
    seen: queue.Queue[Announcement] = queue.Queue()

    def on_open(_topic: str, payload: bytes) -> None:
        try:
            seen.put_nowait(parse_announcement(payload))
        except PairingMismatch as exc:
            log.warning("%s", printable(exc))

    client.subscribe(pattern, on_open, qos=1)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return seen.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise PairingMismatch(f"no device opened a pairing window within {timeout:.0f} s "
                                      "(run `doorkeep pair --device` on it, or press its pairing button)",
                                      reason="timeout") from None
    finally:
        client.unsubscribe(pattern)
