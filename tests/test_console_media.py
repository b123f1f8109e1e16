"""The console's clip media and history, without a browser: a real sealed clip (PyAV libx264, the vault's writer)
opens with the owner key into an MP4 in memory whose frames equal the recorded ones; no plaintext file is
written; the MP4 cache is zeroed on lock; byte ranges are served as players ask; audit records read as sentences."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from doorkeep.device.errors import FormatError
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.tools.console.history import describe
from doorkeep.tools.console.media import ClipMedia, clip_to_mp4
from vault_support import decode_packets, make_device, make_packets, write_clip


def mp4_frames(data: bytes) -> list[np.ndarray]:
    with av.open(io.BytesIO(data)) as c:
        return [f.to_ndarray(format="yuv420p") for f in c.decode(video=0)]


@pytest.fixture
def device(tmp_path: Path):
    dev = make_device(tmp_path)
    yield dev
    dev.vault.close()


def test_a_clip_opens_with_the_owner_key_into_an_mp4_in_memory_with_the_recorded_frames(device) -> None:
    packets = make_packets(30)
    write_clip(device, "c1", packets)
    data = device.vault.store.clip_path("c1").read_bytes()
    mp4 = clip_to_mp4(data, device.vault.store.manifest("c1"), device.owner)
    got, want = mp4_frames(mp4), decode_packets(packets)
    assert len(got) == len(want) == 30
    assert all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    with pytest.raises(FormatError):
        clip_to_mp4(data, device.vault.store.manifest("c1"), SecretKeys.generate("owner"))


def test_fetched_clips_stay_ciphertext_on_disk_and_the_mp4_cache_is_zeroed_on_lock(device) -> None:
    write_clip(device, "c2", make_packets(20))
    store = device.vault.store

    def fetch(clip_id: str, out: Path, *, progress=None):
        data = store.clip_path(clip_id).read_bytes()
        out.write_bytes(data)
        if progress:
            progress(len(data), len(data))
        return store.manifest(clip_id)

    media = ClipMedia(fetch=lambda: fetch, keys=lambda: device.owner)
    try:
        job = media.prepare("c2")
        assert job.wait(30) and job.state == "ready", job
        assert (media.dir / "c2.clip").read_bytes() == store.clip_path("c2").read_bytes()  # ciphertext only
        assert [p.name for p in media.dir.iterdir()] == ["c2.clip"]
        mp4 = media.mp4("c2")
        assert mp4 is not None and len(mp4_frames(mp4)) == 20
        held = next(iter(media._mp4.values()))
        media.wipe("locked by the owner")
        assert media.mp4("c2") is None and not any(held)
    finally:
        media.close()
    assert not media.dir.exists()


def test_a_fetch_that_fails_is_reported_and_retried(device) -> None:
    calls = threading.Semaphore(0)

    def broken(clip_id: str, out: Path, *, progress=None):
        calls.release()
        raise FormatError("bad_clip: the bytes do not match the manifest")

    media = ClipMedia(fetch=lambda: broken, keys=lambda: device.owner)
    try:
        job = media.prepare("c3")
        assert job.wait(10) and job.state == "failed" and "bad_clip" in job.error
        assert media.prepare("c3").wait(10)
        assert calls.acquire(timeout=1) and calls.acquire(timeout=1)
    finally:
        media.close()


def test_byte_ranges_are_served_as_players_ask() -> None:
    from doorkeep.tools.console.pages_clip import ranged
    from starlette.requests import Request

    def req(range_header: str | None) -> Request:
        headers = [(b"range", range_header.encode())] if range_header else []
        return Request({"type": "http", "method": "GET", "path": "/", "headers": headers, "query_string": b""})

    data = bytes(range(100))
    whole = ranged(req(None), data, media_type="video/mp4")
    assert whole.status_code == 200 and whole.body == data
    part = ranged(req("bytes=10-19"), data, media_type="video/mp4")
    assert part.status_code == 206 and part.body == data[10:20]
    assert part.headers["content-range"] == "bytes 10-19/100"
    assert ranged(req("bytes=90-"), data, media_type="video/mp4").body == data[90:]
    assert ranged(req("bytes=-5"), data, media_type="video/mp4").body == data[95:]
    assert ranged(req("bytes=200-"), data, media_type="video/mp4").status_code == 416


def test_audit_records_read_as_sentences() -> None:
    line = describe(7, 1.7e9, "grant_accepted", {"clips": ["a", "b"], "recipient_name": "Det. Example",
                                                 "requester": "Example PD", "purpose": "incident 42",
                                                 "expires_at": 1.7e9 + 86400})
    assert line.important and line.tone == "good"
    assert "2 clips to Det. Example (Example PD)" in line.text and "incident 42" in line.text
    assert "retention" in describe(8, 1.7e9, "clip_shredded", {"clip_id": "c", "reason": "max_age"}).text
    odd = describe(9, 1.7e9, "grant_accepted", {"clips": 5})  # a record with unexpected fields still reads
    assert odd.text
    assert describe(10, 1.7e9, "something_new", {}).text == "something new."


# Every audit kind the device and its provisioning write (grep `audit.append(` / `_audit(` in device/ and
# provisioning/): each reads as its own sentence, not the generic fallback.
DEVICE_AUDIT_KINDS = [
    "boot", "vault_start", "vault_idle", "event", "clip_written", "clip_recovered", "clip_torn", "clip_discarded",
    "clip_shredded", "vault_shred_all", "request_received", "request_refused", "request_declined",
    "grant_accepted", "grant_refused", "export", "export_failed", "config_applied", "config_refused",
    "owner_rotated", "owner_rotation_refused", "paired", "pair_refused", "pair_window_open", "factory_reset",
    "owner_fetch", "owner_commands", "owner_cmd_refused", "audit_repair", "checkpoint", "audit_dropped",
    "vault_fault", "vault_fault_cleared", "state_permissions_fixed", "clip_shred_failed", "clock_jump",
    "outbox_reset"]


@pytest.mark.parametrize("kind", DEVICE_AUDIT_KINDS)
def test_every_audit_kind_the_device_writes_has_its_own_words(kind: str) -> None:
    assert describe(1, 1.7e9, kind, {}).text != kind.replace("_", " ") + "."

