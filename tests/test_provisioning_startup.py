"""Device start: first boot, boot-partition pairing file consumed, signed configuration in effect, local policy
refused once paired."""

from __future__ import annotations

import pytest
from doorkeep.device.errors import ConfigError
from doorkeep.provisioning.boot_pairing import make_pair_file
from doorkeep.provisioning.signed_config import SignedConfigStore, sign_config
from doorkeep.provisioning.startup import prepare_device
from provisioning_support import new_device, owner_keys


def test_start_pair_by_boot_file_then_signed_config(tmp_path):
    state = tmp_path / "state"
    local = tmp_path / "doorkeep.toml"
    local.write_text(f'[device]\nstate_dir = "{state}"\n[capture]\nsource = "synthetic"\n[motion]\nhold_s = 2.0\n')
    boot = tmp_path / "boot" / "doorkeep-pair.json"
    first = prepare_device(local, boot_file=boot)
    assert not first.paired and first.config.motion.hold_s == 2.0  # unpaired: the local file rules

    keys = owner_keys()
    pf = make_pair_file(keys)
    boot.parent.mkdir()
    boot.write_bytes(pf.data)
    with pytest.raises(ConfigError, match="owner-signed"):  # now paired: [motion] may not come from the file
        prepare_device(local, boot_file=boot)
    assert not boot.exists()

    local.write_text(f'[device]\nstate_dir = "{state}"\n[capture]\nsource = "synthetic"\n')
    start = prepare_device(local, boot_file=boot)
    assert start.paired and start.identity.device_id == first.identity.device_id
    dev = new_device(state)
    SignedConfigStore(dev.prov).apply(sign_config({"motion": {"hold_s": 8.0}}, device_id=dev.identity.device_id,
                                                  counter=1, keys=keys).to_bytes())
    dev.audit.close()
    start = prepare_device(local, boot_file=boot)
    assert start.config.motion.hold_s == 8.0 and start.config.capture.source == "synthetic"
    assert start.config_counter == 1

    state.chmod(0o755)  # e.g. an SD card copied with loose modes: fixed at start, and audited
    start = prepare_device(local, boot_file=boot)
    assert [f.new_mode for f in start.permission_fixes] == [0o700]
    assert '"state_permissions_fixed"' in (state / "audit.log").read_text()
