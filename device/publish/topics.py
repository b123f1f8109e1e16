"""Every MQTT topic doorkeep uses, defined once; subscriptions and the egress allow-list derive from here.

docs/mqtt.md specifies each topic (QoS, retain, payload, byte bound); ``tests/test_mqtt_topics.py`` checks that
every :data:`SPECS` entry is documented there.

Example::

    t = Topics("dk-abcdefghijklmnop")
    t.event                     # 'doorkeep/dk-abcdefghijklmnop/event'
    t.spec_for(t.event).qos     # 1
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidArgument, TopicError

ROOT = "doorkeep"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: Payloads of the availability topic (also the last will).
ONLINE = b"online"
OFFLINE = b"offline"
#: Payloads of the retained person-presence state (Home Assistant binary_sensor).
ON = b"ON"
OFF = b"OFF"


@dataclass(frozen=True)
class TopicSpec:
    """One topic family. ``pattern`` uses ``{id}`` (device id), ``{prefix}`` (discovery prefix), ``{leaf}``."""

    name: str
    pattern: str
    qos: int
    retain: bool
    #: Largest payload the device ever publishes here (the egress test enforces it).
    max_bytes: int
    #: Who publishes: ``device``, ``hub`` (Home Assistant / the owner's tools) or ``requester``.
    publisher: str
    payload: str

    def regex(self, prefix: str) -> re.Pattern[str]:
        rx = re.escape(self.pattern).replace(r"\{id\}", "[A-Za-z0-9_-]+").replace(r"\{leaf\}", "[A-Za-z0-9_/-]+")
        return re.compile("^" + rx.replace(r"\{prefix\}", re.escape(prefix)) + "$")


#: The topic table. Order is the order of docs/mqtt.md.
SPECS: tuple[TopicSpec, ...] = (
    TopicSpec("availability", ROOT + "/{id}/availability", 1, True, 7, "device",
              "`online` / `offline` (ASCII); `offline` is the last will"),
    TopicSpec("event", ROOT + "/{id}/event", 1, False, 256, "device",
              "signed event JSON (payload v1, docs/mqtt.md#event-payload)"),
    TopicSpec("person", ROOT + "/{id}/person", 1, True, 3, "device", "`ON` / `OFF`: a person is present"),
    TopicSpec("doorbell", ROOT + "/{id}/doorbell", 1, False, 128, "device",
              'Home Assistant event JSON `{"event_type":"press","event_id":…}`'),
    TopicSpec("stats", ROOT + "/{id}/stats", 1, True, 1024, "device", "health heartbeat JSON"),
    TopicSpec("discovery", "{prefix}/device/{id}/config", 1, True, 4096, "device",
              "Home Assistant device discovery JSON"),
    TopicSpec("ha_status", "{prefix}/status", 1, True, 7, "hub", "`online` / `offline` from Home Assistant"),
    TopicSpec("recipient", ROOT + "/{id}/recipient/{leaf}", 1, False, 65536, "device",
              "export bundle chunks for a recipient (vault; sealed, never plaintext media)"),
    TopicSpec("pairing", ROOT + "/{id}/pair/{leaf}", 1, False, 4096, "device",
              "pairing messages (provisioning)"),
    TopicSpec("request_in", ROOT + "/{id}/request/in", 1, False, 8192, "requester",
              "a requester's signed footage request (vault request v1, docs/formats.md)"),
    TopicSpec("request", ROOT + "/{id}/request", 1, False, 9216, "device",
              "device-signed request notice for the owner's hub: the request as received, never whether footage "
              "exists"),
    TopicSpec("request_ack", ROOT + "/{id}/request/ack/{leaf}", 1, False, 512, "device",
              "device-signed acknowledgement to the requester (`q-<key id>`), the same whatever footage exists"),
    TopicSpec("owner_cmd", ROOT + "/{id}/owner/cmd", 1, False, 266240, "hub",
              "an owner-signed command (owner channel v1, docs/formats.md#owner-channel)"),
    TopicSpec("owner_reply", ROOT + "/{id}/owner/reply/{leaf}", 1, False, 65536, "device",
              "device-signed replies to one owner tool; media only as stored ciphertext or sealed to the owner"),
)
SPEC = {s.name: s for s in SPECS}


def check_segment(value: str, what: str) -> str:
    """Refuse a topic segment that could escape its level (``/``, ``+``, ``#``) or is empty/too long."""
    if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
        raise TopicError(f"{what} {value!r} is not a valid topic segment ([A-Za-z0-9_-], 1..64 chars)")
    return value


class Topics:
    """The topic names for one device.

    Args:
        device_id: the device id (``dk-…``), one topic level.
        prefix: Home Assistant discovery prefix.

    Raises:
        ValueError: a device id or prefix that is not a single safe topic level.
    """

    def __init__(self, device_id: str, *, prefix: str = DEFAULT_DISCOVERY_PREFIX) -> None:
        self.device_id = check_segment(device_id, "device id")
        self.prefix = check_segment(prefix, "discovery prefix")
        self._rx = [(s, s.regex(prefix)) for s in SPECS]

    def _t(self, name: str, leaf: str = "") -> str:
        return SPEC[name].pattern.format(id=self.device_id, prefix=self.prefix, leaf=leaf)

    @property
    def availability(self) -> str:
        return self._t("availability")

    @property
    def event(self) -> str:
        return self._t("event")

    @property
    def person(self) -> str:
        return self._t("person")

    @property
    def doorbell(self) -> str:
        return self._t("doorbell")

    @property
    def stats(self) -> str:
        return self._t("stats")

    @property
    def discovery(self) -> str:
        return self._t("discovery")

    @property
    def ha_status(self) -> str:
        return self._t("ha_status")

    @property
    def request_in(self) -> str:
        return self._t("request_in")

    @property
    def request(self) -> str:
        return self._t("request")

    @property
    def owner_cmd(self) -> str:
        return self._t("owner_cmd")

    def owner_reply(self, tool_id: str) -> str:
        """``doorkeep/<id>/owner/reply/<tool_id>`` — replies to the owner tool that named ``tool_id``."""
        return self._t("owner_reply", check_segment(tool_id, "owner reply topic"))

    def request_ack(self, requester_id: str) -> str:
        """``doorkeep/<id>/request/ack/<requester_id>`` — the device's acknowledgement of an accepted request."""
        return self._t("request_ack", check_segment(requester_id, "request ack topic"))

    def recipient(self, recipient_id: str, *parts: str) -> str:
        """``doorkeep/<id>/recipient/<recipient_id>[/<part>…]`` — the vault's chunked export."""
        leaf = "/".join(check_segment(p, "recipient topic part") for p in (recipient_id, *parts))
        return self._t("recipient", leaf)

    def pairing(self, *parts: str) -> str:
        """``doorkeep/<id>/pair/<part>[/…]`` — provisioning's pairing exchange (at least one part)."""
        if not parts:
            raise InvalidArgument("a pairing topic needs at least one part, e.g. pairing('hello')")
        return self._t("pairing", "/".join(check_segment(p, "pairing topic part") for p in parts))

    def spec_for(self, topic: str) -> TopicSpec | None:
        """The spec a concrete topic belongs to (for this device), or ``None`` if it is not a doorkeep topic."""
        for spec, rx in self._rx:
            if rx.match(topic) and (self.device_id in topic.split("/") or "{id}" not in spec.pattern):
                return spec
        return None

    def retained(self) -> list[str]:
        """Every topic on which the device leaves a retained message (discovery, availability, presence, stats):
        what must be cleared when this identity goes away."""
        return [self._t(s.name) for s in SPECS if s.retain and s.publisher == "device" and "{leaf}" not in s.pattern]

    def subscriptions(self, *, discovery: bool = True) -> list[tuple[str, int]]:
        """What the device subscribes to: Home Assistant's birth message (to re-announce discovery)."""
        return [(self.ha_status, SPEC["ha_status"].qos)] if discovery else []

    @staticmethod
    def hub_event_filter(device_id: str | None = None) -> str:
        """What a hub subscribes to for signed events: one device, or every device (``doorkeep/+/event``)."""
        return SPEC["event"].pattern.format(id=check_segment(device_id, "device id") if device_id else "+")
