"""End to end: packets -> pre-roll ring -> encrypted clip -> owner grant -> bundle -> recipient MP4."""

from __future__ import annotations

import gc
import hashlib
import mmap
import time
from pathlib import Path
from typing import ClassVar

import nacl.exceptions
import nacl.public
import nacl.signing
import pytest
from doorkeep.device.events import Event
from doorkeep.device.preroll import PacketRing
from doorkeep.device.vault import clips
from doorkeep.device.vault.audit import verify
from doorkeep.device.vault.bundle_open import open_bundle
from doorkeep.device.vault.clips import decrypt_clip, open_clip_key, parse_header
from doorkeep.device.vault.grants import issue_grant
from doorkeep.device.vault.keypage import KEY_BYTES, STATE_BYTES, KeyPage
from doorkeep.tools.vault_mp4 import decode_mp4, write_mp4
from nacl._sodium import ffi
from vault_support import decode_packets, make_device, make_packets, release


def record_one(tmp: Path, *, n: int = 80, start_at: int = 20, end_at: int = 45, **kw):
    dev = make_device(tmp, **kw)
    packets = make_packets(n)
    ring = PacketRing(seconds=1.0)
    dev.vault.start(ring)
    for i, p in enumerate(packets):
        if i == start_at:
            dev.vault.on_event(Event("ev1", "person", "start", p.t_wall, p.t_wall))
        if i == end_at:
            dev.vault.on_event(Event("ev1", "person", "end", p.t_wall, packets[start_at].t_wall, p.t_wall,
                                     mono_end=p.t_capture))
        ring.on_packet(p)
    deadline = time.monotonic() + 20
    while dev.vault.recorder.recording and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.01)
    dev.vault.stop()
    return dev, packets


def test_roundtrip_preroll_grant_bundle_mp4(tmp_path: Path) -> None:
    dev, packets = record_one(tmp_path)
    (m,) = dev.vault.store.manifests()
    assert m.complete and m.event_ids == ("ev1",)
    data = dev.vault.store.clip_path(m.clip_id).read_bytes()
    m.verify(dev.identity.verify_key).check_clip(data)
    _, recorded = decrypt_clip(data, open_clip_key(parse_header(data), dev.owner))
    # recorded = a contiguous run of the source starting at a keyframe before the event (pre-roll) ...
    first = next(i for i, p in enumerate(packets) if p.data == recorded[0].data)
    assert recorded[0].keyframe and recorded[0].has_config and first < 20
    assert [p.data for p in recorded] == [p.data for p in packets[first:first + len(recorded)]]
    # ... through the post-roll (1 s = 10 frames after the end at packet 45)
    assert first + len(recorded) >= 55

    grant = issue_grant(dev.owner, device_id=dev.identity.device_id,
                        sealed_keys={m.clip_id: parse_header(data).sealed_key},
                        recipient=dev.recipient.public, recipient_name="Officer K", purpose="burglary 12/3",
                        requester="PD")
    bundle = release(dev, grant.to_bytes())
    opened = open_bundle(bundle, dev.recipient, owner=dev.owner.public)
    (clip,) = opened.clips
    mp4 = tmp_path / "out.mp4"
    write_mp4(clip.packets, mp4, codec=clip.header.codec)
    got = decode_mp4(mp4)
    want = decode_packets(recorded)
    assert len(got) == len(want) == len(recorded)
    assert all((a == b).all() for a, b in zip(got, want, strict=True))
    kinds = [line for line in (dev.state / "audit.log").read_text().splitlines()]
    assert any('"kind":"clip_written"' in k for k in kinds) and any('"kind":"export"' in k for k in kinds)
    assert verify(dev.state / "audit.log", dev.identity.verify_key).ok


class _WatchedPage(KeyPage):
    """The clip writer's locked key page, remembered so the test can read the page itself after the clip closed."""

    pages: ClassVar[list[_WatchedPage]] = []

    def __init__(self) -> None:
        super().__init__()
        self.key_hash = b""
        self.state_was_set = False
        _WatchedPage.pages.append(self)

    def wipe(self) -> None:
        if not self.key_hash:  # first wipe: note (a hash of) what the page held, not a copy of the key
            self.key_hash = hashlib.sha256(ffi.buffer(self.key, KEY_BYTES)).digest()
            self.state_was_set = ffi.buffer(self.state, STATE_BYTES)[:] != bytes(STATE_BYTES)
        super().wipe()


def test_after_close_device_holds_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _WatchedPage.pages = []
    monkeypatch.setattr(clips, "KeyPage", _WatchedPage)
    dev, _ = record_one(tmp_path)
    (m,) = dev.vault.store.manifests()
    data = dev.vault.store.clip_path(m.clip_id).read_bytes()
    header = parse_header(data)
    key = open_clip_key(header, dev.owner)  # the owner key opens it
    assert decrypt_clip(data, key)[1]
    # The writer's key page held this clip's key and a live secretstream state; after close the whole page (key
    # and state) is zero and no longer locked.
    (page,) = _WatchedPage.pages
    assert page.key_hash == hashlib.sha256(key).digest() and page.state_was_set
    assert ffi.buffer(page.page, mmap.PAGESIZE)[:] == bytes(mmap.PAGESIZE), "the closed clip's key page was not wiped"
    assert not page.locked
    owner_secret = bytes(dev.owner._box_key)
    del dev.owner
    planted = [bytearray(b"x" + key)]
    assert _holders(key) >= 1  # the scan does find a live copy ...
    del planted
    gc.collect()
    # ... and no other live object (or anything it references) holds the key or the owner secret
    assert _holders(key) == 0 and _holders(owner_secret) == 0
    # no file in the state dir holds the key, and no 32-byte file there opens the sealed header
    for f in dev.state.rglob("*"):
        if f.is_file():
            content = f.read_bytes()
            assert key not in content
            if len(content) == 32:
                for sk in (nacl.public.PrivateKey(content),
                           nacl.signing.SigningKey(content).to_curve25519_private_key()):
                    with pytest.raises(nacl.exceptions.CryptoError):
                        nacl.public.SealedBox(sk).decrypt(header.sealed_key)


def _holders(needle: bytes) -> int:
    n = 0
    for obj in gc.get_objects():
        for o in (obj, *gc.get_referents(obj)):
            if isinstance(o, bytes | bytearray) and len(o) >= len(needle) and o is not needle and needle in o:
                n += 1
    return n
