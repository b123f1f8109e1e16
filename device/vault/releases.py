"""Releases: check an owner's grant and stream its bundle out — to a file, over MQTT, or to any byte sink.

Every path checks the grant against the pinned owner key first (a refusal is audited ``grant_refused`` and lets no
footage byte out), then streams the bundle in constant memory (:class:`~.bundles.BundleStream`), and audits what
really happened: ``grant_accepted`` + ``export``, or ``export_failed`` (with ``spent``: whether the grant was used
up). Ordering:

- **file**: the output path is checked, the bundle written to a temporary file beside it and fsynced, *then* the
  grant recorded as used, *then* the file renamed into place (:class:`~doorkeep.device.fileio.AtomicOutput`);
  a failure before the rename removes the temporary file and leaves the grant unspent.
- **MQTT / stream**: bytes leave as they are produced, so the grant is spent before the first one.

While a release runs, retention keeps its clips (:attr:`Releases.in_use`). One release at a time.

For the owner channel (or any other transport with acknowledged messages)::

    chunks = vault.export_mqtt(grant_bytes, client.publish_raw, topics.recipient, window=8, timeout_s=60,
                               stop=worker_stop_event)
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..activity import log as activity
from ..errors import DoorkeepError, FormatError, PublishError, ReleaseError, VaultError
from ..fileio import AtomicOutput
from ..identity import DeviceIdentity
from ..lograte import FailureLog
from ..safe_text import printable
from .audit import AuditLog
from .bundle_chunks import DEFAULT_CHUNK, Acked, bundle_chunks, publish_windowed
from .bundles import BundleClip, BundleStream
from .grants import Grant, ReplaySet, check_grant
from .keys import PublicKeys
from .store import ClipStore

log = logging.getLogger(__name__)

PublishRaw = Callable[..., Acked]


class Releases:
    """Grant checks and streaming exports for one vault. Thread-safe (one release at a time)."""

    def __init__(self, *, identity: DeviceIdentity, store: ClipStore, audit: AuditLog, replay: ReplaySet,
                 owner: Callable[[], PublicKeys | None]) -> None:
        self.identity = identity
        self.store = store
        self.audit = audit
        self.replay = replay
        self._owner = owner
        self._lock = threading.Lock()
        #: Clips of the release in progress: retention must keep them.
        self.in_use: set[str] = set()
        #: Refused grants on the operator's stream: the first said, then counted once a minute (anyone who can
        #: publish to the device may send garbage).
        self._refusals = FailureLog(activity, "a grant", traceback=False)

    def export_to_file(self, grant_bytes: bytes, path: str | Path, *, now: float | None = None) -> Path:
        """Release to a file (mode 0600). The bundle streams into a temporary file next to ``path`` and is fsynced;
        only then is the grant recorded as used, and then the file renamed into place. On any failure the temporary
        file is removed, the grant stays unspent (unless only the rename failed) and ``export_failed`` is audited.

        Raises:
            InvalidArgument: ``path`` is a directory or its directory does not exist (before the grant is read).
            OSError: the temporary file cannot be created (a read-only or full directory), likewise before.
            ReleaseError: the grant was refused, or the export failed (``export_failed``).
        """
        p = Path(path)
        dest = f"file:{p.name}"
        with self._lock:
            out = AtomicOutput(p)
            try:
                grant, stream = self._accept(grant_bytes, clip_ids=None, now=now)
            except BaseException:
                out.discard()
                raise
            spent = False
            try:
                with self._exporting(grant):
                    for piece in stream:
                        out.write(piece)
                out.sync()
                self._spend(grant)
                spent = True
                out.commit()
            except (DoorkeepError, OSError) as exc:
                out.discard()
                raise self._failed(grant, dest, exc, spent=spent) from None
            self.audit.append("export", grant_id=grant.grant_id, destination=dest, bytes=stream.size)
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
        with self._lock:
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
        owner = self._owner()
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
            self._refusals.failed(f"(refused: {printable(str(exc))})")
            raise
        except (OSError, VaultError) as exc:
            self.audit.append("grant_refused", reason="unreadable", detail=str(exc)[:300])
            self._refusals.failed(f"(refused: unreadable: {printable(str(exc))})")
            raise ReleaseError("unreadable", str(exc)) from None

    def _spend(self, grant: Grant) -> None:
        self.replay.add(grant.grant_id)
        self.audit.append("grant_accepted", grant_id=grant.grant_id, clips=list(grant.clip_ids),
                          recipient=grant.recipient.sign.hex(), recipient_name=grant.recipient_name,
                          purpose=grant.purpose, requester=grant.requester, expires_at=grant.expires_at)
        activity.info("grant %s accepted: %d clip(s) for %s (%s)", grant.grant_id, len(grant.clip_ids),
                      printable(grant.recipient_name[:64]), printable(grant.purpose[:80]))

    def _failed(self, grant: Grant, destination: str, exc: BaseException, *, spent: bool) -> ReleaseError:
        """Audit an export that did not complete and return the error to raise (a full disk may refuse the audit
        record too: that is logged, and the export's own error still reaches the caller)."""
        reason = _failure_reason(exc)
        try:
            self.audit.append("export_failed", grant_id=grant.grant_id, destination=destination, reason=reason,
                              detail=str(exc)[:300], spent=spent)
        except OSError:
            log.exception("could not audit the failed export of grant %s", grant.grant_id)
        log.error("export of grant %s to %s failed: %s", grant.grant_id, destination, exc)
        return ReleaseError("export_failed", f"{reason}: {exc}")

    @contextlib.contextmanager
    def _exporting(self, grant: Grant) -> Iterator[None]:
        """Retention keeps the clips of a release in progress."""
        self.in_use.update(grant.clip_ids)
        try:
            yield
        finally:
            self.in_use.difference_update(grant.clip_ids)


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


def recipient_topic_id(recipient: PublicKeys) -> str:
    """A recipient's MQTT topic segment: ``r-`` + the first 8 bytes of its signing key, hex."""
    return "r-" + recipient.sign[:8].hex()


