"""Home Assistant MQTT device discovery: the doorbell shows up in Home Assistant with no YAML.

One retained config at ``<prefix>/device/<device_id>/config`` declares the device and its entities:

- ``binary_sensor`` (device_class ``occupancy``): person presence, retained ``ON``/``OFF`` on ``…/person``;
- ``event`` (device_class ``doorbell``, event_types ``["press"]``): the button, on ``…/doorbell``;
- diagnostic ``sensor`` entities read from the retained stats heartbeat (``…/stats``): frame rate, dropped frames,
  inference time, storage used, outbox backlog;
- availability is the device's availability topic, backed by its last will.

The config is sent on every (re)connect and again whenever Home Assistant announces itself with ``online`` on
``<prefix>/status`` (it may have restarted with an empty state).

Example::

    announcer = DiscoveryAnnouncer(client, topics, device_name="Front door")
    announcer.attach()   # subscribes to homeassistant/status and announces on connect
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Iterable
from importlib import metadata
from typing import Any

from ..config import MqttSection
from ..errors import PayloadError
from .mqtt import MqttClient
from .topics import OFF, OFFLINE, ON, ONLINE, SPEC, Topics

log = logging.getLogger(__name__)


def _version() -> str:
    try:
        return metadata.version("doorkeep")
    except metadata.PackageNotFoundError:
        return "0"


#: Diagnostic sensors: (key in the stats heartbeat, name, unit, device_class, state_class). ``drops`` is a running
#: total since the service started (Home Assistant treats the drop to 0 after a restart as a reset).
HEALTH_SENSORS: tuple[tuple[str, str, str | None, str | None, str], ...] = (
    ("fps", "Frame rate", "fps", None, "measurement"),
    ("drops", "Dropped frames", None, None, "total_increasing"),
    ("inference_ms", "Inference time", "ms", "duration", "measurement"),
    ("storage_mb", "Storage used", "MB", "data_size", "measurement"),
    ("outbox", "Unsent events", None, None, "measurement"),
)


def discovery_config(topics: Topics, *, device_name: str) -> dict[str, Any]:
    """The device discovery document (a dict; :func:`discovery_payload` encodes it)."""
    did = topics.device_id
    avail = [{"topic": topics.availability, "payload_available": ONLINE.decode(),
              "payload_not_available": OFFLINE.decode()}]
    # Each component carries its own qos: Home Assistant 2024.11-2026.5 ignores the device-level one.
    cmps: dict[str, dict[str, Any]] = {
        f"{did}_person": {"p": "binary_sensor", "name": "Person", "device_class": "occupancy",
                          "state_topic": topics.person, "payload_on": ON.decode(), "payload_off": OFF.decode(),
                          "qos": SPEC["person"].qos, "unique_id": f"{did}_person"},
        f"{did}_doorbell": {"p": "event", "name": "Doorbell", "device_class": "doorbell", "event_types": ["press"],
                            "state_topic": topics.doorbell, "qos": SPEC["doorbell"].qos,
                            "unique_id": f"{did}_doorbell"},
    }
    for key, name, unit, dclass, sclass in HEALTH_SENSORS:
        c: dict[str, Any] = {"p": "sensor", "name": name, "state_topic": topics.stats,
                             "value_template": f"{{{{ value_json.{key} }}}}", "entity_category": "diagnostic",
                             "state_class": sclass, "qos": SPEC["stats"].qos, "unique_id": f"{did}_{key}"}
        if unit:
            c["unit_of_measurement"] = unit
        if dclass:
            c["device_class"] = dclass
        cmps[f"{did}_{key}"] = c
    return {
        "dev": {"ids": [did], "name": device_name, "mf": "doorkeep", "mdl": "doorkeep doorbell", "sw": _version()},
        "o": {"name": "doorkeep", "sw": _version()},
        "availability": avail,
        "qos": 1,
        "cmps": cmps,
    }


def discovery_payload(topics: Topics, *, device_name: str) -> bytes:
    """The retained discovery payload (compact JSON, within the documented bound)."""
    data = json.dumps(discovery_config(topics, device_name=device_name), separators=(",", ":")).encode()
    if len(data) > SPEC["discovery"].max_bytes:
        raise PayloadError(f"discovery payload is {len(data)} bytes, over {SPEC['discovery'].max_bytes}")
    return data


class DiscoveryAnnouncer:
    """Publishes the discovery config on connect and when Home Assistant comes back ``online``."""

    def __init__(self, client: MqttClient, topics: Topics, *, device_name: str) -> None:
        self.client = client
        self.topics = topics
        self.payload = discovery_payload(topics, device_name=device_name)
        self.announcements = 0

    def attach(self) -> None:
        for topic, qos in self.topics.subscriptions(discovery=True):
            self.client.subscribe(topic, self._on_ha_status, qos=qos)
        self.client.add_connect_listener(self.announce)

    def announce(self) -> None:
        spec = SPEC["discovery"]
        self.client.publish_raw(self.topics.discovery, self.payload, qos=spec.qos, retain=spec.retain)
        self.announcements += 1

    def _on_ha_status(self, _topic: str, payload: bytes) -> None:
        if payload.strip() == ONLINE:
            log.info("Home Assistant is online: re-announcing discovery")
            self.announce()

    def remove(self) -> None:
        """Delete the device from Home Assistant (an empty retained config)."""
        self.client.publish_raw(self.topics.discovery, b"", qos=1, retain=True)


def forget_device(client: MqttClient, topics: Topics, *, timeout: float = 5.0, also: Iterable[str] = ()) -> list[str]:
    """Remove an identity's traces from the broker: an empty retained message on every topic where the device left
    one (:meth:`Topics.retained`), and on ``also`` (the state directory's ledger, :mod:`.retained_ledger`: configs
    under an earlier discovery prefix, an earlier identity's). Home Assistant deletes the device and its entities
    when its discovery config goes. Returns the topics cleared.

    Raises:
        PublishError: the broker did not acknowledge (``PublishTimeout`` after ``timeout`` seconds).
    """
    cleared = sorted({*topics.retained(), *also})
    for handle in [client.publish_raw(t, b"", qos=1, retain=True) for t in cleared]:
        handle.wait(timeout)
    return cleared


def forget_on_broker(settings: MqttSection, device_id: str, *, timeout: float = 5.0,
                     also: Iterable[str] = ()) -> list[str]:
    """:func:`forget_device` through a connection of its own (factory reset, the demo's exit, ``doorkeep
    forget-device``): the broker and discovery prefix come from ``settings``.

    Raises:
        PublishError: the broker is unreachable or did not acknowledge within ``timeout`` seconds.
    """
    client = MqttClient(settings, client_id=f"doorkeep-forget-{secrets.token_hex(4)}")
    client.start()
    try:
        client.wait_connected(timeout)
        return forget_device(client, Topics(device_id, prefix=settings.discovery_prefix), timeout=timeout, also=also)
    finally:
        client.stop()
