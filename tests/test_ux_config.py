"""Names and types in the configuration (#11 items 14 and 15): zone names in any script within their 20 bytes, device
names that Home Assistant can show, and sections that check their values when a vendor builds them in code."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
from doorkeep.device.config import (
    DEVICE_NAME_MAX_CHARS,
    CaptureSection,
    Config,
    DeviceSection,
    MaskSection,
    Section,
    ZoneSection,
)
from doorkeep.device.errors import ConfigError
from doorkeep.device.events import Event
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.publish.discovery import discovery_payload
from doorkeep.device.publish.payload import encode, verify
from doorkeep.device.publish.topics import SPEC, Topics

SQUARE = [[0, 0], [1, 0], [1, 1]]


def zone_config(name: str) -> Config:
    return Config.from_dict({"zones": [{"name": name, "polygon": SQUARE}]})


@pytest.mark.parametrize("name", ["Vordertür", "Entrée", "Garten-Süd 2", "玄関", "Ωmega_1", "cafe\u0301"])
def test_zone_names_in_any_script_travel_in_a_signed_event(name: str) -> None:
    assert zone_config(name).zones[0].name == name
    ident = DeviceIdentity.generate()
    got = verify(encode(Event("e1", "person", "start", 1.0, 1.0, zone=name), ident), ident.public_bytes)
    assert got.zone == name


def test_zone_name_message_counts_bytes_not_characters() -> None:
    zone_config("ä" * 10)  # 20 bytes: the documented bound
    with pytest.raises(ConfigError, match=r"zones\[0\]\.name.*1\.\.20 bytes of UTF-8.*this one is 22") as exc:
        zone_config("ä" * 11)  # 11 characters, 22 bytes
    assert "letters" not in str(exc.value).split(":")[-1]  # the reason given is the length, not the alphabet
    for bad in ("porch/#", 'say "hi"', "tab\there", "emoji🙂"):
        with pytest.raises(ConfigError, match=r"zones\[0\]\.name.*letters, digits, space, _ or - only"):
            zone_config(bad)


@pytest.mark.parametrize("bad", ["", "   ", "Front\ndoor", "bell\x07", "zero\u200bwidth",
                                 "x" * (DEVICE_NAME_MAX_CHARS + 1)])
def test_device_names_refuse_empty_control_and_overlong(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"device\.name"):
        Config.from_dict({"device": {"name": bad}})
    with pytest.raises(ConfigError, match=r"DeviceSection\.name"):
        DeviceSection(name=bad)


def test_longest_device_name_fits_the_discovery_bound() -> None:
    """The config's name rule is what keeps the discovery message within 4 KB: the worst name (every character
    JSON-escaped to a surrogate pair) under the longest discovery prefix still fits."""
    worst = "\U0001f6aa" * DEVICE_NAME_MAX_CHARS  # 🚪, escaped as 12 bytes
    cfg = Config.from_dict({"device": {"name": worst}, "mqtt": {"discovery_prefix": "p" * 64}})
    payload = discovery_payload(Topics("dk-" + "a" * 16, prefix=cfg.mqtt.discovery_prefix), device_name=cfg.device.name)
    assert len(payload) <= SPEC["discovery"].max_bytes


def _wrong_value(hint: typing.Any) -> typing.Any:
    """A value of the wrong type for a field typed ``hint``."""
    if hint is bool:
        return "yes"
    if hint in (int, float):
        return "x"
    if hint is str:
        return 5
    if hint is Path:
        return 5
    return 5  # tuples and sections


def _sections() -> list[type[Section]]:
    hints = typing.get_type_hints(Config)
    found: list[type[Section]] = [Config]
    for hint in hints.values():
        cls = typing.get_args(hint)[0] if typing.get_origin(hint) is tuple else hint
        if dataclasses.is_dataclass(cls):
            found.append(cls)
    return found


@pytest.mark.parametrize("cls", _sections(), ids=lambda c: c.__name__)
def test_every_section_checks_its_types_when_built_in_code(cls: type[Section]) -> None:
    hints = typing.get_type_hints(cls)
    base: dict[str, typing.Any] = {}
    if cls is ZoneSection or cls is MaskSection:
        base = {"name": "porch", "polygon": SQUARE}
    cls(**base)  # the defaults (plus a name and polygon) are fine
    for f in dataclasses.fields(cls):
        with pytest.raises(ConfigError, match=rf"{cls.__name__}\.{f.name}"):
            cls(**{**base, f.name: _wrong_value(hints[f.name])})


def test_sections_in_code_apply_the_same_rules_as_toml() -> None:
    with pytest.raises(ConfigError, match=r"CaptureSection\.fps = 'x': must be a number"):
        CaptureSection(fps="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"CaptureSection\.fps = 500: must be <= 120"):
        CaptureSection(fps=500)
    with pytest.raises(ConfigError, match=r"CaptureSection\.main_width.*even"):
        CaptureSection(main_width=641)
    with pytest.raises(ConfigError, match=r"Config\.capture = 'x': must be a table"):
        Config(capture="x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"Config\.capture\.fps = 'x'"):
        Config(capture={"fps": "x"})  # type: ignore[arg-type]
    # what TOML converts, code gets converted too: an int for a float, a list for a tuple, a str for a path
    cap = CaptureSection(fps=10)
    assert type(cap.fps) is float and cap.fps == 10.0
    assert ZoneSection(name="porch", polygon=[[0, 0], [1, 0], [1, 1]]).polygon == ((0, 0), (1, 0), (1, 1))  # type: ignore[arg-type]
    assert DeviceSection(state_dir="/tmp/x").state_dir == Path("/tmp/x")  # type: ignore[arg-type]
    assert Config().replace(capture=cap).capture is cap
