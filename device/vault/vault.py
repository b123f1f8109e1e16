"""The vault, composed: clip store + recorder + retention + audit log + release handling, from ``[vault]`` config.

The application wires it once::

    vault = build_vault(config, identity)
    vault.start(packet_ring)          # recovers torn clips, applies retention, starts the clip writer
    tracker_sinks.append(vault)       # person events -> clips (and the audit log)
    heartbeat(audit_head=vault.audit_head)
    ...
    vault.stop()

Releases: ``vault.release(grant_bytes)`` returns a signed export bundle or raises :class:`ReleaseError`; every
attempt is audited and a refused one lets no footage byte out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..config import Config, VaultSection
from ..errors import ReleaseError, VaultError
from ..events import Event
from ..identity import DeviceIdentity
from ..worker import Worker
from . import retention
from .audit import AuditLog
from .bundles import BundleClip, build_bundle, bundle_chunks
from .clips import Codec
from .grants import Grant, ReplaySet, check_grant
from .keys import OWNER_PUB_FILE, PublicKeys, load_owner_public, write_atomic
from .locations import remember_vault_dir
from .recorder import ClipRecorder, PacketSource
from .requests import Notification, handle_request
from .store import ClipStore

log = logging.getLogger(__name__)
AUDIT_FILE = "audit.log"
REPLAY_FILE = "grants.used"
VAULT_DIR = "vault"

PublishRaw = Callable[..., object]


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
        self._release_lock = threading.Lock()

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
    def release(self, grant_bytes: bytes, *, clip_ids: Iterable[str] | None = None, destination: str = "file",
                now: float | None = None) -> tuple[Grant, bytes]:
        """Check a grant and build its export bundle. Raises :class:`ReleaseError` (audited) on any refusal."""
        with self._release_lock:
            owner = self.owner
            try:
                if owner is None:
                    raise ReleaseError("no_owner", "this device has no paired owner")
                grant = check_grant(grant_bytes, owner=owner, device_id=self.identity.device_id,
                                    existing=[c for c in self.store.clip_ids() if self.store.exists(c)],
                                    replay=self.replay, now=now, requested=clip_ids)
                clips = [BundleClip(self.store.manifest(c), self.store.clip_path(c).read_bytes())
                         for c in grant.clip_ids]
                self.replay.add(grant.grant_id)  # persisted before any byte leaves
            except ReleaseError as exc:
                self.audit.append("grant_refused", reason=exc.reason, detail=str(exc)[:300])
                raise
            except (OSError, VaultError) as exc:
                self.audit.append("grant_refused", reason="unreadable", detail=str(exc)[:300])
                raise ReleaseError("unreadable", str(exc)) from None
            self.audit.append("grant_accepted", grant_id=grant.grant_id, clips=list(grant.clip_ids),
                              recipient=grant.recipient.sign.hex(), recipient_name=grant.recipient_name,
                              purpose=grant.purpose, requester=grant.requester, expires_at=grant.expires_at)
            bundle = build_bundle(self.identity, grant, owner, clips, created_at=now)
            self.audit.append("export", grant_id=grant.grant_id, destination=destination, bytes=len(bundle))
            return grant, bundle

    def export_to_file(self, grant_bytes: bytes, path: str | Path, *, now: float | None = None) -> Path:
        """Release to a file (written atomically, mode 0600)."""
        p = Path(path)
        _, bundle = self.release(grant_bytes, destination=f"file:{p.name}", now=now)
        write_atomic(p, bundle, mode=0o600)
        return p

    def export_mqtt(self, grant_bytes: bytes, publish_raw: PublishRaw, topic_for: Callable[[str], str], *,
                    chunk_size: int = 60_000, now: float | None = None) -> list[object]:
        """Release over MQTT: ``publish_raw(topic, chunk, qos=1)`` (device/publish/mqtt.py ``MqttClient``) for
        every bundle chunk, to ``topic_for(recipient_id)`` (e.g. ``Topics(device_id).recipient``; the recipient id
        is derived from the recipient's key). Returns what ``publish_raw`` returned for each chunk (handles with
        ``wait(timeout)``)."""
        grant, bundle = self.release(grant_bytes, destination="mqtt", now=now)
        topic = topic_for(recipient_topic_id(grant.recipient))
        return [publish_raw(topic, c, qos=1) for c in bundle_chunks(bundle, chunk_size=chunk_size)]

    def handle_request(self, data: bytes) -> Notification:
        """A requester's signed request → audited notification for the owner's hub (never reveals footage)."""
        return handle_request(data, device_id=self.identity.device_id, audit=self.audit)


def recipient_topic_id(recipient: PublicKeys) -> str:
    """A recipient's MQTT topic segment: ``r-`` + the first 8 bytes of its signing key, hex."""
    return "r-" + recipient.sign[:8].hex()


def build_vault(config: Config, identity: DeviceIdentity) -> Vault:
    """The vault for a loaded configuration (state dir layout: ``vault/``, ``audit.log``, ``grants.used``,
    ``owner.pub``). Opening the audit log repairs a torn last record (audited)."""
    state = config.state_dir
    s = config.vault
    store = ClipStore(Path(s.dir).expanduser() if s.dir else state / VAULT_DIR)
    remember_vault_dir(state, store.root)  # a factory reset shreds every vault this device ever used
    audit = AuditLog.open(state / AUDIT_FILE, identity)
    owner_path = Path(s.owner_key).expanduser() if s.owner_key else state / OWNER_PUB_FILE
    codec = Codec("h264", (1, 1_000_000), config.capture.main_width, config.capture.main_height)
    audit.append("boot", device_id=identity.device_id, t=round(time.time(), 3))
    return Vault(section=s, identity=identity, store=store, audit=audit, replay=ReplaySet(state / REPLAY_FILE),
                 owner_path=owner_path, codec=codec)
