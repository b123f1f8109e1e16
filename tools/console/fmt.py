"""How the console writes times, durations and sizes for people (local time of the owner's machine)."""

from __future__ import annotations

import datetime as dt
import time


def clock(t: float | None) -> str:
    """``14:03:27``."""
    return "—" if t is None else dt.datetime.fromtimestamp(t).strftime("%H:%M:%S")


def when(t: float | None) -> str:
    """``2025-11-29 14:03``."""
    return "—" if t is None else dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def iso(t: float | None) -> str:
    return "" if t is None else dt.datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


def day_label(day: str, *, today: dt.date | None = None) -> str:
    """``Today``, ``Yesterday`` or ``Saturday 29 November 2025`` for a ``YYYY-MM-DD`` day."""
    d = dt.date.fromisoformat(day)
    today = today or dt.date.today()
    if d == today:
        return "Today"
    if d == today - dt.timedelta(days=1):
        return "Yesterday"
    return d.strftime("%A %d %B %Y")


def duration(s: float | None) -> str:
    """``4 s``, ``1 min 12 s``, ``2 h 5 min``."""
    if s is None:
        return "ongoing"
    s = round(s)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def ago(t: float | None, *, now: float | None = None) -> str:
    """``12 s ago``, ``never``."""
    if t is None:
        return "never"
    return duration(max(0.0, (time.time() if now is None else now) - t)) + " ago"


def size(n: float | None) -> str:
    """``512 B``, ``1.4 MB``, ``2.1 GB`` (decimal units)."""
    if n is None:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def percent(score: float) -> str:
    return f"{round(score * 100)} %"


def day_fraction(t: float) -> str:
    """Where in its local day ``t`` falls, in thousandths (x of the day strip's tick, viewBox width 1000)."""
    d = dt.datetime.fromtimestamp(t)
    return f"{(d.hour * 3600 + d.minute * 60 + d.second) / 86.4:.1f}"


def day(t: float) -> str:
    """The local day ``YYYY-MM-DD`` of ``t``."""
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d")


def key_id(key: dict[str, object]) -> str:
    """A short printable id of a public key object (its signing key, first 8 bytes in hex)."""
    import base64
    import binascii

    try:
        return base64.b64decode(str(key.get("sign", "")), validate=True)[:8].hex() or "?"
    except (binascii.Error, ValueError):
        return "?"
