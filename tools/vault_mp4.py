"""Remux decrypted H.264 packets into a playable MP4 with PyAV (no re-encode: the recorded bytes are kept)."""

from __future__ import annotations

import fractions
import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from doorkeep.device.errors import FormatError, OutputFailed
from doorkeep.device.fileio import AtomicOutput
from doorkeep.device.frames import Packet
from doorkeep.device.vault.clips import Codec


def write_mp4(packets: Iterable[Packet], path: str | Path | BinaryIO, *, codec: Codec) -> int:
    """Write ``packets`` (Annex B H.264, starting at a keyframe; a stream is consumed as it comes, so a clip never
    has to fit in memory) to an MP4 file — or to a seekable binary file object such as ``io.BytesIO`` (the owner
    console remuxes in memory) — and return the packets written.

    Timestamps come from the packets' ``pts`` in ``codec.time_base``, shifted to start at 0; decode order equals
    presentation order (doorkeep encodes without B-frames), so ``dts`` is ``pts`` kept strictly increasing.
    """
    import av

    if codec.name != "h264":
        raise FormatError(f"cannot remux codec {codec.name!r} (only h264)")
    it = iter(packets)
    first = next(it, None)
    if first is None:
        raise FormatError("no packets to write")
    tb = fractions.Fraction(*codec.time_base)
    n = 0
    out: Any = av.open(str(path) if isinstance(path, str | Path) else path, "w", format="mp4")
    try:
        st = out.add_stream("h264")
        if codec.width and codec.height:
            st.width, st.height = codec.width, codec.height
        st.time_base = tb
        base = first.pts
        last = -1
        for p in itertools.chain([first], it):
            ts = max(p.pts - base, last + 1)
            last = ts
            ap = av.Packet(p.data)
            ap.pts = ap.dts = ts
            ap.time_base = tb
            ap.stream = st
            ap.is_keyframe = p.keyframe
            out.mux(ap)
            n += 1
    finally:
        out.close()
    return n


def write_mp4_into(out: AtomicOutput, packets: Iterable[Packet], *, codec: Codec) -> int:
    """:func:`write_mp4` into ``out``'s temporary file (the caller commits or discards ``out``). Raises
    :class:`OutputFailed` naming the final path (a full disk, a write error)."""
    try:
        return write_mp4(packets, out.tmp, codec=codec)
    except OSError as exc:  # PyAV's error names its temporary file; the caller discards ``out``
        raise OutputFailed(str(out.path), exc.errno, exc.strerror or str(exc)) from None


def write_mp4_file(packets: Iterable[Packet], path: str | Path, *, codec: Codec) -> int:
    """:func:`write_mp4` to ``path`` as a private file (0600) that appears complete or not at all: written to a
    temporary file beside it, fsynced, renamed. A failure (a full disk) leaves neither a truncated MP4 under
    ``path`` nor the temporary file."""
    with AtomicOutput(path, mode=0o600) as out:
        return write_mp4_into(out, packets, codec=codec)


def decode_mp4(path: str | Path) -> list[Any]:
    """Every decoded frame of an MP4's first video stream as a numpy yuv420p array (tests, verification)."""
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]
