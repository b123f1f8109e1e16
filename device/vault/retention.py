"""Retention: drop clips older than ``max_age_s`` and, oldest first, while the vault exceeds ``max_bytes``.

Deleting is shredding (sealed-key header overwritten + fsync, then unlink), and each deletion is audited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from .audit import AuditLog
from .store import ClipStore

log = logging.getLogger(__name__)


def enforce(store: ClipStore, *, max_age_s: float, max_bytes: int, audit: AuditLog | None = None,
            now: float | None = None, keep: Collection[str] = (), reason_bytes: str = "max_bytes") -> list[str]:
    """Shred clips beyond the limits; never the clips in ``keep`` (the one being written). Returns ids shredded.

    ``reason_bytes`` names why the byte limit is being enforced (``max_bytes``, or ``disk_full`` after ENOSPC,
    where the caller passes a ``max_bytes`` below the current total).
    """
    now = time.time() if now is None else now
    manifests = [m for m in store.manifests() if m.clip_id not in keep]
    total = store.total_bytes()
    shredded: list[str] = []
    for m in manifests:  # oldest first
        if now - m.t_start > max_age_s:
            reason = "max_age"
        elif total > max_bytes:
            reason = reason_bytes
        else:
            continue
        freed = store.shred(m.clip_id)
        total -= freed
        shredded.append(m.clip_id)
        if audit is not None:
            audit.append("clip_shredded", clip_id=m.clip_id, reason=reason, bytes=freed)
    return shredded
