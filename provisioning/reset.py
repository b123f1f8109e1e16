"""Factory reset: destroy the device identity, the pairing and every clip's sealed-key header.

Also destroyed: the signed configuration and counter, the outbox of queued event metadata and the used-grant set.
Models (public, sha256-pinned) stay.

Order matters: the reset is audited first (signed by the identity that is about to go), then every clip header is
shredded (:func:`doorkeep.device.vault.store.shred_all_clips`: overwrite + fsync, then unlink), then the pairing
and configuration state, and the device key last. The audit log is kept by default, renamed
``audit-<old device id>.log`` with its closed segments (it stays verifiable with the old public key, which its final
record names), so the next identity starts a fresh chain; ``wipe_audit=True`` shreds it too (handing the device to
someone else).

Afterwards :func:`verify_reset` proves there is no readable identity and no clip key header left.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from doorkeep.device.identity import KEY_FILE, DeviceIdentity
from doorkeep.device.publish.publisher import OUTBOX_FILE
from doorkeep.device.vault import codec
from doorkeep.device.vault.audit_format import closed_segments, move_log, segment_files
from doorkeep.device.vault.clips import MAGIC
from doorkeep.device.vault.keys import OWNER_PUB_FILE
from doorkeep.device.vault.locations import VAULTS_FILE, remembered_vault_dirs
from doorkeep.device.vault.store import CLIP_SUFFIX, MANIFEST_SUFFIX, ClipStore
from doorkeep.device.vault.vault import AUDIT_FILE, REPLAY_FILE

from .device_state import STATE_FILE, Auditor
from .errors import ProvisionError
from .files import shred
from .signed_config import APPLIED_FILE

log = logging.getLogger(__name__)

#: Pairing and configuration state destroyed by a reset (besides the key and the clips).
PAIRING_FILES = (OWNER_PUB_FILE, STATE_FILE, APPLIED_FILE, "pair-receipt.json", "incoming-pair.json")
#: The previous owner's data that is not a clip: queued event metadata (the outbox, with SQLite's side files) and
#: the set of used grant ids.
OWNER_DATA_FILES = (OUTBOX_FILE, OUTBOX_FILE + "-wal", OUTBOX_FILE + "-shm", OUTBOX_FILE + "-journal", REPLAY_FILE,
                    VAULTS_FILE)


@dataclass(frozen=True)
class ResetReport:
    device_id: str
    clips_shredded: int
    files_shredded: tuple[str, ...]
    audit_kept_as: str | None
    vault_dirs: tuple[str, ...] = ()


def _clip_dirs(state_dir: Path) -> list[Path]:
    return sorted({p.parent for p in state_dir.rglob("*" + CLIP_SUFFIX) if p.is_file()})


def vault_dirs(state_dir: str | os.PathLike[str], extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Every vault directory the device may have used that still exists: any directory in the state dir holding
    clips, every directory recorded in ``vaults.used`` (:mod:`doorkeep.device.vault.locations`), and ``extra``
    (the local and the signed configuration's ``[vault] dir``, for devices older than that record)."""
    state = Path(state_dir)
    found = {*_clip_dirs(state), *remembered_vault_dirs(state), *(Path(d).expanduser() for d in extra)}
    return sorted({d.resolve() for d in found if d.is_dir()})


def _vault_clips(d: Path) -> list[str]:
    """The doorkeep clips in ``d`` (by their magic; an empty file is a clip torn at birth). A ``.clip`` file of
    anything else — a vault dir named by mistake — is left alone."""
    ids = []
    for p in sorted(d.glob("*" + CLIP_SUFFIX)):
        try:
            with open(p, "rb") as f:
                head = f.read(len(MAGIC))
        except OSError:
            continue
        if head == MAGIC or not head:
            ids.append(p.name[: -len(CLIP_SUFFIX)])
        else:
            log.warning("factory reset: %s is not a doorkeep clip; left alone", p)
    return ids


def _shred_vault(d: Path) -> int:
    store = ClipStore(d)
    store.finish_shreds()  # a shred a crash interrupted: its key header may still be whole
    ids = _vault_clips(d)
    for clip_id in ids:
        store.shred(clip_id)  # sealed-key header overwritten + fsynced, then unlinked
    for m in d.glob("*" + MANIFEST_SUFFIX):
        if not (d / (m.name[: -len(MANIFEST_SUFFIX)] + CLIP_SUFFIX)).exists():
            m.unlink()  # a manifest whose clip is gone
    return len(ids)


def factory_reset(state_dir: str | os.PathLike[str], *, identity: DeviceIdentity, audit: Auditor | None,
                  wipe_audit: bool = False, clip_dirs: Iterable[str | os.PathLike[str]] = ()) -> ResetReport:
    """Destroy identity, pairing and clip keys in ``state_dir``. The caller must have stopped the service.

    Args:
        state_dir: the device's state directory.
        identity: the identity being destroyed (named in the final audit record).
        audit: the open audit log (closed by the caller afterwards), or None when it cannot be opened.
        wipe_audit: shred the audit log instead of archiving it.
        clip_dirs: vault directories the configuration names (``[vault] dir``); the state dir and every directory
            recorded in ``vaults.used`` are always searched.
    """
    state = Path(state_dir)
    dirs = vault_dirs(state, clip_dirs)
    n_clips = sum(len(_vault_clips(d)) for d in dirs)
    if audit is not None:
        audit.append("factory_reset", device_id=identity.device_id, device_key=codec.b64e(identity.public_bytes),
                     clips=n_clips, wipe_audit=wipe_audit, vault_dirs=[str(d) for d in dirs])
    shredded = sum(_shred_vault(d) for d in dirs)
    gone = [name for name in (*PAIRING_FILES, *OWNER_DATA_FILES) if shred(state / name)]
    if shred(state / KEY_FILE):
        gone.append(KEY_FILE)
    kept: str | None = None
    audit_path = state / AUDIT_FILE
    segments = segment_files(audit_path) if audit_path.exists() or closed_segments(audit_path) else []
    if segments:
        if wipe_audit:
            for p in segments:
                shred(p)
            gone.append(AUDIT_FILE)
        else:  # every segment, renamed alike: the archive stays verifiable as one log
            kept = f"audit-{identity.device_id}.log"
            move_log(audit_path, state / kept)
    log.info("factory reset of %s: %d clips and %s destroyed", identity.device_id, shredded, ", ".join(gone))
    for d in (state, *dirs):
        verify_reset(d)
    return ResetReport(identity.device_id, shredded, tuple(gone), kept, tuple(str(d) for d in dirs))


def verify_reset(state_dir: str | os.PathLike[str]) -> None:
    """Raise :class:`ProvisionError` if a device key, an owner pin or any clip header survives in ``state_dir``."""
    state = Path(state_dir)
    left = [n for n in (KEY_FILE, OWNER_PUB_FILE) if (state / n).exists()]
    for p in state.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with open(p, "rb") as f:
                if f.read(len(MAGIC)) == MAGIC:
                    left.append(str(p.relative_to(state)))
    if left:
        raise ProvisionError(f"factory reset incomplete: {', '.join(left)} still present in {state}")
