"""Retention: drop clips older than ``max_age_s`` (their trusted age: device/vault/clockwatch.py), then oldest first
while the vault exceeds ``max_bytes`` and — after a real ENOSPC — while the disk has less than ``free_target`` bytes
free.

Deleting is shredding (device/vault/store.py: name removed first, then the sealed-key header overwritten + fsync,
then unlink), and each deletion is audited. Retention is only ever asked to free space because of a full disk
(ENOSPC/EDQUOT, device/disk.py): a storage fault never reaches it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from ..activity import log as activity
from ..disk import errno_name
from .faults import Auditor
from .store import ClipStore

log = logging.getLogger(__name__)


def enforce(store: ClipStore, *, max_age_s: float, max_bytes: int, audit: Auditor | None = None,
            now: float | None = None, keep: Collection[str] = (), reason_bytes: str = "max_bytes",
            free: Callable[[], int] | None = None, free_target: int = 0,
            age: Callable[[float], float] | None = None) -> list[str]:
    """Shred clips beyond the limits; never the clips in ``keep`` (the one being written, those being released).
    Returns the ids shredded.

    ``reason_bytes`` names why the byte limit is being enforced (``max_bytes``, or ``disk_full`` after ENOSPC,
    where the caller passes a ``max_bytes`` below the current total). With ``free`` (``() -> bytes free on the
    vault's filesystem``) the oldest clips also go, as ``disk_full``, while fewer than ``free_target`` bytes are free.
    ``age`` (``t_start -> seconds``) is a clip's age; default ``now - t_start``.

    Raises ``OSError`` from the disk (the clip it was shredding is untouched if its name could not be removed), after
    auditing ``clip_shred_failed`` (``kept``: the clip is whole; otherwise it is doomed and its shred is finished
    at the next start).
    """
    now = time.time() if now is None else now
    age = age or (lambda t_start: now - t_start)
    manifests = [m for m in store.manifests() if m.clip_id not in keep]
    total = store.total_bytes()
    shredded: list[str] = []
    reasons: dict[str, int] = {}
    freed_total = 0
    for m in manifests:  # oldest first
        if age(m.t_start) > max_age_s:
            reason = "max_age"
        elif total > max_bytes:
            reason = reason_bytes
        elif free is not None and free() < free_target:
            reason = "disk_full"
        else:
            continue
        try:
            freed = store.shred(m.clip_id)
        except OSError as exc:
            if audit is not None:  # say whether the clip is still whole or already doomed (finished later)
                audit.append("clip_shred_failed", clip_id=m.clip_id, reason=reason, error=errno_name(exc),
                             kept=store.clip_path(m.clip_id).exists())
            raise
        total -= freed
        shredded.append(m.clip_id)
        reasons[reason] = reasons.get(reason, 0) + 1
        freed_total += freed
        if audit is not None:
            audit.append("clip_shredded", clip_id=m.clip_id, reason=reason, bytes=freed)
    if shredded:  # one line per run that did something (a pass with nothing to do is not news)
        activity.info("retention: shredded %d clip(s) (%s), %.1f MB freed", len(shredded),
                      ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())), freed_total / 1e6)
    return shredded
