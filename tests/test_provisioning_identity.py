"""First boot: state directory 0700, device key 0600, loose permissions fixed or refused, id and fingerprint."""

from __future__ import annotations

import os
import stat

import pytest
from doorkeep.device.identity import DeviceIdentity, device_id_for
from doorkeep.provisioning.errors import UnsafePermissions
from doorkeep.provisioning.identity import first_boot, has_identity, secure_state_dir


def mode(p) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_first_boot_creates_private_state_and_a_stable_identity(tmp_path):
    state = tmp_path / "a" / "state"
    ident = first_boot(state)
    assert mode(state) == 0o700 and mode(state / "device.key") == 0o600
    assert ident.device_id == device_id_for(ident.public_bytes) and ident.device_id.startswith("dk-")
    assert len(ident.fingerprint) == 9 and ident.fingerprint[4] == "-"
    assert first_boot(state).device_id == ident.device_id  # the second boot loads, never regenerates
    assert has_identity(state)
    assert "seed" not in repr(ident) and bytes(ident._signing_key).hex() not in repr(ident)


def test_loose_permissions_are_fixed(tmp_path):
    state = tmp_path / "s"
    first_boot(state)
    os.chmod(state, 0o755)
    os.chmod(state / "device.key", 0o644)
    fixes = secure_state_dir(state)
    assert {(f.path.name, f.old_mode) for f in fixes} == {("s", 0o755), ("device.key", 0o644)}
    assert mode(state) == 0o700 and mode(state / "device.key") == 0o600


def test_loose_permissions_refused_when_not_fixing(tmp_path):
    state = tmp_path / "s"
    first_boot(state)
    os.chmod(state / "device.key", 0o640)
    with pytest.raises(UnsafePermissions, match=r"device\.key has mode 0640"):
        first_boot(state, fix_permissions=False)


def test_symlinked_key_is_refused(tmp_path):
    state = tmp_path / "s"
    state.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.key"
    DeviceIdentity.load_or_create(tmp_path / "other")
    elsewhere.write_bytes((tmp_path / "other" / "device.key").read_bytes())
    (state / "device.key").symlink_to(elsewhere)
    with pytest.raises(UnsafePermissions, match="symlink"):
        first_boot(state)


def test_corrupt_key_is_never_overwritten(tmp_path):
    state = tmp_path / "s"
    state.mkdir(mode=0o700)
    (state / "device.key").write_bytes(b"short")
    os.chmod(state / "device.key", 0o600)
    with pytest.raises(Exception, match="32 bytes"):
        first_boot(state)
    assert (state / "device.key").read_bytes() == b"short"
