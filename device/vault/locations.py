"""Every vault directory the device has used, remembered in its state directory.

A signed configuration (or a vendor) may put the vault anywhere (``[vault] dir``); the place changes when the
configuration does. A factory reset must destroy the clip keys in every one of them, not only in the directory the
local configuration names today, so :func:`~doorkeep.device.vault.vault.build_vault` records each directory it
opens in ``<state_dir>/vaults.used`` (one absolute path per line, written atomically, 0600) and the reset reads it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fileio import write_atomic

VAULTS_FILE = "vaults.used"


def remembered_vault_dirs(state_dir: str | os.PathLike[str]) -> list[Path]:
    """The vault directories recorded in ``state_dir`` (whether or not they still exist)."""
    try:
        text = (Path(state_dir) / VAULTS_FILE).read_text("utf-8")
    except FileNotFoundError:
        return []
    return [Path(line) for line in dict.fromkeys(text.splitlines()) if line.startswith("/")]


def remember_vault_dir(state_dir: str | os.PathLike[str], vault_dir: str | os.PathLike[str]) -> None:
    """Record ``vault_dir`` (absolute, symlinks resolved) unless it is recorded already."""
    d = Path(vault_dir).expanduser().resolve()
    known = remembered_vault_dirs(state_dir)
    if d not in known:
        data = "".join(f"{p}\n" for p in (*known, d)).encode("utf-8")
        write_atomic(Path(state_dir) / VAULTS_FILE, data, mode=0o600)
