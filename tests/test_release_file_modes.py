"""Files the owner's and the device's tools write are private, and the service dumps no core (#14.14, #11.15).

Before: the boot-partition pairing file (its nonce is a secret until the device consumed it), `config sign` and
`config rotate-owner` output were written 0644, `doorkeep owner pin --state-dir NEW` created NEW 0755, and the
systemd unit allowed core dumps (clip keys and frames in memory would land on disk)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from doorkeep.device import fileio
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.keys import MIN, SecretKeys
from doorkeep.provisioning.owner_state import DeviceBook
from doorkeep.tools.cli import main

UNIT = Path(__file__).resolve().parents[1] / "provisioning" / "systemd" / "doorkeep.service"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOORKEEP_PASSPHRASE", "pw")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    keys = SecretKeys.generate("owner")
    keys.save(tmp_path / "owner.key", b"pw", limits=MIN)
    (tmp_path / "owner.key.pub").write_bytes(keys.public.to_bytes())
    return tmp_path / "owner.key"


def test_owner_pin_creates_a_private_state_dir(owner: Path, tmp_path: Path) -> None:
    new = tmp_path / "fresh" / "state"
    assert main(["owner", "pin", str(tmp_path / "owner.key.pub"), "--state-dir", str(new)]) == 0
    assert mode(new) == 0o700


def test_signed_documents_and_the_boot_pairing_file_are_private(owner: Path, tmp_path: Path) -> None:
    device = DeviceIdentity.generate()
    book = DeviceBook(tmp_path / "devices.json")
    book.pin(device.device_id, device.public_bytes)
    book.save()
    (tmp_path / "s.toml").write_text("[capture]\nfps = 10\n")
    new_owner = SecretKeys.generate("owner")
    (tmp_path / "new.pub").write_bytes(new_owner.public.to_bytes())
    common = ["--key", str(owner), "--book", str(tmp_path / "devices.json")]
    assert main(["config", "sign", str(tmp_path / "s.toml"), "--out", str(tmp_path / "s.signed"), *common]) == 0
    assert main(["config", "rotate-owner", "--new-public", str(tmp_path / "new.pub"),
                 "--out", str(tmp_path / "r.signed"), *common]) == 0
    assert main(["pair", "--owner", "--boot-file", str(tmp_path / "boot" / "doorkeep-pair.json"), *common]) == 0
    for p in ("s.signed", "r.signed", "boot/doorkeep-pair.json"):
        assert mode(tmp_path / p) == 0o600, p


def test_a_filesystem_without_modes_still_gets_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FAT (the SD card's boot partition) answers fchmod with EPERM; its mount options decide the mode."""
    def fat_fchmod(fd: int, m: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", fat_fchmod)
    fileio.write_atomic(tmp_path / "doorkeep-pair.json", b"{}")
    assert (tmp_path / "doorkeep-pair.json").read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["doorkeep-pair.json"]


def test_the_service_dumps_no_core() -> None:
    lines = UNIT.read_text().splitlines()
    assert "LimitCORE=0" in lines
