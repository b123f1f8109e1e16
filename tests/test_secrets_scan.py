"""Secrets are never printable: a whole real life of a device, scanned for its secrets.

The owner makes a key, pairs a device with the boot file, signs its settings (MQTT password included) and a
settings file with a misspelt key holding the password (refused); the device applies the settings and runs on a
real video against a real mosquitto that checks that password; the owner pushes a signed configuration with a
misspelt secret key to the running device (refused, published and audited); then lists, views and releases a clip.
Every stdout/stderr (at -vv, so every log line), every MQTT payload on the broker, the audit log, the outbox and
the files the device leaves for others are scanned for the device seed, the owner's passphrase and secret keys and
the MQTT password, as raw bytes, hex and base64. Key objects are checked the same way through their public
attributes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from doorkeep.device.config import Config
from doorkeep.device.errors import ConfigError
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.tools.local_broker import private_dir
from fixtures_broker import Mosquitto, Subscriber

pytestmark = [pytest.mark.broker, pytest.mark.slow]

OWNER_PASS = "owner-passphrase-Zq7!tolkien"
MQTT_USER = "doorbell"
MQTT_PASS = "mqtt-password-Xv93kLm2"
TYPO_SECRET = "typo-secret-Pw0rd-77aa"  # the value under a misspelt key pushed to the running device


def encodings(secret: bytes) -> list[bytes]:
    """How a secret could show up: raw, hex (both cases), base64 (standard/url-safe, padded or not), and Python's
    bytes repr (what ``str(nacl.signing.SigningKey)`` prints)."""
    b64 = base64.b64encode(secret)
    url = base64.urlsafe_b64encode(secret)
    forms = [secret, secret.hex().encode(), secret.hex().upper().encode(), b64, b64.rstrip(b"="), url,
             url.rstrip(b"="), repr(secret)[2:-1].encode()]
    return [f for f in forms if len(f) >= 8]


class Scan:
    """Everything that left the programs, labelled by where it came from."""

    def __init__(self) -> None:
        self.items: list[tuple[str, bytes]] = []

    def add(self, where: str, data: str | bytes) -> None:
        self.items.append((where, data.encode() if isinstance(data, str) else data))

    def leaks(self, secrets: dict[str, bytes], *, skip: tuple[str, ...] = ()) -> list[str]:
        found = []
        for where, data in self.items:
            if where.startswith(skip):
                continue
            for name, secret in secrets.items():
                if any(form in data for form in encodings(secret)):
                    found.append(f"{name} in {where}")
        return found


def run_cli(scan: Scan, *args: str | Path, env: dict[str, str] | None = None, ok: bool = True,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "doorkeep.tools.cli", "-vv", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    label = "doorkeep " + " ".join(map(str, args[:2]))
    scan.add(f"stdout of {label}", proc.stdout)
    scan.add(f"stderr of {label}", proc.stderr)
    assert (proc.returncode == 0) == ok, f"{label} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def public_attributes(obj: object) -> dict[str, Any]:
    out = {}
    for name in dir(obj):
        if not name.startswith("_"):
            value = getattr(obj, name)
            if not callable(value):  # methods are not printed; what they return is (signatures, public keys)
                out[name] = value
    return out


def scan_object(scan: Scan, label: str, obj: object) -> None:
    """``str``/``repr`` of the object and of every public attribute (what a log line or f-string could print)."""
    scan.add(f"repr({label})", repr(obj))
    scan.add(f"str({label})", str(obj))
    for name, value in public_attributes(obj).items():
        scan.add(f"str({label}.{name})", str(value))
        scan.add(f"repr({label}.{name})", repr(value))


def video(path: Path) -> Path:
    from doorkeep.device.sources.photo_scene import photo_scene
    from doorkeep.device.sources.synthetic import write_video

    write_video(str(path), seconds=8, width=640, height=480, fps=30, scene=photo_scene(640, 480))
    return path


def push_to_device_channel(scan: Scan, doc: Path, device_toml: Path, broker: Any, book: Path,
                           env: dict[str, str]) -> None:
    """``doorkeep config push`` to the device's owner-document channel (RemoteDocuments, as the service runs it),
    which answers with a signed verdict over MQTT and audits the refusal. Its log lines are scanned too."""
    import logging

    from doorkeep.device.publish.mqtt import MqttClient
    from doorkeep.device.vault.audit import AuditLog
    from doorkeep.device.vault.vault import AUDIT_FILE
    from doorkeep.provisioning.device_state import DeviceProvisioning
    from doorkeep.provisioning.remote import RemoteDocuments
    from doorkeep.provisioning.signed_config import load_local_toml
    from doorkeep.provisioning.startup import prepare_device

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            scan.add(f"log {record.name}", self.format(record))

    handler = Collect(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("doorkeep")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        start = prepare_device(device_toml)
        assert start.config.mqtt.password == MQTT_PASS  # the signed settings are in force
        with AuditLog.open(start.config.state_dir / AUDIT_FILE, start.identity) as audit:
            prov = DeviceProvisioning(start.config.state_dir, identity=start.identity, audit=audit)
            client = MqttClient(start.config.mqtt, client_id=f"{start.identity.device_id}-docs")
            remote = RemoteDocuments(client, prov, local=load_local_toml(device_toml))
            remote.start()
            client.start()
            try:
                client.wait_subscribed(15)
                proc = run_cli(scan, "config", "push", doc, "--broker", broker.url, "--book", book, env=env,
                               ok=False)
                assert "invalid-config" in proc.stderr, proc.stderr
            finally:
                remote.stop()
                client.stop()
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
def mosquitto_with_password() -> Any:
    """mosquitto checking MQTT_USER's password (the file must be readable by user mosquitto: a 0755 dir in /tmp)."""
    d = private_dir("dk-mosq-pw-")
    pw = d / "passwords"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pw), MQTT_USER, MQTT_PASS], check=True, capture_output=True)
    pw.chmod(0o644)
    broker = Mosquitto(extra_conf=f"password_file {pw}\n")
    try:
        yield broker
    finally:
        broker.close()
        shutil.rmtree(d, ignore_errors=True)


def test_a_whole_device_life_prints_no_secret(tmp_path: Path, mosquitto_with_password: Any,
                                             model_path: Path) -> None:
    broker = mosquitto_with_password
    scan = Scan()
    env = {**os.environ, "DOORKEEP_MODEL_DIR": str(model_path.parent), "HOME": str(tmp_path / "home")}
    env.pop("DOORKEEP_PASSPHRASE", None)
    state, owner_dir = tmp_path / "state", tmp_path / "owner"
    owner_dir.mkdir()
    key, book, passfile = owner_dir / "owner.key", owner_dir / "devices.json", owner_dir / "pass"
    passfile.write_text(OWNER_PASS + "\n")
    device_toml = tmp_path / "doorkeep.toml"
    device_toml.write_text(f"""
[device]
state_dir = "{state}"
[capture]
source = "file"
path = "{video(tmp_path / 'door.mp4')}"
realtime = true
loop = true
main_width = 640
main_height = 480
""")
    owner = ("--key", key, "--passphrase-file", passfile, "--book", book)

    # ---- owner key, boot-file pairing, receipt
    run_cli(scan, "owner", "keygen", "--out", key, "--kdf", "min", "--passphrase-file", passfile, env=env)
    run_cli(scan, "pair", "--owner", *owner, "--boot-file", tmp_path / "boot.json", env=env)
    run_cli(scan, "pair", "--device", "--boot-file", tmp_path / "boot.json", "--config", device_toml, env=env)
    run_cli(scan, "pair", "--owner", *owner, "--receipt", state / "pair-receipt.json", env=env)

    # ---- settings: the broker with its password; a misspelt key holding the password is refused owner-side
    settings, typo = tmp_path / "settings.toml", tmp_path / "typo.toml"
    settings.write_text(f"""
[mqtt]
host = "{broker.host}"
port = {broker.port}
username = "{MQTT_USER}"
password = "{MQTT_PASS}"
heartbeat_s = 1
""")
    typo.write_text(f'[mqtt]\nhost = "{broker.host}"\npasword = "{MQTT_PASS}"\n')
    run_cli(scan, "config", "sign", settings, *owner, "--out", tmp_path / "settings.signed.json", env=env)
    run_cli(scan, "config", "sign", typo, *owner, "--out", tmp_path / "typo.signed.json", env=env, ok=False)
    run_cli(scan, "config", "apply", tmp_path / "settings.signed.json", "--config", device_toml, env=env)

    # ---- the device runs; a signed document with a misspelt secret key is pushed to it and refused
    keys = SecretKeys.load(key, OWNER_PASS.encode(), role="owner")
    identity = DeviceIdentity.load_or_create(state)
    from doorkeep.provisioning.documents import KIND_CONFIG, sign_document

    bad_doc = sign_document(KIND_CONFIG, device_id=identity.device_id, counter=2,
                            body={"config": {"mqtt": {"pasword": TYPO_SECRET}}}, owner=keys)
    (tmp_path / "bad.json").write_bytes(bad_doc.to_bytes())
    with Subscriber(broker, "#") as everything:
        proc = subprocess.Popen([sys.executable, "-m", "doorkeep.tools.cli", "-vv", "run", "--config",
                                 str(device_toml)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not any(t.endswith("/event") and b'"start"' in p
                                                          for t, p, _ in everything.all):
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.2)
            assert any(t.endswith("/event") for t, _, _ in everything.all), "the device published no event"
            time.sleep(3)  # a heartbeat or two more, the end of the person event
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        scan.add("stdout of doorkeep run", out)
        scan.add("stderr of doorkeep run", err)
        push_to_device_channel(scan, tmp_path / "bad.json", device_toml, broker, book, env)
        time.sleep(0.5)
        messages = list(everything.all)
    assert f"device {identity.device_id}" in out + err
    for topic, payload, _ in messages:
        scan.add(f"mqtt {topic}", payload)

    # ---- the owner looks at the footage and releases it
    clips = json.loads(run_cli(scan, "clips", "--state-dir", state, "--json", env=env).stdout)
    assert clips, "the run recorded no clip"
    clip_id = clips[0]["clip_id"]
    run_cli(scan, "view", clip_id, *owner[:4], "--out", tmp_path / "mine.mp4", "--state-dir", state, env=env)
    (tmp_path / "rec.pass").write_text("recipient pass\n")
    run_cli(scan, "recipient", "keygen", "--out", tmp_path / "rec.key", "--kdf", "min", "--passphrase-file",
            tmp_path / "rec.pass", env=env)
    run_cli(scan, "grant", *owner[:4], "--recipient", tmp_path / "rec.key.pub", "--recipient-name", "Insurer",
            "--purpose", "claim", "--requester", "Insurer", "--clip", clip_id, "--days", "1", "--out",
            tmp_path / "g.grant", "--state-dir", state, env=env)
    run_cli(scan, "export", tmp_path / "g.grant", "--out", tmp_path / "b.bundle", "--state-dir", state, env=env)
    run_cli(scan, "audit", "verify", "--state-dir", state, "--json", env=env)

    # ---- what the device leaves for others: audit log, outbox, receipt, manifests, the export bundle
    for p in sorted(state.rglob("*")):
        if p.is_file() and p.name.startswith(("audit", "outbox", "pair-receipt", "provisioning")):
            scan.add(f"file {p.relative_to(tmp_path)}", p.read_bytes())
        if p.is_file() and p.name.endswith(".manifest.json"):
            scan.add(f"file {p.relative_to(tmp_path)}", p.read_bytes())
    scan.add("file b.bundle", (tmp_path / "b.bundle").read_bytes())
    assert any(w.startswith("file ") and "audit" in w for w, _ in scan.items), "no audit log found to scan"
    audit_text = b"".join(d for w, d in scan.items if w.startswith("file ") and "audit" in w)
    assert b"config_refused" in audit_text or b"invalid-config" in audit_text, "the pushed typo was not audited"

    # ---- config errors and key objects, in process
    for table in ({"mqtt": {"pasword": MQTT_PASS}}, {"mqtt": {"password": [MQTT_PASS]}},
                  {"mqtt": {"password": MQTT_PASS, "port": "x"}}, {"mqtt": {"Passwort": MQTT_PASS}},
                  {"mqtt": {"secert": MQTT_PASS}}):
        with pytest.raises(ConfigError) as info:
            Config.from_dict(table)
        scan.add(f"ConfigError for {list(table['mqtt'])}", f"{info.value} {info.value.value!r} {info.value.why}")
    for label, obj in (("identity", identity), ("owner keys", keys)):
        scan_object(scan, label, obj)

    seed = (state / "device.key").read_bytes()
    assert len(seed) == 32
    secrets = {"device seed": seed, "owner passphrase": OWNER_PASS.encode(), "MQTT password": MQTT_PASS.encode(),
               "owner signing seed": bytes(keys._signing_key), "owner box secret": bytes(keys._box_key)}
    leaks = scan.leaks(secrets)
    # The typo secret travels inside the owner's pushed document by design (topic .../pair/doc); nowhere else.
    pushed = f"mqtt doorkeep/{identity.device_id}/pair/doc"
    leaks += scan.leaks({"misspelt secret": TYPO_SECRET.encode()}, skip=(pushed,))
    assert len(scan.items) > 60 and any(w.startswith("mqtt ") for w, _ in scan.items)
    assert not leaks, "secrets printed:\n" + "\n".join(sorted(set(leaks)))
