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

import contextlib
import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..config import Config, VaultSection
from ..errors import DoorkeepError, FormatError, PublishError, ReleaseError, VaultError
from ..events import Event
from ..fileio import fsync_dir, write_all
from ..identity import DeviceIdentity
from ..worker import Worker
from . import retention
from .audit import AuditLog
from .bundle_chunks import DEFAULT_CHUNK, Acked, bundle_chunks, publish_windowed
from .bundles import BundleClip, BundleStream
from .clips import Codec
from .grants import Grant, ReplaySet, check_grant
from .keys import OWNER_PUB_FILE, PublicKeys, load_owner_public
from .locations import remember_vault_dir
from .recorder import ClipRecorder, PacketSource
from .requests import Notification, handle_request
from .store import ClipStore

log = logging.getLogger(__name__)
AUDIT_FILE = "audit.log"
REPLAY_FILE = "grants.used"
VAULT_DIR = "vault"

PublishRaw = Callable[..., Acked]


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
        self._in_release: set[str] = set()

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
        keep += self._in_release
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
        """Release to a file (mode 0600). The bundle streams into a temporary file next to ``path`` and is fsynced;
        only then is the grant recorded as used, and then the file renamed into place. On any failure the temporary
        file is removed, the grant stays unspent and ``export_failed`` is audited. Raises :class:`ReleaseError`."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
        if p.is_dir():  # checked before the grant is looked at, let alone spent
            raise ReleaseError("bad_destination", f"{p} is a directory")
        with self._release_lock:
            grant, stream = self._accept(grant_bytes, clip_ids=None, now=now)
            spent = False
            try:
                with self._exporting(grant):
                    _write_file(tmp, stream)
                self._spend(grant)
                spent = True
                os.replace(tmp, p)
                fsync_dir(p.parent)
            except (DoorkeepError, OSError) as exc:
                tmp.unlink(missing_ok=True)
                raise self._failed(grant, f"file:{p.name}", exc, spent=spent) from None
            self.audit.append("export", grant_id=grant.grant_id, destination=f"file:{p.name}", bytes=stream.size)
            return p

    def export_stream(self, grant_bytes: bytes, write: Callable[[bytes], object], *, destination: str,
                      clip_ids: Iterable[str] | None = None, now: float | None = None) -> Grant:
        """Release to any byte sink: ``write(piece)`` for each piece of the bundle, in order (constant memory).
        Bytes leave as they are written, so the grant is spent before the first one. Raises :class:`ReleaseError`."""
        def deliver(_grant: Grant, stream: BundleStream) -> int:
            for piece in stream:
                write(piece)
            return stream.size

        return self._deliver(grant_bytes, destination, deliver, clip_ids=clip_ids, now=now)[0]

    def export_mqtt(self, grant_bytes: bytes, publish_raw: PublishRaw, topic_for: Callable[[str], str], *,
                    chunk_size: int = DEFAULT_CHUNK, window: int = 8, timeout_s: float = 60.0,
                    stop: threading.Event | None = None, now: float | None = None) -> int:
        """Release over MQTT: the bundle's chunks go to ``topic_for(recipient_id)`` (e.g.
        ``Topics(device_id).recipient``; the id derives from the recipient's key) through
        ``publish_raw(topic, chunk, qos=1)`` (``MqttClient.publish_raw``), at most ``window`` unacknowledged at
        once. Blocks until every chunk is acknowledged; returns the number of chunks. The grant is spent before the
        first chunk leaves. A chunk not acknowledged within ``timeout_s``, or ``stop`` set, ends the export
        (audited ``export_failed``) with :class:`ReleaseError`."""
        def deliver(grant: Grant, stream: BundleStream) -> int:
            topic = topic_for(recipient_topic_id(grant.recipient))
            return publish_windowed(bundle_chunks(stream, chunk_size=chunk_size),
                                    lambda chunk: publish_raw(topic, chunk, qos=1),
                                    window=window, timeout_s=timeout_s, stop=stop)

        return self._deliver(grant_bytes, "mqtt", deliver, now=now)[1]

    def _deliver(self, grant_bytes: bytes, destination: str, deliver: Callable[[Grant, BundleStream], int], *,
                 clip_ids: Iterable[str] | None = None, now: float | None = None) -> tuple[Grant, int]:
        """Check, spend, stream out through ``deliver``, audit. Returns the grant and what ``deliver`` returned."""
        with self._release_lock:
            grant, stream = self._accept(grant_bytes, clip_ids=clip_ids, now=now)
            self._spend(grant)  # persisted before any byte leaves
            try:
                with self._exporting(grant):
                    n = deliver(grant, stream)
            except (DoorkeepError, OSError) as exc:
                raise self._failed(grant, destination, exc, spent=True) from None
            self.audit.append("export", grant_id=grant.grant_id, destination=destination, bytes=stream.size)
            return grant, n

    def _accept(self, grant_bytes: bytes, *, clip_ids: Iterable[str] | None,
                now: float | None) -> tuple[Grant, BundleStream]:
        """Check the grant and sign the bundle's head (reads only manifests). Refusals are audited."""
        owner = self.owner
        try:
            if owner is None:
                raise ReleaseError("no_owner", "this device has no paired owner")
            grant = check_grant(grant_bytes, owner=owner, device_id=self.identity.device_id,
                                existing=[c for c in self.store.clip_ids() if self.store.exists(c)],
                                replay=self.replay, now=now, requested=clip_ids)
            clips = [BundleClip(self.store.manifest_path(c), self.store.clip_path(c)) for c in grant.clip_ids]
            return grant, BundleStream(self.identity, grant, owner, clips, created_at=now)
        except ReleaseError as exc:
            self.audit.append("grant_refused", reason=exc.reason, detail=str(exc)[:300])
            raise
        except (OSError, VaultError) as exc:
            self.audit.append("grant_refused", reason="unreadable", detail=str(exc)[:300])
            raise ReleaseError("unreadable", str(exc)) from None

    def _spend(self, grant: Grant) -> None:
        self.replay.add(grant.grant_id)
        self.audit.append("grant_accepted", grant_id=grant.grant_id, clips=list(grant.clip_ids),
                          recipient=grant.recipient.sign.hex(), recipient_name=grant.recipient_name,
                          purpose=grant.purpose, requester=grant.requester, expires_at=grant.expires_at)

    def _failed(self, grant: Grant, destination: str, exc: BaseException, *, spent: bool) -> ReleaseError:
        """Audit an export that did not complete and return the error to raise."""
        reason = _failure_reason(exc)
        self.audit.append("export_failed", grant_id=grant.grant_id, destination=destination, reason=reason,
                          detail=str(exc)[:300], spent=spent)
        log.error("export of grant %s to %s failed: %s", grant.grant_id, destination, exc)
        return ReleaseError("export_failed", f"{reason}: {exc}")

    @contextlib.contextmanager
    def _exporting(self, grant: Grant) -> Iterator[None]:
        """Retention keeps the clips of a release in progress."""
        self._in_release.update(grant.clip_ids)
        try:
            yield
        finally:
            self._in_release.difference_update(grant.clip_ids)

    def handle_request(self, data: bytes) -> Notification:
        """A requester's signed request → audited notification for the owner's hub (never reveals footage)."""
        return handle_request(data, device_id=self.identity.device_id, audit=self.audit)


def _failure_reason(exc: BaseException) -> str:
    if isinstance(exc, ReleaseError):
        return exc.reason
    if isinstance(exc, PublishError):
        return "publish_failed"
    if isinstance(exc, FormatError):
        return "clip_damaged"  # a clip no longer matches its signed manifest
    if isinstance(exc, OSError):
        return errno.errorcode.get(exc.errno or 0, "os_error")
    return type(exc).__name__


def _write_file(path: Path, stream: BundleStream) -> None:
    """Stream a bundle into a new private file and fsync it (the caller renames it into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a stale one from a crash
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        for piece in stream:
            write_all(fd, piece)
        os.fsync(fd)
    finally:
        os.close(fd)


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
    audit = AuditLog.open(state / AUDIT_FILE, identity, segment_bytes=s.audit_segment_bytes,
                          max_bytes=s.audit_max_bytes or None)
    owner_path = Path(s.owner_key).expanduser() if s.owner_key else state / OWNER_PUB_FILE
    codec = Codec("h264", (1, 1_000_000), config.capture.main_width, config.capture.main_height)
    audit.append("boot", device_id=identity.device_id, t=round(time.time(), 3))
    return Vault(section=s, identity=identity, store=store, audit=audit, replay=ReplaySet(state / REPLAY_FILE),
                 owner_path=owner_path, codec=codec)
