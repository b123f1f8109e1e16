"""The clip writer's promises, observed from outside: every chunk starts at a keyframe (a torn clip decodes up to its
last complete chunk), each chunk is fsynced as it is sealed when ``fsync_chunks`` is on (the default), the plaintext
buffer is zeroed before it is dropped, and clip ids cannot name the store's hidden files. Written for mutants that
survived every other vault test (tests/mutation_check.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from doorkeep.device.errors import FormatError
from doorkeep.device.frames import Packet
from doorkeep.device.vault.clips import (
    ClipDecryptor,
    ClipWriter,
    Codec,
    decrypt_clip,
    open_clip_key,
    read_frames,
    read_header,
)
from doorkeep.device.vault.diskio import DiskIO
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.device.vault.store import ClipStore
from vault_support import GOP, make_packets

OWNER = SecretKeys.generate("owner")


def _writer(path: Path, **kw: object) -> ClipWriter:
    return ClipWriter(path, owner=OWNER.public, clip_id="c1", device_id="dk-chunks", t_start=0.0, event_id="e",
                      codec=Codec(), **kw)  # type: ignore[arg-type]


def _chunks(path: Path) -> list[list[Packet]]:
    with open(path, "rb") as f:
        header, _ = read_header(f)
        dec = ClipDecryptor(header, open_clip_key(header, OWNER))
        chunks = [dec.pull(frame) for frame in read_frames(f)]
    dec.finish(require_final=True)
    return chunks


def test_every_chunk_starts_at_a_keyframe(tmp_path: Path) -> None:
    packets = make_packets(6 * GOP)
    assert packets[0].keyframe and sum(p.keyframe for p in packets) == 6
    w = _writer(tmp_path / "c.clip", chunk_bytes=1 << 20, fsync_chunks=False)  # chunks end only at keyframes
    for p in packets:
        w.add(p)
    w.close()
    chunks = [c for c in _chunks(tmp_path / "c.clip") if c]  # the FINAL chunk may be empty
    assert len(chunks) == 6
    assert all(c[0].keyframe for c in chunks)
    assert [p.data for c in chunks for p in c] == [p.data for p in packets]


class _CountingDisk(DiskIO):
    def __init__(self) -> None:
        self.fsyncs = 0

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        os.fsync(fd)


def test_each_sealed_chunk_is_fsynced_by_default_and_only_at_close_when_off(tmp_path: Path) -> None:
    packets = make_packets(4 * GOP)
    counts = {}
    for fsync in (True, False):
        disk = _CountingDisk()
        kw = {} if fsync else {"fsync_chunks": False}  # True is the default
        w = _writer(tmp_path / f"{fsync}.clip", chunk_bytes=1 << 20, disk=disk, **kw)
        for i, p in enumerate(packets):
            before = disk.fsyncs
            w.add(p)
            if fsync and p.keyframe and i > 0:  # a keyframe seals the chunk before it: on disk before add returns
                assert disk.fsyncs == before + 1
        w.close()
        counts[fsync] = disk.fsyncs
    assert counts[True] == 3 + 2  # 3 chunks sealed by keyframes, then at close the last chunk + the file
    assert counts[False] == 1


class _SpyBuffer(bytearray):
    """The writer's plaintext buffer, recording what it holds whenever it is cleared (dropped)."""

    dropped: list[bytes]

    def clear(self) -> None:
        self.dropped.append(bytes(self))
        super().clear()


def test_the_plaintext_buffer_is_zeroed_before_it_is_dropped(tmp_path: Path) -> None:
    packets = make_packets(3 * GOP)
    w = _writer(tmp_path / "c.clip", chunk_bytes=1 << 20, fsync_chunks=False)
    spy = _SpyBuffer()
    spy.dropped = []
    w._buf = spy
    for p in packets:
        w.add(p)
    w.close()
    assert w._buf is spy, "the writer replaced its buffer (the spy no longer sees it)"
    assert len(spy.dropped) >= 3  # every sealed chunk
    assert all(d and not any(d) for d in spy.dropped), "plaintext left in a dropped buffer"


def test_clip_ids_cannot_name_hidden_files_of_the_store(tmp_path: Path) -> None:
    """A grant or request names clips by id; ids starting with '.' (``..``, a shred or temporary name) are refused
    before any path is built, by the writer as by the store."""
    store = ClipStore(tmp_path)
    for bad in (".", "..", ".c1", "..c1"):
        with pytest.raises(FormatError):
            store.clip_path(bad)
        with pytest.raises(FormatError):
            ClipWriter(tmp_path / "x.clip", owner=OWNER.public, clip_id=bad, device_id="d", t_start=0.0,
                       event_id="e", codec=Codec())
    assert store.clip_path("c1.part-2").name.startswith("c1.part-2")
    assert not (tmp_path / "x.clip").exists()


def test_a_clip_cut_before_its_final_chunk_is_refused_as_truncated(tmp_path: Path) -> None:
    """Cut at a chunk boundary every remaining chunk authenticates; only the missing FINAL tag says the clip is
    incomplete. Decrypting it as a whole clip is refused; as a recovered torn clip it gives every chunk before."""
    packets = make_packets(3 * GOP)
    w = _writer(tmp_path / "c.clip", chunk_bytes=1 << 20, fsync_chunks=False)
    for p in packets:
        w.add(p)
    summary = w.close()
    data = (tmp_path / "c.clip").read_bytes()
    header, _ = read_header(open(tmp_path / "c.clip", "rb"))
    key = open_clip_key(header, OWNER)
    cut = data[: len(data) - summary.chunks[-1][0]]  # without the FINAL chunk
    with pytest.raises(FormatError, match="FINAL"):
        decrypt_clip(cut, key)
    _, recovered = decrypt_clip(cut, key, require_final=False)
    last_gop = max(i for i, p in enumerate(packets) if p.keyframe)  # the FINAL chunk held the last GOP
    assert [p.data for p in recovered] == [p.data for p in packets[:last_gop]]


def test_a_manifest_accepts_its_clip_exactly(tmp_path: Path) -> None:
    """check_clip: the same clip passes; one byte more or its last chunk less, or another clip's header (same
    clip id, another key) in front of its chunks, is refused."""
    import dataclasses

    from doorkeep.device.vault.manifest import Manifest

    summaries, datas = [], []
    for k in range(2):
        w = _writer(tmp_path / f"c{k}.clip", chunk_bytes=1 << 20, fsync_chunks=False)
        for p in make_packets(2 * GOP):
            w.add(p)
        summaries.append(w.close())
        datas.append((tmp_path / f"c{k}.clip").read_bytes())
    s, data = summaries[0], datas[0]
    m = Manifest("c1", "dk-chunks", 0.0, 1.0, ("e",), s.header_hash.hex(), s.chunks, s.packets, s.plain_bytes,
                 s.size, 0, Codec(), True)
    m.check_clip(data)
    for bad in (data + b"\0", data[: len(data) - s.chunks[-1][0]]):
        with pytest.raises(FormatError):
            m.check_clip(bad)
    head = len(data) - sum(n for n, _ in s.chunks)
    other_header = datas[1][:head] + data[head:]
    with pytest.raises(FormatError, match="header"):
        m.check_clip(other_header)
    assert dataclasses.replace(m, header_hash=summaries[1].header_hash.hex()).check_clip(other_header) is None
