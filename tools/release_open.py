"""The recipient's side of a release (``doorkeep decrypt``): verify a bundle, say honestly what is verified, and
write its clips as MP4s all or nothing.

The owner is verified only by a key from outside the bundle: ``--owner FILE`` or a key the recipient pinned
(:mod:`.trusted_owners`). Without one the bundle is only self-consistent — anyone can make one from a fresh device
key and a fresh owner key — so nothing is decrypted unless the recipient explicitly accepts that
(``allow_unverified_owner``). MP4s go to private temporary files (0600) and are renamed into place only once the
whole bundle verified; any failure (a tampered chunk, a full disk) leaves none behind.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from doorkeep.device.fileio import AtomicOutput, make_dirs
from doorkeep.device.safe_text import printable
from doorkeep.device.vault.bundle_open import BundleReader, read_bundle
from doorkeep.device.vault.keys import PublicKeys, SecretKeys
from doorkeep.tools.trusted_owners import trusted
from doorkeep.tools.vault_mp4 import write_mp4_into


@dataclass(frozen=True)
class Decrypted:
    """The outcome: ``report`` (JSON-able); ``ok`` False when the owner was not verified and not allowed."""

    ok: bool
    report: dict[str, Any]


def decrypt_bundle(bundle: Path, keys: SecretKeys, out_dir: Path, *, owner: PublicKeys | None = None,
                   expect_device: str | None = None, allow_unverified_owner: bool = False) -> Decrypted:
    """Verify ``bundle`` and write one MP4 per clip into ``out_dir``.

    Raises:
        ReleaseError: the bundle was refused (its reason); nothing is written.
        OSError: an MP4 could not be written (naming it); nothing is left behind.
    """
    with read_bundle(bundle, keys, owner=owner, expect_device=expect_device) as b:
        source = "given" if owner is not None else None
        if source is None and trusted(b.owner) is not None:
            b.confirm_owner(b.owner)
            source = "trusted"
        if source is None and not allow_unverified_owner:
            return Decrypted(False, {**_head(b), "ok": False, "reason": "unverified_owner",
                                     "detail": UNVERIFIED, "owner_source": "bundle"})
        report = _write_clips(b, out_dir)
    return Decrypted(True, {**report, "owner_source": source or "bundle"})


UNVERIFIED = ("the grant is signed by an owner key that comes only from the bundle itself, which proves nothing "
              "about who released it (anyone can make such a bundle); get the owner's public key from the owner "
              "and pass --owner FILE, or pin it once: doorkeep recipient trust FILE")


def _head(b: BundleReader) -> dict[str, Any]:
    g = b.grant
    return {"bundle_id": b.bundle_id, "device_id": b.device_id, "owner_key": b.owner.sign.hex(),
            "owner_verified": b.owner_verified, "device_verified": b.device_verified, "grant_id": g.grant_id,
            "recipient_name": g.recipient_name, "requester": g.requester, "purpose": g.purpose,
            "expires_at": g.expires_at}


def _write_clips(b: BundleReader, out_dir: Path) -> dict[str, Any]:
    make_dirs(out_dir)
    outputs: list[AtomicOutput] = []
    done: list[Path] = []
    try:
        for clip in b.clips():
            out = AtomicOutput(out_dir / f"{clip.clip_id}.mp4", mode=0o600)
            outputs.append(out)
            write_mp4_into(out, clip.packets(), codec=clip.header.codec)
        report = b.report()  # raises unless every clip verified to its end
        for out in outputs:
            done.append(out.commit())
    except BaseException:
        for out in outputs:
            out.discard()
        for p in done:
            p.unlink(missing_ok=True)
        raise
    for entry, p in zip(report["clips"], done, strict=True):
        entry["mp4"] = str(p)
    return report


def _iso(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def verdict_line(r: dict[str, Any]) -> str:
    """``bundle … from device …: VERIFIED (…)`` or ``… NOT VERIFIED (…)``."""
    head = f"bundle {r['bundle_id']} from device {r['device_id']}"
    if r.get("owner_verified"):
        how = {"given": "owner key given with --owner", "trusted": "owner key pinned with doorkeep recipient trust"}
        return f"{head}: VERIFIED ({how.get(r.get('owner_source', ''), 'owner key known')})"
    device = "device id as expected" if r.get("device_verified") else "device not verified"
    return f"{head}: NOT VERIFIED (owner key {r['owner_key'][:16]}… only from the bundle itself; {device})"


def print_report(r: dict[str, Any], out: TextIO) -> None:
    """The human-readable report (every string the grant carries is printed inert: safe_text.printable)."""
    print(verdict_line(r), file=out)
    if not r.get("owner_verified"):
        print("  decrypted anyway (--allow-unverified-owner): do not rely on who released this footage", file=out)
    print(f"  grant {r['grant_id']} for '{printable(r['recipient_name'])}' ({printable(r['requester'])}), "
          f"purpose: {printable(r['purpose'])}, expires {_iso(r['expires_at'])}", file=out)
    print(f"  checks: {', '.join(r['checks'])}", file=out)
    for e in r["clips"]:
        print(f"  {e['clip_id']}: {_iso(e['t_start'])} .. {_iso(e['t_end'])}, {e['packets']} packets, "
              f"{'complete' if e['complete'] else 'recovered after a crash'} -> {e['mp4']}", file=out)
