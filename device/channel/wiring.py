"""The device's inbound side composed from config: the inbox, the request gate, the owner channel, snapshots.

Example (device/assembly.py does this)::

    channel = build_channel(config, identity, publisher.client, publisher.topics, vault=vault, ring=bell.ring,
                            apply_config=handler)     # handler injected by the service (provisioning)
    channel.start()
    ...
    channel.close()
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..identity import DeviceIdentity
from ..publish.mqtt import MqttClient
from ..publish.topics import SPEC, Topics
from ..request_relay import RequestGate, request_limits
from ..vault.audit import AuditLog
from ..vault.keys import OWNER_PUB_FILE, PublicKeys, load_owner_public
from ..vault.vault import AUDIT_FILE, Vault
from .commands import ChannelParts, ConfigHandler, OwnerChannel
from .inbox import Inbox
from .limits import AuditTally, FreshnessWindow, TokenBucket
from .snapshots import SnapshotTaker
from .transfer import Streamer, TransferWorker

log = logging.getLogger(__name__)
COMMANDS_SEEN = "owner_commands.seen"


@dataclass
class DeviceChannel:
    """Everything the device receives over MQTT and answers. ``start``/``close``."""

    inbox: Inbox
    gate: RequestGate
    owner: OwnerChannel
    transfers: TransferWorker
    audit: AuditLog
    snapshots: SnapshotTaker | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def workers(self) -> list[Any]:
        """The channel's supervised threads (register them with the Supervisor)."""
        return [w for w in (self.inbox, self.transfers, self.snapshots) if w is not None]

    def start(self) -> None:
        self.transfers.start()
        if self.snapshots is not None:
            self.snapshots.start()
        self.inbox.start()

    def close(self) -> None:
        self.inbox.stop()
        self.transfers.stop()
        if self.snapshots is not None:
            self.snapshots.stop()
        for fn in self._closers:
            fn()


def build_channel(config: Config, identity: DeviceIdentity, client: MqttClient, topics: Topics, *,
                  vault: Vault | None, ring: Any = None, apply_config: ConfigHandler | None = None,
                  on_applied: Callable[[dict[str, Any]], None] | None = None) -> DeviceChannel:
    """The inbound side for ``config`` (limits from ``[channel]``). Not started."""
    c = config.channel
    state = config.state_dir
    closers: list[Callable[[], None]] = []
    if vault is not None:
        audit: AuditLog = vault.audit
    else:  # no vault, but refusals, requests and owner commands are still audited
        audit = AuditLog.open(state / AUDIT_FILE, identity)
        closers.append(audit.close)
    owner_path = vault.owner_path if vault is not None else state / OWNER_PUB_FILE

    def owner() -> PublicKeys | None:
        return load_owner_public(owner_path) if owner_path.exists() else None

    snapshots = SnapshotTaker(ring, identity=identity, owner=owner) if ring is not None else None
    if snapshots is not None and vault is not None:
        store = vault.store
        vault.on_clip_opened.append(lambda clip_id: snapshots.for_clip(clip_id, store.snapshot_path(clip_id)))
    gate = RequestGate(client, topics, identity=identity, audit=audit,
                       **request_limits(state, audit, skew_s=c.max_skew_s,
                                        per_key_per_hour=c.request_per_key_per_hour,
                                        per_key_burst=c.request_per_key_burst, overall_per_hour=c.request_per_hour,
                                        overall_burst=c.request_burst, refusal_interval_s=c.refusal_audit_s))
    transfers = TransferWorker()
    parts = ChannelParts(identity=identity, vault=vault, audit=audit, owner=owner,
                         live_snapshot=snapshots.live if snapshots is not None else None, apply_config=apply_config,
                         on_applied=on_applied)
    owner_channel = OwnerChannel(
        client, topics, parts, window=FreshnessWindow(state / COMMANDS_SEEN, skew_s=c.max_skew_s),
        bucket=TokenBucket(rate=c.command_rate, burst=c.command_burst),
        refused=AuditTally(audit, "owner_cmd_refused", interval_s=c.refusal_audit_s, what="refused owner commands"),
        accepted=AuditTally(audit, "owner_commands", interval_s=c.refusal_audit_s, what="owner commands handled",
                              level=logging.INFO),
        transfers=transfers, streamer=Streamer(client, window=config.mqtt.inflight))
    inbox = Inbox(client, tickers=[gate.refused.tick, owner_channel.refused.tick, owner_channel.accepted.tick])
    inbox.route(topics.request_in, gate, max_bytes=SPEC["request_in"].max_bytes, qos=SPEC["request_in"].qos)
    inbox.route(topics.owner_cmd, owner_channel, max_bytes=SPEC["owner_cmd"].max_bytes, qos=SPEC["owner_cmd"].qos)
    return DeviceChannel(inbox, gate, owner_channel, transfers, audit, snapshots, closers)
