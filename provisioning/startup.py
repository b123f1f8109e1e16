"""What the device does with provisioning before it starts capturing (``doorkeep run`` calls this first).

1. Secure the state directory (0700; key 0600; loose modes fixed, foreign owners refused) and load or create the
   identity (first boot).
2. Consume a boot-partition pairing file if the unit moved one in (or it is readable at ``/boot/firmware``): the
   code and the receipt go to the log. A refused file is logged and audited; the doorbell keeps running with its
   existing pairing.
3. Build the configuration: the local TOML's hardware/path tables plus the owner-signed document last applied
   (re-verified against the pinned owner and the counter recorded when it was applied; a forged or rolled-back
   one is audited and stops the start). Once paired, policy in the local file is refused by key path.

Example (``doorkeep run``; the service holds the state-directory lock for its whole life)::

    with StateLock(state_dir, holder="doorkeep run"):
        start = prepare_device(args.config)
        bell = Doorbell.from_config(start.config)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from doorkeep.device.config import Config
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.safe_text import printable
from doorkeep.device.vault.audit import AuditLog
from doorkeep.device.vault.vault import AUDIT_FILE

from .boot_pairing import BOOT_FILE, BootPaired, consume_pending
from .device_state import DeviceProvisioning
from .errors import ProvisionRefused
from .identity import PermissionFix, first_boot, secure_state_dir
from .signed_config import (
    LOCAL_TABLES,
    SignedConfigStore,
    effective_config,
    load_local_toml,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceStartup:
    """The outcome of :func:`prepare_device`."""

    config: Config
    identity: DeviceIdentity
    paired: bool
    config_counter: int
    boot_pairing: BootPaired | None = None
    permission_fixes: list[PermissionFix] = field(default_factory=list)


def prepare_device(config_path: str | os.PathLike[str] | None, *, boot_file: Path = BOOT_FILE) -> DeviceStartup:
    """Identity, boot-file pairing and the effective configuration for a device start.

    Raises:
        ConfigError: a bad local value, or policy in the local file of a paired device (named by key path).
        StoredConfigRefused: the stored signed configuration does not verify against the pinned owner and the
            recorded counter (forged, replaced, rolled back, corrupt); audited as ``config_refused``.
        UnsafePermissions: the state directory or key belongs to someone else or is a symlink.
    """
    local = load_local_toml(config_path) if config_path else {}
    base = Config.from_dict({k: v for k, v in local.items() if k in LOCAL_TABLES})
    state = base.state_dir
    fixes = secure_state_dir(state)
    identity = first_boot(state)
    boot: BootPaired | None = None
    with AuditLog.open(state / AUDIT_FILE, identity) as audit:
        prov = DeviceProvisioning(state, identity=identity, audit=audit)
        for fix in fixes:
            audit.append("state_permissions_fixed", path=str(fix.path), old=f"{fix.old_mode:04o}",
                         new=f"{fix.new_mode:04o}")
        try:
            boot = consume_pending(prov, boot_file=boot_file)
        except ProvisionRefused as exc:
            log.error("boot-partition pairing file refused: %s", printable(exc))
        except PermissionError as exc:  # /boot/firmware not writable for the service user: the unit moves it
            log.warning("cannot consume %s (%s); the systemd unit moves it into %s", boot_file, exc, state)
        paired = prov.owner() is not None
        table = SignedConfigStore(prov, local=local).load_at_start()
        config = effective_config(local, table, paired=paired)
        counter = prov.last_counter()
    log.info("device %s (fingerprint %s), %s, configuration #%d", identity.device_id, identity.fingerprint,
             "paired" if paired else "NOT paired (doorkeep pair --device)", counter)
    return DeviceStartup(config, identity, paired, counter, boot, fixes)
