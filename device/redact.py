"""Secrets are never printable: which names hold secrets, and values replaced before anything is shown.

A config error is printed, logged, and — for an owner-signed configuration — published over MQTT in the device's
verdict and written to the audit log. So the value of any key that looks like it holds a secret is replaced, and
that includes misspellings and unknown keys (``mqtt.pasword = "…"`` is refused as unknown, but its value is
still the user's password).
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import Any

REDACTED = "<redacted>"

#: A key whose name contains one of these holds a secret (``password``, ``password_file``, ``api_token``, …).
_PARTS = ("pass", "pwd", "secret", "token", "cred", "psk", "private")
#: ... or is a near miss of one of these words (``pasword``, ``secert``, ``pword``).
_WORDS = ("password", "passphrase", "passwd", "secret", "token", "credential", "apikey", "privatekey")
_SIMILAR = 0.75  # SequenceMatcher ratio: every misspelling above, and none of the config's real key names
_MIN_MASK = 4  # shorter secrets are not searched for in free text (they would mask unrelated words)


def looks_secret(name: str) -> bool:
    """True if the last part of a dotted key path (``mqtt.pasword``, ``zones[0].name``) names a secret."""
    last = name.rsplit(".", 1)[-1].split("[", 1)[0]
    n = re.sub(r"[^a-z0-9]", "", last.lower())
    n = re.sub(r"(file|path)$", "", n) or n
    if not n:
        return False
    if n == "pw" or any(p in n for p in _PARTS):
        return True
    return any(SequenceMatcher(None, n, w).ratio() >= _SIMILAR for w in _WORDS)


def redact(path: str, value: Any) -> Any:
    """``value`` with every secret-looking entry replaced by :data:`REDACTED` (``path`` itself included)."""
    if looks_secret(path) and value not in ("", None):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(f"{path}.{k}", v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(path, v) for v in value)
    return value


def secrets_in(path: str, value: Any) -> list[str]:
    """The string values of secret-looking entries in ``value`` (to mask them in free text)."""
    if looks_secret(path):
        if isinstance(value, str | bytes):
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            return [text] if len(text) >= _MIN_MASK else []
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in secrets_in(f"{path}.{k}", v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in secrets_in(path, v)]
    return []


def mask(text: str, secrets: list[str]) -> str:
    """``text`` with each of ``secrets`` replaced by :data:`REDACTED` (longest first)."""
    for s in sorted(set(secrets), key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text
