"""First boot: a private state directory and the device's Ed25519 identity in it.

The key itself, the device id (``dk-…``, derived from the public key) and the fingerprint (``1234-5678``, the code a
human compares) come from :mod:`doorkeep.device.identity`; this module adds what a shipping device needs around
them: the state directory is 0700, secret files are 0600, both are owned by the service user and are not symlinks.
Loose permissions are fixed when we own the files (first boot after an SD-card copy often leaves 0755/0644), and
refused otherwise, naming the path.

Example::

    ident = first_boot("/var/lib/doorkeep")
    print(ident.device_id, ident.fingerprint)
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from doorkeep.device.identity import KEY_FILE, DeviceIdentity

from .errors import UnsafePermissions

log = logging.getLogger(__name__)

#: Files in the state directory that hold secrets and must be 0600.
SECRET_FILES = (KEY_FILE,)
DIR_MODE = 0o700
SECRET_MODE = 0o600


@dataclass(frozen=True)
class PermissionFix:
    """One permission that was loose and has been tightened."""

    path: Path
    old_mode: int
    new_mode: int


def _check_one(path: Path, want: int, *, is_dir: bool, fix: bool) -> PermissionFix | None:
    st = os.lstat(path)
    kind = "directory" if is_dir else "file"
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePermissions(f"{path} is a symlink; the {kind} must be a real {kind}")
    if is_dir != stat.S_ISDIR(st.st_mode) or (not is_dir and not stat.S_ISREG(st.st_mode)):
        raise UnsafePermissions(f"{path} is not a {kind}")
    if st.st_uid != os.geteuid():
        raise UnsafePermissions(f"{path} is owned by uid {st.st_uid}, not by this service (uid {os.geteuid()})")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077 == 0:
        return None
    if not fix:
        raise UnsafePermissions(f"{path} has mode {mode:04o}; it must be {want:04o} (no group/other access)")
    os.chmod(path, want, follow_symlinks=False)
    log.warning("tightened %s from %04o to %04o", path, mode, want)
    return PermissionFix(path, mode, want)


def secure_state_dir(state_dir: str | os.PathLike[str], *, fix: bool = True) -> list[PermissionFix]:
    """Create the state directory 0700 if missing, then check it and its secret files.

    Args:
        state_dir: the directory (created with parents).
        fix: tighten loose modes we own (default) instead of refusing.

    Returns:
        The permissions that were tightened (empty when all was fine).

    Raises:
        UnsafePermissions: a symlink, a foreign owner, or loose modes with ``fix=False``.
    """
    state = Path(state_dir)
    if not state.exists():
        state.mkdir(parents=True, mode=DIR_MODE)
    fixes = []
    done = _check_one(state, DIR_MODE, is_dir=True, fix=fix)
    if done:
        fixes.append(done)
    for name in SECRET_FILES:
        p = state / name
        if os.path.lexists(p):
            done = _check_one(p, SECRET_MODE, is_dir=False, fix=fix)
            if done:
                fixes.append(done)
    return fixes


def first_boot(state_dir: str | os.PathLike[str], *, fix_permissions: bool = True) -> DeviceIdentity:
    """Secure the state directory, then load the device identity or create it (the very first boot).

    Raises:
        UnsafePermissions: see :func:`secure_state_dir`.
        ProvisionError: an existing key file is corrupt (it is never overwritten).
    """
    secure_state_dir(state_dir, fix=fix_permissions)
    existed = (Path(state_dir) / KEY_FILE).exists()
    ident = DeviceIdentity.load_or_create(state_dir)
    secure_state_dir(state_dir, fix=fix_permissions)
    if not existed:
        log.info("new device identity %s, fingerprint %s", ident.device_id, ident.fingerprint)
    return ident


def has_identity(state_dir: str | os.PathLike[str]) -> bool:
    """True when a device key file exists (after a factory reset it does not)."""
    return (Path(state_dir) / KEY_FILE).exists()
