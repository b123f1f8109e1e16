"""``doorkeep events``: verified events printed; forged, tampered and unsigned ones flagged loudly (real broker)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import nacl.signing
import pytest
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.payload import encode
from doorkeep.device.publish.topics import Topics
from doorkeep.tools.cmd_hub import parse_broker
from doorkeep.tools.hub import REJECT_MARK, parse_verify_key
from fixtures_broker import Subscriber

pytestmark = pytest.mark.broker

DEVICE = DeviceIdentity(nacl.signing.SigningKey(bytes([21]) * 32))
ATTACKER = DeviceIdentity(nacl.signing.SigningKey(bytes([22]) * 32))
T0 = 1_764_370_000.0


def hub(broker, key: str, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-m", "doorkeep.tools.cli", "events", "--broker", broker.url,
                             "--device-key", key, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "listening on" in line:
            return proc
    raise AssertionError(f"hub exited: {proc.wait()} {proc.stdout.read() if proc.stdout else ''}")


def messages() -> list[bytes]:
    good1 = encode(Event("a1", "person", "start", T0, T0, None, 0.9, "porch", True), DEVICE)
    good2 = encode(Event("a1", "person", "end", T0 + 3, T0, T0 + 3, 0.9, "porch", True), DEVICE)
    forged = encode(Event("f1", "person", "start", T0, T0, None, 0.99, "porch", False), ATTACKER)
    tampered = good1.replace(b'"z":"porch"', b'"z":"patio"')
    body = good1[: good1.index(b',"sig"')] + b"}"
    return [good1, forged, tampered, body, b"\xff\xd8\xff not an event", good2]


def publish_all(broker, payloads: list[bytes]) -> None:
    topic = Topics(DEVICE.device_id).event
    with Subscriber(broker, "unused/#") as pub:
        for p in payloads:
            pub.client.publish(topic, p, qos=1).wait_for_publish(5)


def test_json_flags_forged_tampered_unsigned(mosquitto, tmp_path) -> None:
    key_file = tmp_path / "device.pub"
    key_file.write_text(DEVICE.public_bytes.hex() + "\n")
    proc = hub(mosquitto, str(key_file), "--json", "--count", "6")
    publish_all(mosquitto, messages())
    out, err = proc.communicate(timeout=30)
    lines = [json.loads(line) for line in out.splitlines()]
    assert [x["verified"] for x in lines] == [True, False, False, False, False, True]
    assert [x.get("reason") for x in lines if not x["verified"]] == ["bad-signature", "bad-signature", "unsigned",
                                                                      "unsigned"]
    assert [x["phase"] for x in lines if x["verified"]] == ["start", "end"]
    assert err.count(REJECT_MARK) == 4
    assert "2 verified" in err and "4 REJECTED" in err
    assert proc.returncode == 3


def test_table_output_and_clean_exit(mosquitto) -> None:
    b64 = base64.b64encode(DEVICE.public_bytes).decode()
    proc = hub(mosquitto, b64, "--count", "2")
    m = messages()
    publish_all(mosquitto, [m[0], m[5]])
    out, err = proc.communicate(timeout=30)
    rows = out.splitlines()
    assert rows[0].startswith("TIME") and len(rows) == 3 and "porch" in rows[1] and " end " in rows[2]
    assert REJECT_MARK not in err and proc.returncode == 0


def test_key_and_broker_parsing(tmp_path) -> None:
    raw = DEVICE.public_bytes
    assert parse_verify_key(raw.hex()) == raw
    assert parse_verify_key(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw
    (tmp_path / "k.hex").write_text(raw.hex() + "\n")
    assert parse_verify_key(str(tmp_path / "k.hex")) == raw
    DeviceIdentity.load_or_create(tmp_path / "state")  # writes the secret seed, device.key
    with pytest.raises(ValueError, match="SECRET key"):  # refused, loudly
        parse_verify_key(str(tmp_path / "state" / "device.key"))
    with pytest.raises(ValueError, match="device-key"):
        parse_verify_key("not-a-key")
    assert parse_broker("10.0.0.2") == ("10.0.0.2", 1883)
    assert parse_broker("hub.local:8883") == ("hub.local", 8883)
    assert parse_broker("[::1]:1884") == ("::1", 1884)
