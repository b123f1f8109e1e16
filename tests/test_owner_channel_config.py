"""``get_config`` over the owner channel: the device returns the owner-signed configuration it applied, byte-exact
(the console's Settings page edits it instead of starting from a blank one), empty when it has none, and a device
that keeps none says so in a signed refusal."""

from __future__ import annotations

from pathlib import Path

import pytest
from channel_support import device_rig, owner_link
from doorkeep.device.errors import CommandRefused

pytestmark = pytest.mark.broker


def test_get_config_returns_the_applied_document_byte_exact(tmp_path: Path, mosquitto) -> None:
    stored = {"doc": b""}
    with device_rig(tmp_path, mosquitto) as rig, owner_link(rig, mosquitto) as link:
        rig.channel.owner.p.config_document = lambda: stored["doc"]
        assert link.get_config() == b""
        stored["doc"] = b'{"body":{"config":{"masks":[]}},"counter":3}\n' * 3000  # several messages' worth
        assert link.get_config() == stored["doc"]


def test_a_device_without_a_signed_configuration_refuses_get_config(tmp_path: Path, mosquitto) -> None:
    with device_rig(tmp_path, mosquitto) as rig, owner_link(rig, mosquitto) as link:
        with pytest.raises(CommandRefused) as exc:
            link.get_config()
    assert exc.value.reason == "unsupported"
