"""Owner keys a recipient trusts: pinned once, then every bundle from that owner verifies without ``--owner``.

A bundle carries the owner key its grant is signed with, but anyone can make a bundle with a fresh device key and a
fresh owner key of their own; only an owner key the recipient obtained out of band proves who released the footage.
``doorkeep recipient trust OWNER.pub`` pins such a key (after comparing its fingerprint with the owner by phone or
in person); ``doorkeep decrypt`` then accepts a bundle signed by it as verified. Pinned keys are public key files
(docs/formats.md, "Public key file") in ``~/.config/doorkeep/trusted-owners/`` (0700), one per owner, named by the
first 8 bytes of the signing key.

Example::

    pin(PublicKeys.load("owner.pub", role="owner"))
    trusted(bundle_owner)      # the pinned file, or None
"""

from __future__ import annotations

import os
from pathlib import Path

from doorkeep.device.errors import FormatError, VaultError
from doorkeep.device.fileio import make_dirs, write_atomic
from doorkeep.device.vault.keys import PublicKeys


def trust_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "doorkeep" / "trusted-owners"


def key_name(owner: PublicKeys) -> str:
    """The file name of a pinned owner key (and the short id shown to the user)."""
    return owner.sign[:8].hex()


def pin(owner: PublicKeys, *, directory: Path | None = None) -> Path:
    """Trust ``owner`` from now on; returns the pinned file (0600, its directory 0700)."""
    d = make_dirs(directory or trust_dir())
    return write_atomic(d / f"{key_name(owner)}.pub", owner.to_bytes(), mode=0o600)


def trusted(owner: PublicKeys, *, directory: Path | None = None) -> Path | None:
    """The pinned file holding exactly ``owner`` (both its signing and its sealing key), or None."""
    p = (directory or trust_dir()) / f"{key_name(owner)}.pub"
    try:
        return p if PublicKeys.load(p, role="owner") == owner else None
    except (FormatError, VaultError):
        return None
