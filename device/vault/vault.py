"""The vault, composed: clip store + recorder + retention + audit log + release handling, from ``[vault]`` config.

The application wires it once::

    vault = build_vault(config, identity)
    vault.start(packet_ring)          # recovers torn clips, applies retention, starts the clip writer
    tracker_sinks.append(vault)       # person events -> clips (and the audit log)
    heartbeat(audit_head=vault.audit_head)
    ...
    vault.stop()

Releases stream in constant memory (:mod:`.bundles`): ``vault.export_to_file(grant, path)``,
``vault.export_mqtt(grant, client.publish_raw, topics.recipient)`` (windowed QoS 1) or
``vault.export_stream(grant, write, destination=...)``. Each raises :class:`ReleaseError`; every attempt is
audited (``grant_refused``, ``grant_accepted`` + ``export``, or ``export_failed``) and a refused one lets no
footage byte out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..config import Config, VaultSection
from ..events import Event
from ..identity import DeviceIdentity
from ..worker import Worker
from . import retention
from .audit import AuditLog
from .bundle_chunks import DEFAULT_CHUNK
from .clips import Codec
from .grants import Grant, ReplaySet
from .keys import OWNER_PUB_FILE, PublicKeys, load_owner_public
from .locations import remember_vault_dir
from .recorder import ClipRecorder, PacketSource
from .releases import PublishRaw, Releases, recipient_topic_id
from .requests import Notification, handle_request
from .store import ClipStore

log = logging.getLogger(__name__)
AUDIT_FILE = "audit.log"
REPLAY_FILE = "grants.used"
VAULT_DIR = "vault"

__all__ = ["AUDIT_FILE", "REPLAY_FILE", "VAULT_DIR", "Vault", "build_vault", "recipient_topic_id"]


class Vault:
    """Everything the device does with footage. Thread-safe entry points; see the module docstring."""

    def __init__(self, *, section: VaultSection, identity: DeviceIdentity, store: ClipStore, audit: AuditLog,
                 replay: ReplaySet, owner_path: Path, codec: Codec | None = None) -> None:
        self.section = section
        self.identity = identity
        self.store = store
        self.audit = audit
        self.replay = replay
        self.owner_path = owner_path
        self.codec = codec or Codec()
        self.recorder: ClipRecorder | None = None
        self._ring: PacketSource | None = None
        self.releases = Releases(identity=identity, store=store, audit=audit, replay=replay,
                                 owner=lambda: self.owner)

    @property
    def owner(self) -> PublicKeys | None:
        """The pinned owner keys, or ``None`` before pairing."""
        return load_owner_public(self.owner_path) if self.owner_path.exists() else None

    @property
    def workers(self) -> list[Worker]:
        """The vault's supervised threads: the clip writer while recording."""
        rec = self.recorder
        return [rec.worker] if rec is not None else []

    def audit_head(self) -> str:
        """Hex head hash of the audit log (for the MQTT heartbeat)."""
        return self.audit.head()

    # ---------------------------------------------------------------------------------------- recording
    def start(self, ring: PacketSource) -> None:
        """Recover torn clips, apply retention, then record person events from ``ring``. Without a pinned owner
        nothing is recorded (audited ``vault_idle``) until pairing pins one; the next person event then starts
        the recorder."""
        self._ring = ring
        self.store.recover(self.identity, self.audit)
        self.enforce_retention()
        if not self._start_recorder():
            why = "disabled in config" if not self.section.enabled else f"no owner key pinned at {self.owner_path}"
            self.audit.append("vault_idle", reason=why)
            log.warning("vault not recording: %s", why)

    def _start_recorder(self) -> bool:
        owner = self.owner
        if self._ring is None or not self.section.enabled or owner is None:
            return False
        s = self.section
        self.recorder = ClipRecorder(self.store, owner=owner, identity=self.identity, audit=self.audit,
                                     ring=self._ring, codec=self.codec, postroll_s=s.postroll_s,
                                     chunk_bytes=s.chunk_bytes, queue_size=s.queue_packets,
                                     fsync_chunks=s.fsync_chunks, on_closed=self._after_clip)
        self.recorder.start()
        self.audit.append("vault_start", owner_key=owner.sign.hex(), clips=len(self.store.clip_ids()))
        return True

    def on_event(self, event: Event) -> None:
        """EventSink: audit the event and let the recorder open/extend/close clips."""
        self.audit.append("event", event_id=event.event_id, kind=event.kind, phase=event.phase, t=event.t)
        if self.recorder is None and event.phase == "start" and self._ring is not None:
            self._start_recorder()  # an owner was pinned since start()
        if self.recorder is not None:
            self.recorder.on_event(event)

    def stop(self) -> None:
        self._ring = None
        if self.recorder is not None:
            self.recorder.stop()
            self.recorder = None

    def close(self) -> None:
        self.stop()
        self.audit.close()

    def enforce_retention(self, *, disk_full: bool = False) -> list[str]:
        keep = [self.recorder.recording] if self.recorder and self.recorder.recording else []
        keep += self.releases.in_use
        max_bytes = self.section.max_bytes
        if disk_full:  # free at least a tenth of what we hold
            max_bytes = min(max_bytes, int(self.store.total_bytes() * 0.9))
        return retention.enforce(self.store, max_age_s=self.section.max_age_days * 86400, max_bytes=max_bytes,
                                 audit=self.audit, keep=keep, reason_bytes="disk_full" if disk_full else "max_bytes")

    def _after_clip(self, clip_id: str | None, torn: bool) -> None:
        try:
            self.enforce_retention(disk_full=torn)
        except OSError:
            log.exception("retention failed")

    def shred_all(self) -> int:
        """Factory reset: stop recording and destroy every clip (sealed-key header first). Audited."""
        self.stop()
        n = self.store.shred_all()
        self.audit.append("vault_shred_all", clips=n)
        return n

    # ----------------------------------------------------------------------------------------- releases
    def export_to_file(self, grant_bytes: bytes, path: str | Path, *, now: float | None = None) -> Path:
        """Release to a file: see :meth:`.releases.Releases.export_to_file`."""
        return self.releases.export_to_file(grant_bytes, path, now=now)

    def export_stream(self, grant_bytes: bytes, write: Callable[[bytes], object], *, destination: str,
                      clip_ids: Iterable[str] | None = None, now: float | None = None) -> Grant:
        """Release to any byte sink: see :meth:`.releases.Releases.export_stream`."""
        return self.releases.export_stream(grant_bytes, write, destination=destination, clip_ids=clip_ids, now=now)

    def export_mqtt(self, grant_bytes: bytes, publish_raw: PublishRaw, topic_for: Callable[[str], str], *,
                    chunk_size: int = DEFAULT_CHUNK, window: int = 8, timeout_s: float = 60.0,
                    stop: threading.Event | None = None, now: float | None = None) -> int:
        """Release over MQTT, windowed: see :meth:`.releases.Releases.export_mqtt`."""
        return self.releases.export_mqtt(grant_bytes, publish_raw, topic_for, chunk_size=chunk_size, window=window,
                                         timeout_s=timeout_s, stop=stop, now=now)

    def handle_request(self, data: bytes) -> Notification:
        """A requester's signed request → audited notification for the owner's hub (never reveals footage)."""
        return handle_request(data, device_id=self.identity.device_id, audit=self.audit)


def build_vault(config: Config, identity: DeviceIdentity) -> Vault:
    """The vault for a loaded configuration (state dir layout: ``vault/``, ``audit.log``, ``grants.used``,
    ``owner.pub``). Opening the audit log repairs a torn last record (audited)."""
    state = config.state_dir
    s = config.vault
    store = ClipStore(Path(s.dir).expanduser() if s.dir else state / VAULT_DIR)
    remember_vault_dir(state, store.root)  # a factory reset shreds every vault this device ever used
    audit = AuditLog.open(state / AUDIT_FILE, identity, segment_bytes=s.audit_segment_bytes,
                          max_bytes=s.audit_max_bytes or None)
    owner_path = Path(s.owner_key).expanduser() if s.owner_key else state / OWNER_PUB_FILE
    codec = Codec("h264", (1, 1_000_000), config.capture.main_width, config.capture.main_height)
    audit.append("boot", device_id=identity.device_id, t=round(time.time(), 3))
    return Vault(section=s, identity=identity, store=store, audit=audit, replay=ReplaySet(state / REPLAY_FILE),
                 owner_path=owner_path, codec=codec)
