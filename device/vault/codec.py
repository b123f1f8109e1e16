"""Shared encoding helpers for every vault format: canonical JSON, base64, BLAKE2b and strict field readers.

Every signed document is canonical JSON (sorted keys, no whitespace, ASCII only, no NaN) so the bytes that were
signed can be rebuilt exactly from the parsed object. Readers never raise anything but :class:`FormatError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

import nacl.encoding
import nacl.hash

from ..errors import FormatError

#: Largest JSON document any vault parser accepts (grants, requests, manifests, bundle indexes).
MAX_JSON_BYTES = 4 * 1024 * 1024


def canonical(obj: Any) -> bytes:
    """Canonical JSON bytes of ``obj`` (what is signed and hashed)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def blake2b(data: bytes, *, person: bytes = b"", size: int = 32) -> bytes:
    """BLAKE2b digest (raw bytes), personalised per use so a hash of one kind is never valid as another."""
    return nacl.hash.blake2b(data, digest_size=size, person=person, encoder=nacl.encoding.RawEncoder)


def b64e(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64d(text: object, *, what: str, length: int | None = None) -> bytes:
    """Decode standard base64 ``text`` (strict), optionally of an exact decoded ``length``."""
    if not isinstance(text, str):
        raise FormatError(f"{what}: must be a base64 string")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise FormatError(f"{what}: not valid base64") from None
    if length is not None and len(raw) != length:
        raise FormatError(f"{what}: must decode to {length} bytes, got {len(raw)}")
    return raw


def parse_json(data: bytes, *, what: str) -> dict[str, Any]:
    """Parse a JSON object from ``data`` or raise :class:`FormatError` naming ``what``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError(f"{what}: expected bytes")
    if len(data) > MAX_JSON_BYTES:
        raise FormatError(f"{what}: larger than {MAX_JSON_BYTES} bytes")
    try:
        obj = json.loads(bytes(data).decode("utf-8"), parse_constant=_no_constant, parse_float=_finite_float)
    except _NonFinite as exc:
        raise FormatError(f"{what}: number {exc} is out of range (only finite numbers are allowed)") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError):
        raise FormatError(f"{what}: not valid JSON") from None
    if not isinstance(obj, dict):
        raise FormatError(f"{what}: must be a JSON object")
    return obj


class _NonFinite(FormatError):
    """A JSON number that does not fit a finite float (``1e999`` would otherwise parse as infinity)."""


def _no_constant(name: str) -> Any:
    raise _NonFinite(name)  # NaN, Infinity, -Infinity


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _NonFinite(text[:32])
    return v


class Fields:
    """Strict typed reads from a parsed JSON object; every failure is a :class:`FormatError` naming the key."""

    def __init__(self, obj: object, *, what: str) -> None:
        if not isinstance(obj, dict):
            raise FormatError(f"{what}: must be a JSON object")
        self.obj = obj
        self.what = what

    def _get(self, key: str) -> Any:
        if key not in self.obj:
            raise FormatError(f"{self.what}: missing {key!r}")
        return self.obj[key]

    def header(self, fmt: str, version: int) -> None:
        """Check the ``format`` name and ``v`` version fields."""
        if self.obj.get("format") != fmt:
            raise FormatError(f"{self.what}: format must be {fmt!r}")
        if self.obj.get("v") != version or isinstance(self.obj.get("v"), bool):
            raise FormatError(f"{self.what}: unsupported version {self.obj.get('v')!r} (this reads {version})")

    def only(self, *keys: str) -> None:
        """Refuse keys outside ``keys`` (an unknown key is never silently ignored in a signed document)."""
        extra = set(self.obj) - set(keys)
        if extra:
            raise FormatError(f"{self.what}: unknown keys {sorted(map(str, extra))}")

    def text(self, key: str, *, max_len: int = 256, empty: bool = False) -> str:
        v = self._get(key)
        if not isinstance(v, str) or len(v) > max_len or (not v and not empty):
            raise FormatError(f"{self.what}: {key!r} must be a {'' if empty else 'non-empty '}string of <= {max_len}")
        return v

    def integer(self, key: str, *, lo: int = 0, hi: int = 2**63 - 1) -> int:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise FormatError(f"{self.what}: {key!r} must be an integer in {lo}..{hi}")
        return v

    def number(self, key: str) -> float:
        v = self._get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
            raise FormatError(f"{self.what}: {key!r} must be a finite non-negative number")
        return float(v)

    def opt_num(self, key: str) -> float | None:
        return None if self.obj.get(key, None) is None else self.number(key)

    def flag(self, key: str) -> bool:
        v = self._get(key)
        if not isinstance(v, bool):
            raise FormatError(f"{self.what}: {key!r} must be true or false")
        return v

    def b64(self, key: str, *, length: int | None = None) -> bytes:
        return b64d(self._get(key), what=f"{self.what}: {key!r}", length=length)

    def hexstr(self, key: str, *, length: int) -> str:
        v = self._get(key)
        if not isinstance(v, str) or len(v) != 2 * length or v.strip("0123456789abcdef"):
            raise FormatError(f"{self.what}: {key!r} must be {2 * length} lowercase hex digits")
        return v

    def items(self, key: str, *, max_len: int = 10_000) -> list[Any]:
        v = self._get(key)
        if not isinstance(v, list) or len(v) > max_len:
            raise FormatError(f"{self.what}: {key!r} must be a list of <= {max_len} items")
        return v

    def sub(self, key: str) -> Fields:
        return Fields(self._get(key), what=f"{self.what}.{key}")

    def texts(self, key: str, *, max_len: int = 1000, item_len: int = 128) -> tuple[str, ...]:
        items = self.items(key, max_len=max_len)
        if not all(isinstance(s, str) and 0 < len(s) <= item_len for s in items):
            raise FormatError(f"{self.what}: {key!r} must hold non-empty strings of <= {item_len}")
        return tuple(items)


def signed_message(domain: str, payload: bytes) -> bytes:
    """The bytes actually signed: a domain tag, NUL, then ``payload`` (a signature of one kind never verifies as
    another: an audit signature is not a manifest signature)."""
    return domain.encode("ascii") + b"\x00" + payload
