"""The vault, composed: clip store + recorder + retention + audit log + release handling, from ``[vault]`` config.

The application wires it once::

    vault = build_vault(config, identity)
    vault.stats = stats               # vault_faults, audit_failed
    vault.start(packet_ring)          # recovers torn clips, applies retention, starts the clip writer and keeper
    tracker_sinks.append(vault)       # person events -> clips (and the audit log)
    heartbeat(audit_head=vault.audit_head, flags=vault.flags)   # {"vault_fault": "EIO"} while faulted
    ...
    vault.stop()

Releases stream in constant memory (:mod:`.bundles`): ``vault.export_to_file(grant, path)``,
``vault.export_mqtt(grant, client.publish_raw, topics.recipient)`` (windowed QoS 1) or
``vault.export_stream(grant, write, destination=...)``. Each raises :class:`ReleaseError`; every attempt is
audited (``grant_refused``, ``grant_accepted`` + ``export``, or ``export_failed``) and a refused one lets no
footage byte out.

Storage errors are classified once (device/vault/faults.py): only a full disk makes retention free space; any other
error stops recording (capture and events go on) until the keeper's retries succeed. The keeper
(device/vault/keeper.py) runs retention on a timer and on a full disk, and holds the space reserve that keeps the
audit log and the outbox writable on a full disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from ..config import Config, VaultSection
from ..disk import SpaceReserve, free_bytes, is_disk_full
from ..events import Event
from ..identity import DeviceIdentity
from ..stats import Stats
from ..worker import Worker
from . import retention
from .audit import AuditLog
from .bundle_chunks import DEFAULT_CHUNK
from .clips import Codec
from .clockwatch import CLOCK_FILE, ClockWatch
from .faults import GuardedAudit, VaultHealth
from .grants import Grant, ReplaySet
from .keeper import VaultKeeper
from .keys import OWNER_PUB_FILE, PublicKeys, load_owner_public
from .locations import remember_vault_dir
from .recorder import ClipRecorder, PacketSource
from .releases import PublishRaw, Releases, recipient_topic_id
from .store import ClipStore

log = logging.getLogger(__name__)
AUDIT_FILE = "audit.log"
REPLAY_FILE = "grants.used"
VAULT_DIR = "vault"
RESERVE_FILE = "space.reserve"

__all__ = ["AUDIT_FILE", "REPLAY_FILE", "VAULT_DIR", "Vault", "build_vault", "recipient_topic_id"]


class Vault:
    """Everything the device does with footage. Thread-safe entry points; see the module docstring."""

    def __init__(self, *, section: VaultSection, identity: DeviceIdentity, store: ClipStore, audit: AuditLog,
                 replay: ReplaySet, owner_path: Path, codec: Codec | None = None,
                 reserve: SpaceReserve | None = None, clock_path: Path | None = None) -> None:
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
        #: Called with a clip id on the event thread when a person event opens a clip (e.g. the thumbnail taker);
        #: must not block.
        self.on_clip_opened: list[Callable[[str], None]] = []
        #: Held back on the state filesystem for the audit log and the outbox; released on a full disk.
        self.reserve = reserve or SpaceReserve(owner_path.parent / RESERVE_FILE, 0)
        #: Audit appends that never stop recording or events (a full disk releases the reserve first).
        self.guarded = GuardedAudit(audit, release_space=self.reserve.release)
        self.health = VaultHealth(audit=self.guarded.append, max_retry_s=section.max_retry_s)
        self.keeper = VaultKeeper(self, interval_s=section.retention_interval_s, max_retry_s=section.max_retry_s,
                                  headroom=max(2 * section.chunk_bytes, 1 << 20))
        self.reserve.on_release = self.keeper.need_space
        self.health.on_report = self.keeper.wake
        #: Wall-clock jumps: retention by age never counts one larger than ``max_clock_jump_s``.
        self.clock = ClockWatch(clock_path, max_jump_s=section.max_clock_jump_s, audit=self.guarded.append)
        self._stats: Stats | None = None
        #: Bytes the clips take (files, manifests, thumbnails): Home Assistant's *Storage used*. Measured at start,
        #: after each clip and each retention pass, so readers (the heartbeat) never scan the disk themselves.
        self.bytes_used = 0

    @property
    def stats(self) -> Stats | None:
        """Where ``vault_faults`` and ``audit_failed`` are counted (the device's :class:`Stats`)."""
        return self._stats

    @stats.setter
    def stats(self, stats: Stats | None) -> None:
        self._stats = self.health.stats = self.guarded.stats = stats

    def flags(self) -> dict[str, str]:
        """For the heartbeat: ``{"vault_fault": "<errno name>"}`` while recording is stopped by a storage fault."""
        return self.health.flags()

    @property
    def owner(self) -> PublicKeys | None:
        """The pinned owner keys, or ``None`` before pairing."""
        return load_owner_public(self.owner_path) if self.owner_path.exists() else None

    @property
    def workers(self) -> list[Worker]:
        """The vault's supervised threads: the keeper once started, the clip writer while recording."""
        rec = self.recorder
        return ([self.keeper] if self.keeper.started else []) + ([rec.worker] if rec is not None else [])

    def audit_head(self) -> str:
        """Hex head hash of the audit log."""
        return self.audit.head()

    def audit_position(self) -> tuple[int, str]:
        """(records, head hex) of the audit log, for the signed MQTT heartbeat."""
        return self.audit.position()

    # ---------------------------------------------------------------------------------------- recording
    def start(self, ring: PacketSource) -> None:
        """Recover torn clips, apply retention, then record person events from ``ring``. Without a pinned owner
        nothing is recorded (audited ``vault_idle``) until pairing pins one; the next person event then starts
        the recorder."""
        self._ring = ring
        self.reserve.ensure()
        try:
            self.store.recover(self.identity, self.guarded)
            self.enforce_retention()
        except OSError as exc:  # a faulty or full vault disk must not stop the device: capture and events go on
            if is_disk_full(exc):
                self.keeper.need_space()
            else:
                self.health.report(exc, op="start")
            self.measure()
        self.keeper.start()
        if not self._start_recorder():
            why = "disabled in config" if not self.section.enabled else f"no owner key pinned at {self.owner_path}"
            self.audit.append("vault_idle", reason=why)
            log.warning("vault not recording: %s", why)

    def _start_recorder(self) -> bool:
        owner = self.owner
        if self._ring is None or not self.section.enabled or owner is None:
            return False
        s = self.section
        self.recorder = ClipRecorder(self.store, owner=owner, identity=self.identity, audit=self.guarded.append,
                                     health=self.health, ring=self._ring, codec=self.codec, postroll_s=s.postroll_s,
                                     chunk_bytes=s.chunk_bytes, queue_size=s.queue_packets,
                                     fsync_chunks=s.fsync_chunks, on_closed=self._after_clip,
                                     max_clip_s=s.max_clip_s, max_clip_bytes=int(s.max_clip_mb * (1 << 20)),
                                     may_record=lambda: not self.keeper.waiting_for_space,
                                     need_space=self.keeper.need_space)
        self.recorder.start()
        self.guarded.append("vault_start", owner_key=owner.sign.hex(), clips=len(self.store.clip_ids()))
        return True

    def on_event(self, event: Event) -> None:
        """EventSink: audit the event and let the recorder open/extend/close clips. Never raises for storage: an
        audit record the disk cannot take is logged and counted, and recording goes on."""
        self.guarded.append("event", event_id=event.event_id, kind=event.kind, phase=event.phase, t=event.t)
        if self.recorder is None and event.phase in ("start", "press") and self._ring is not None:
            self._start_recorder()  # an owner was pinned since start()
        if self.recorder is not None:
            before = self.recorder.recording
            self.recorder.on_event(event)
            opened = self.recorder.recording
            if opened is not None and opened != before:
                for fn in self.on_clip_opened:
                    try:
                        fn(opened)
                    except Exception:
                        log.exception("clip-opened listener failed for %s", opened)

    def stop(self) -> None:
        self._ring = None
        self.keeper.stop()
        self.clock.save()
        if self.recorder is not None:
            self.recorder.stop()
            self.recorder = None

    def close(self) -> None:
        self.stop()
        self.audit.close()

    def enforce_retention(self, *, disk_full: bool = False, free_target: int = 0) -> list[str]:
        """Apply the age and size limits. ``disk_full`` only after a real ENOSPC/EDQUOT (device/disk.py): then at
        least a tenth of what the vault holds is freed, and clips go until ``free_target`` bytes are free. Ages are
        trusted ages: a wall-clock jump larger than ``max_clock_jump_s`` is not counted (audited ``clock_jump``).
        Raises ``OSError`` from the disk (the keeper classifies it)."""
        now = self.clock.check()
        if self.clock.jumps:
            self.clock.forget_before(m.t_start for m in self.store.manifests())
        keep = [self.recorder.recording] if self.recorder and self.recorder.recording else []
        keep += self.releases.in_use
        max_bytes = self.section.max_bytes
        if disk_full:
            max_bytes = min(max_bytes, int(self.store.total_bytes() * 0.9))
        try:
            return retention.enforce(self.store, max_age_s=self.section.max_age_days * 86400, max_bytes=max_bytes,
                                     audit=self.guarded, keep=keep,
                                     reason_bytes="disk_full" if disk_full else "max_bytes",
                                     free=lambda: free_bytes(self.store.root), free_target=free_target, now=now,
                                     age=lambda t_start: self.clock.age(t_start, now))
        finally:
            self.measure()

    def measure(self) -> int:
        """Re-measure :attr:`bytes_used` (a disk error keeps the last figure: the keeper reports those)."""
        try:
            self.bytes_used = self.store.total_bytes()
        except OSError:
            pass
        return self.bytes_used

    def recover_torn(self) -> None:
        """Recover the clips the recorder closed torn (cut back to their last complete chunk; audited).
        Raises ``OSError`` from the disk; the clips not yet recovered are retried at the next call."""
        rec = self.recorder
        if rec is None:
            return
        torn = rec.take_torn()
        for clip_id, (prev_clip, part) in list(torn.items()):
            try:
                r = self.store.recover_one(clip_id, self.identity, prev_clip=prev_clip, part=part)
            except FileNotFoundError:
                continue
            except OSError:
                rec.put_back_torn(torn)  # retried at the next pass
                raise
            finally:
                torn.pop(clip_id, None)
            self.guarded.append("clip_" + r.action, clip_id=clip_id, chunks=r.chunks, bytes_cut=r.bytes_cut,
                                reason="write_error")

    def _after_clip(self, clip_id: str | None, torn: bool) -> None:
        self.measure()
        if not torn:
            self.keeper.clip_written()

    def shred_all(self) -> int:
        """Factory reset: stop recording and destroy every clip (sealed-key header first). Audited."""
        self.stop()
        n = self.store.shred_all()
        self.measure()
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


def build_vault(config: Config, identity: DeviceIdentity, *, main_size: tuple[int, int] | None = None) -> Vault:
    """The vault for a loaded configuration (state dir layout: ``vault/``, ``audit.log``, ``grants.used``,
    ``owner.pub``, ``clock.json``). Opening the audit log repairs a torn last record (audited). ``main_size``: the
    size the source really encodes (recorded in every manifest's codec; default ``[capture]`` main size)."""
    state = config.state_dir
    s = config.vault
    store = ClipStore(Path(s.dir).expanduser() if s.dir else state / VAULT_DIR)
    remember_vault_dir(state, store.root)  # a factory reset shreds every vault this device ever used
    audit = AuditLog.open(state / AUDIT_FILE, identity, segment_bytes=s.audit_segment_bytes,
                          max_bytes=s.audit_max_bytes or None)
    owner_path = Path(s.owner_key).expanduser() if s.owner_key else state / OWNER_PUB_FILE
    w, h = main_size or (config.capture.main_width, config.capture.main_height)
    codec = Codec("h264", (1, 1_000_000), w, h)
    vault = Vault(section=s, identity=identity, store=store, audit=audit, replay=ReplaySet(state / REPLAY_FILE),
                  owner_path=owner_path, codec=codec, reserve=SpaceReserve(state / RESERVE_FILE, s.reserve_bytes),
                  clock_path=state / CLOCK_FILE)
    vault.guarded.append("boot", device_id=identity.device_id, t=round(time.time(), 3))
    return vault
