"""Just enough H.264 Annex B parsing to label packets: which NAL unit types an access unit carries."""

from __future__ import annotations

NAL_SLICE = 1
NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8


def nal_types(data: bytes, *, stop_at_slice: bool = True) -> list[int]:
    """NAL unit types in an Annex B buffer, in order. Stops at the first slice by default (headers come first)."""
    types: list[int] = []
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0 and pos + 3 < len(data):
        t = data[pos + 3] & 0x1F
        types.append(t)
        if stop_at_slice and t in (NAL_SLICE, NAL_IDR):
            break
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return types


def has_config(data: bytes) -> bool:
    """True when the access unit carries both SPS and PPS before its first slice (a decoder can start here)."""
    types = nal_types(data)
    return NAL_SPS in types and NAL_PPS in types


def is_idr(data: bytes) -> bool:
    """True when the access unit's first slice is an IDR slice."""
    types = nal_types(data)
    return bool(types) and types[-1] == NAL_IDR


def config_prefix(data: bytes) -> bytes:
    """The bytes before the first slice of an access unit that carries SPS/PPS (empty if it carries none).

    Used to repeat the stream's configuration on keyframes of inputs that only send it once.
    """
    if not has_config(data):
        return b""
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0 and pos + 3 < len(data):
        if data[pos + 3] & 0x1F in (NAL_SLICE, NAL_IDR):
            start = pos - 1 if pos > 0 and data[pos - 1] == 0 else pos
            return data[:start]
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return b""
