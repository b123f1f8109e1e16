"""Clip keys live in locked memory while a clip is open, and the page is wiped when it closes (#14.14).

Before: the key and the secretstream state were plain heap buffers (zeroed on close, but swappable and part of any
core dump while the clip was open)."""

from __future__ import annotations

import mmap
from pathlib import Path

from doorkeep.device.frames import Packet
from doorkeep.device.vault.clips import ClipWriter, Codec, decrypt_clip, open_clip_key, parse_header
from doorkeep.device.vault.keys import SecretKeys
from nacl._sodium import ffi


def locked_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck in /proc/self/status")


def writer(tmp: Path, owner: SecretKeys, clip_id: str) -> ClipWriter:
    return ClipWriter(tmp / f"{clip_id}.clip", owner=owner.public, clip_id=clip_id, device_id="dk-test",
                      t_start=1.0, event_id="ev", codec=Codec(width=64, height=48), fsync_chunks=False)


def test_an_open_clips_key_is_locked_in_ram_and_wiped_on_close(tmp_path: Path) -> None:
    owner = SecretKeys.generate("owner")
    page_kb = mmap.PAGESIZE // 1024
    base = locked_kb()
    a = writer(tmp_path, owner, "a")
    b = writer(tmp_path, owner, "b")
    assert locked_kb() == base + 2 * page_kb  # one page of its own per open clip
    for w in (a, b):
        w.add(Packet(b"\x00\x00\x00\x01" + b"x" * 50, 0, 0.0, 1.0, True, True))
    a.close()
    assert locked_kb() == base + page_kb  # closing a does not unlock b's key
    assert bytes(ffi.buffer(a._page.page, mmap.PAGESIZE)) == bytes(mmap.PAGESIZE)
    b.abort()
    assert locked_kb() == base
    data = (tmp_path / "a.clip").read_bytes()  # and the clip written from the locked page decrypts
    _h, packets = decrypt_clip(data, open_clip_key(parse_header(data), owner))
    assert [p.data for p in packets] == [b"\x00\x00\x00\x01" + b"x" * 50]
