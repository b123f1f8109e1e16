"""The rules under doorkeep's configuration: field checks, the :class:`Section` base that applies them when a
section is built (from TOML or in code), and the generic TOML-table loader.

:mod:`doorkeep.device.config` holds the sections themselves; a section field names its rule with
``check(fn, default=...)`` where ``fn(value)`` returns ``None`` when fine, else why not.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
import unicodedata
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

from .errors import ConfigError

Check = Callable[[Any], str | None]


def check(fn: Check, **kw: Any) -> Any:
    """A dataclass field whose value must pass ``fn`` (returns ``None`` when fine, else why not)."""
    return field(metadata={"check": fn}, **kw)


def in_range(lo: float | None = None, hi: float | None = None) -> Check:
    def _c(v: Any) -> str | None:
        if lo is not None and v < lo:
            return f"must be >= {lo}"
        if hi is not None and v > hi:
            return f"must be <= {hi}"
        return None

    return _c


def one_of(*choices: str) -> Check:
    def _c(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(map(repr, choices))}"

    return _c


def even_positive(v: Any) -> str | None:
    return None if v > 0 and v % 2 == 0 else "must be a positive even number"


#: Zone names travel in every signed event, whose 256-byte bound leaves them 20 bytes of UTF-8.
ZONE_NAME_MAX_BYTES = 20
#: Device names go into the Home Assistant discovery message (4 KB bound; a 64-character name takes at most 768
#: bytes there even when every character is JSON-escaped, tests/test_ux_names.py checks the worst case).
DEVICE_NAME_MAX_CHARS = 64


def zone_name(v: Any) -> str | None:
    """1..20 UTF-8 bytes of letters (any script, with their accents), digits, space, ``_`` or ``-``."""
    n = len(v.encode())
    if not 1 <= n <= ZONE_NAME_MAX_BYTES:
        return (f"a zone name is 1..{ZONE_NAME_MAX_BYTES} bytes of UTF-8 (it travels in every signed event; "
                f"a, ä and ß take 1, 2 and 2 bytes), this one is {n}")
    bad = [ch for ch in v if not (unicodedata.category(ch)[0] in "LMN" or ch in " _-")]
    if bad:
        return f"a zone name holds letters, digits, space, _ or - only, not {''.join(dict.fromkeys(bad))!r}"
    return None


def device_name(v: Any) -> str | None:
    """1..64 printable characters, not only spaces: shown in Home Assistant (no control characters)."""
    if not v.strip():
        return "a device name must not be empty"
    if len(v) > DEVICE_NAME_MAX_CHARS:
        return f"a device name is at most {DEVICE_NAME_MAX_CHARS} characters (it goes into Home Assistant's " \
               f"discovery message, bounded to 4 KB), this one has {len(v)}"
    if not all(ch.isprintable() or ch == " " for ch in v):
        return "a device name must not contain control or other non-printable characters"
    return None


def polygon(v: Any) -> str | None:
    if len(v) < 3:
        return "a polygon needs at least 3 points"
    for x, y in v:
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            return "polygon points are normalised: each coordinate must be within 0..1"
    return None


class Section:
    """Base of every section: values are checked (type and rule) when the section is built, from TOML or in code.

    A vendor writing ``CaptureSection(fps="x")`` gets the same :class:`ConfigError` as a ``fps = "x"`` in a file;
    ints given for floats become floats, lists become tuples, strings become paths. A subclass with rules across
    fields overrides ``__post_init__`` and calls ``super().__post_init__()`` first.
    """

    def __post_init__(self) -> None:
        cls = type(self)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            checked = field_value(f, hints[f.name], value, f"{cls.__name__}.{f.name}")
            if checked is not value:
                object.__setattr__(self, f.name, checked)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, path)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # type: ignore[arg-type]
            return value  # built (and checked) by its own __post_init__
        if not isinstance(value, dict):
            raise ConfigError(path, value, f"must be a table (a {_type_name(tp)})")
        return load_section(tp, value, path)  # type: ignore[arg-type]
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(path, value, "must be an array")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(path, value, f"must have exactly {len(args)} items")
            return tuple(_convert(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
        item = args[0] if args else Any
        conv = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(conv)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, value, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, value, "must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, value, "must be a number")
        return value if type(value) is float else float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, value, "must be a string")
        return value
    if tp is Path:
        if isinstance(value, Path) and str(value):
            return value
        if not isinstance(value, str | os.PathLike) or not os.fspath(value):
            raise ConfigError(path, value, "must be a non-empty path string")
        return Path(value)
    raise ConfigError(path, value, f"unsupported type {_type_name(tp)}")


def field_value(f: dataclasses.Field[Any], hint: Any, value: Any, path: str) -> Any:
    """``value`` converted to the field's type and passed through its check; :class:`ConfigError` naming ``path``."""
    converted = _convert(hint, value, path)
    chk = f.metadata.get("check")
    if chk is not None:
        each = typing.get_origin(hint) in (list, tuple) and f.metadata.get("each")
        items = converted if each else [converted]
        for it in items:
            why = chk(it)
            if why:
                raise ConfigError(path, value, why)
    return converted


def load_section(cls: type[Any], data: dict[str, Any], path: str = "") -> Any:
    """Build dataclass ``cls`` from a TOML table, refusing unknown keys and bad values by key path."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        kp = f"{path}.{key}" if path else key
        if key not in fields:
            raise ConfigError(kp, value, f"unknown key (known: {', '.join(sorted(fields))})")
        kwargs[key] = field_value(fields[key], hints[key], value, kp)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(path or "<root>", data, str(exc)) from None
