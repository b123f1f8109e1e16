"""Secrets never printable, piece by piece (the whole-run scan is tests/test_secrets_scan.py)."""

from __future__ import annotations

import nacl.signing
import pytest
from doorkeep.device.config import Config
from doorkeep.device.errors import ConfigError
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.redact import REDACTED, looks_secret
from doorkeep.device.vault.keys import SecretKeys

SECRET = "hunter2-correct-horse"


@pytest.mark.parametrize("name", ["password", "mqtt.password", "mqtt.pasword", "passwrod", "Passwort", "passwd", "pw",
                                  "pwd", "pword", "secret", "secert", "api_token", "tokn", "credentials", "psk",
                                  "private_key", "password_file", "pasword_file", "zones[0].password"])
def test_secret_looking_names(name: str) -> None:
    assert looks_secret(name)


def test_no_real_config_key_but_the_passwords_looks_secret() -> None:
    import dataclasses
    import typing

    def names(cls: type) -> set[str]:
        out = set()
        for f in dataclasses.fields(cls):
            out.add(f.name)
            tp = typing.get_type_hints(cls)[f.name]
            for t in (tp, *typing.get_args(tp)):
                if dataclasses.is_dataclass(t):
                    out |= names(t)  # type: ignore[arg-type]
        return out

    assert {n for n in names(Config) if looks_secret(n)} == {"password", "password_file"}


@pytest.mark.parametrize("table", [
    {"mqtt": {"pasword": SECRET}},                      # a typo: unknown key, the value is still the password
    {"mqtt": {"password": [SECRET]}},                   # wrong type
    {"mqtt": {"Passwort": SECRET}},
    {"mqtt": {"secert": {"x": SECRET}}},
    {"mqtt": {"password": SECRET, "port": "not a port"}},
])
def test_config_errors_never_echo_a_secret(table: dict) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(table)
    shown = f"{info.value} {info.value!r} {info.value.value!r} {info.value.why}"
    assert SECRET not in shown, shown


def test_a_refused_table_redacts_its_secret_entries() -> None:
    err = ConfigError("mqtt", {"host": "hub", "password": SECRET, "nested": {"api_token": SECRET}},
                      f"something about {SECRET}")
    assert SECRET not in str(err)
    assert err.value == {"host": "hub", "password": REDACTED, "nested": {"api_token": REDACTED}}
    assert err.why == f"something about {REDACTED}"


def test_paired_device_refusing_a_local_mqtt_table_does_not_echo_its_password() -> None:
    from doorkeep.provisioning.signed_config import effective_config

    with pytest.raises(ConfigError) as info:
        effective_config({"mqtt": {"host": "hub", "password": SECRET}}, None, paired=True)
    assert SECRET not in str(info.value) and "hub" in str(info.value)


def _printed(obj: object) -> str:
    """Everything a log line could print of ``obj``: str/repr of it and of each public attribute."""
    parts = [str(obj), repr(obj)]
    for name in dir(obj):
        if not name.startswith("_") and not callable(value := getattr(obj, name)):
            parts += [str(value), repr(value)]
    return "\n".join(parts)


def test_key_objects_print_no_secret() -> None:
    seed = bytes(range(32))
    ident = DeviceIdentity(nacl.signing.SigningKey(seed))
    keys = SecretKeys.from_seeds("owner", bytes(range(32, 64)), bytes(range(64, 96)))
    for obj, secrets in ((ident, [seed]), (keys, [bytes(range(32, 64)), bytes(range(64, 96))])):
        text = _printed(obj)
        for s in secrets:
            assert s.hex() not in text and repr(s)[2:-1] not in text, type(obj).__name__
    assert not hasattr(ident, "signing_key") and not hasattr(keys, "signing_key") and not hasattr(keys, "box_key")
    assert ident.sign(b"m") == nacl.signing.SigningKey(seed).sign(b"m").signature  # usable through methods only


def test_pairing_state_does_not_print_its_nonce() -> None:
    from doorkeep.provisioning.pairing_owner import OwnerPairing

    pairing = OwnerPairing(SecretKeys.generate("owner"))
    pairing.start()
    assert pairing._nonce and pairing._nonce.hex() not in repr(pairing) and repr(pairing._nonce) not in repr(pairing)
