"""Printing text that someone else wrote: requester names, purposes, pairing abort reasons, remote error details.

Such strings reach the owner's terminal and the device's log. A terminal obeys escape sequences, so a requester
named ``"\\x1b]52;c;...\\x07"`` could rewrite the clipboard, and ``"\\x1b[2K\\rVERIFIED"`` could overwrite the line
that said the opposite; right-to-left overrides can make text read backwards. :func:`printable` is the one place
that makes such a string inert: every control and format character becomes a visible escape (``\\x1b``,
``\\u202e``) and the text is cut to a length. Use it wherever a string that crossed a trust boundary is printed
or logged (JSON output needs no help: ``json.dumps`` escapes control characters itself).
"""

from __future__ import annotations

import unicodedata

#: Unicode categories that are never shown as themselves: controls, formats (bidi overrides, zero-width joiners),
#: surrogates, private use, unassigned, line and paragraph separators.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape(ch: str) -> str:
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def printable(text: object, *, max_len: int = 300) -> str:
    """``text`` (``str()`` of anything) with every control/format character escaped, at most ``max_len``
    characters of the original (then ``…``)."""
    s = text if isinstance(text, str) else str(text)
    cut = len(s) > max_len
    s = s[:max_len]
    if not s.isprintable():  # fast path: isprintable() is False whenever an unsafe category is present
        s = "".join(_escape(c) if unicodedata.category(c) in _UNSAFE else c for c in s)
    return s + "…" if cut else s
