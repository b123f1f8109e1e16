"""Test vectors for every vault format (docs/formats.md#test-vectors): fixed seeds give exactly these bytes.

Deterministic formats (keys, manifest, grant, request, bundle, bundle chunk, audit record) are rebuilt from seeds
and compared byte for byte with tests/vault_vectors.json; the randomised ones (a clip: sealed box and secretstream
header are random by design) are checked by decrypting the stored sample with the seeded owner key.
Regenerate (only when a format version changes): ``python tests/test_vault_vectors.py > tests/vault_vectors.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import nacl.signing
import pytest
from doorkeep.device.errors import FormatError, ReleaseError
from doorkeep.device.frames import Packet
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.audit import GENESIS, SIG_DOMAIN, AuditRecord, record_hash
from doorkeep.device.vault.bundle_chunks import (
    BundleAssembler,
    bundle_chunks,
    parse_chunk,
)
from doorkeep.device.vault.bundle_open import open_bundle
from doorkeep.device.vault.bundles import BundleClip, build_bundle
from doorkeep.device.vault.clips import Codec, decrypt_clip, open_clip_key, parse_header
from doorkeep.device.vault.codec import blake2b, signed_message
from doorkeep.device.vault.grants import Grant, GrantClip
from doorkeep.device.vault.keys import MIN, SecretKeys
from doorkeep.device.vault.manifest import Manifest
from doorkeep.device.vault.requests import Request, make_request

HERE = Path(__file__).parent
VECTORS = HERE / "vault_vectors.json"
DOC = HERE.parent / "docs" / "formats.md"


def seeded():
    owner = SecretKeys.from_seeds("owner", bytes(range(32)), bytes(range(32, 64)))
    recipient = SecretKeys.from_seeds("recipient", bytes(range(64, 96)), bytes(range(96, 128)))
    device = DeviceIdentity(nacl.signing.SigningKey(bytes([7]) * 32))
    return owner, recipient, device


def h(data: bytes) -> str:
    return blake2b(data, person=b"dk-test-vector").hex()


def compute(sample_clip: bytes) -> dict[str, str]:
    owner, recipient, device = seeded()
    v: dict[str, str] = {}
    v["owner_public_file"] = owner.public.to_bytes().decode()
    v["recipient_public_file"] = recipient.public.to_bytes().decode()
    v["owner_secret_file_hash"] = h(owner.to_file_bytes(b"correct horse", limits=MIN, salt=bytes(16),
                                                        nonce=bytes(24)))
    v["device_id"] = device.device_id
    header = parse_header(sample_clip)
    m = Manifest(header.clip_id, device.device_id, header.t_start, 1700000001.5, ("ev-1",), header.hash.hex(),
                 tuple((e - s, blake2b(sample_clip[s:e], person=b"dk-clip-chunk").hex()) for s, e in
                       _frames(sample_clip, header.length)), 2, 12, len(sample_clip), 0, header.codec,
                 True, v=1).signed(device)
    v["manifest"] = m.to_bytes().decode()  # version 1: what clips written before v2 carry (still read)
    m2 = dataclasses.replace(m, prev_clip="20231114T221310Z-00000000", part=1, v=2).signed(device)
    v["manifest_v2"] = m2.to_bytes().decode()  # a recording's second clip, linked to the first
    g = Grant("00112233445566778899aabbccddeeff", device.device_id, (GrantClip(header.clip_id, bytes(range(80))),),
              recipient.public, "Det. Example", "incident 42 burglary", "Example PD", "", 1700000000,
              1700604800).signed(owner)
    v["grant"] = g.to_bytes().decode()
    r = make_request(recipient, requester="Example PD", incident="incident 42", purpose="identify a burglar",
                     window=(1699990000.0, 1700000000.0), issued_at=1700000000,
                     request_id="ffeeddccbbaa99887766554433221100")
    v["request"] = r.to_bytes().decode()
    bundle = build_bundle(device, g, owner.public, [BundleClip(m, sample_clip)], created_at=1700000100.0,
                          bundle_id="0123456789abcdef0123456789abcdef")
    v["bundle_hash"] = h(bundle)
    v["bundle_v1_hash"] = h(build_v1_bundle(device, g, owner.public, m, sample_clip))
    v["bundle_chunks_hex"] = " ".join(c.hex() for c in bundle_chunks(b"doorkeep", chunk_size=5))
    body = {"v": 1, "i": 0, "t": 1700000000.0, "kind": "boot", "f": {"version": "1"}, "prev": GENESIS.hex()}
    rh = record_hash(GENESIS, body)
    rec = AuditRecord(0, 1700000000.0, "boot", {"version": "1"}, GENESIS.hex(), rh.hex(),
                      device.sign(signed_message(SIG_DOMAIN, rh)))
    v["audit_record"] = rec.to_line().decode()
    cp_body = {"v": 1, "i": 1, "t": 1700000001.0, "kind": "checkpoint", "prev": rh.hex(),
               "f": {"count": 1, "head": rh.hex(), "prev_first": 0, "prev_t": 1700000000.0}}
    ch = record_hash(rh, cp_body)
    cp = AuditRecord(1, 1700000001.0, "checkpoint", cp_body["f"], rh.hex(), ch.hex(),
                     device.sign(signed_message(SIG_DOMAIN, ch)))
    v["audit_checkpoint"] = cp.to_line().decode()
    return v


def _frames(data: bytes, offset: int) -> list[tuple[int, int]]:
    import io

    from doorkeep.device.vault.clips import read_frames
    f = io.BytesIO(data)
    f.seek(offset)
    out = []
    for frame in read_frames(f):
        out.append((offset, offset + len(frame)))
        offset += len(frame)
    return out


def build_v1_bundle(device: DeviceIdentity, grant: Grant, owner, manifest: Manifest, clip: bytes, *,
                    bundle_id: str = "0123456789abcdef0123456789abcdef", created_at: float = 1700000100.0) -> bytes:
    """Bundle format v1 (frozen; the device writes v2 since 2025): what older devices sent, still read."""
    import struct

    from doorkeep.device.vault.codec import b64e, canonical
    index = {"format": "doorkeep-bundle", "v": 1, "bundle_id": bundle_id, "device_id": device.device_id,
             "device_key": b64e(device.public_bytes), "owner": owner.to_json(), "created_at": created_at,
             "grant": grant.to_json(), "clips": [{"clip_id": manifest.clip_id, "manifest": manifest.to_json(),
                                                 "size": len(clip),
                                                 "hash": blake2b(clip, person=b"dk-bundle-clip").hex()}]}
    raw = canonical(index)
    head = b"DKBNDL\x00\x01" + struct.pack(">I", len(raw)) + raw
    return head + device.sign(signed_message("doorkeep-bundle-v1", head)) + clip


def make_sample_clip(tmp: Path) -> bytes:
    """The stored sample clip (random sealed box and stream header: generated once)."""
    from doorkeep.device.vault.clips import ClipWriter

    owner, _, device = seeded()
    w = ClipWriter(tmp / "sample.clip", owner=owner.public, clip_id="20231114T221320Z-00000001",
                   device_id=device.device_id, t_start=1700000000.0, event_id="ev-1",
                   codec=Codec("h264", (1, 1_000_000), 64, 48))
    w.add(Packet(b"\x00\x00\x00\x01\x65key", 0, 1.0, 1700000000.0, True, True))
    w.add(Packet(b"\x00\x00\x00\x01\x41", 100000, 1.1, 1700000000.1, False, False))
    w.close()
    return (tmp / "sample.clip").read_bytes()


def test_vectors_match() -> None:
    stored = json.loads(VECTORS.read_text())
    clip = bytes.fromhex(stored["sample_clip_hex"])
    got = compute(clip)
    for k, val in got.items():
        assert stored[k] == val, k


def test_sample_clip_decrypts_with_the_owner_key() -> None:
    stored = json.loads(VECTORS.read_text())
    clip = bytes.fromhex(stored["sample_clip_hex"])
    owner, _, device = seeded()
    header, packets = decrypt_clip(clip, open_clip_key(parse_header(clip), owner))
    assert [p.data for p in packets] == [b"\x00\x00\x00\x01\x65key", b"\x00\x00\x00\x01\x41"]
    assert packets[1].pts == 100000 and header.codec.width == 64
    m = Manifest.from_bytes(stored["manifest"].encode()).verify(device.verify_key)
    m.check_clip(clip)
    m2 = Manifest.from_bytes(stored["manifest_v2"].encode()).verify(device.verify_key)
    m2.check_clip(clip)
    assert (m.v, m.prev_clip, m.part) == (1, None, 0)
    assert (m2.v, m2.prev_clip, m2.part) == (2, "20231114T221310Z-00000000", 1)


def test_manifest_versions_refuse_each_others_keys() -> None:
    """A v1 manifest cannot smuggle a link, a v2 one must carry its part, and an unknown version is refused."""
    stored = json.loads(VECTORS.read_text())
    v1, v2 = json.loads(stored["manifest"]), json.loads(stored["manifest_v2"])
    for bad in ({**v1, "prev_clip": "x"}, {k: x for k, x in v2.items() if k != "part"}, {**v2, "v": 3},
                {**v2, "part": -1}, {**v2, "prev_clip": "../etc"}, {**v2, "v": True}):
        with pytest.raises(FormatError):
            Manifest.from_json(bad)
    _, _, device = seeded()
    relabelled = Manifest.from_json({**v2, "part": 2})  # parses, but the signature covers the link
    with pytest.raises(FormatError):
        relabelled.verify(device.verify_key)


def test_vector_bundle_verifies_up_to_the_sealed_key() -> None:
    """The vector grant carries a dummy sealed key, so the recipient gets exactly to decryption and stops."""
    stored = json.loads(VECTORS.read_text())
    clip = bytes.fromhex(stored["sample_clip_hex"])
    owner, recipient, device = seeded()
    g = Grant.from_bytes(stored["grant"].encode()).verify(owner.public)
    m = Manifest.from_bytes(stored["manifest"].encode())
    bundle = build_bundle(device, g, owner.public, [BundleClip(m, clip)], created_at=1700000100.0,
                          bundle_id="0123456789abcdef0123456789abcdef")
    for data in (bundle, build_v1_bundle(device, g, owner.public, m, clip)):
        with pytest.raises(ReleaseError) as ei:
            open_bundle(data, recipient)
        assert ei.value.reason == "tampered" and "sealed key" in str(ei.value)
    Request.from_bytes(stored["request"].encode())


def test_v1_chunks_still_reassemble(tmp_path: Path) -> None:
    """Chunks from devices that sent bundle chunk format v1 (docs/formats.md) are still accepted."""
    stored = json.loads(VECTORS.read_text())
    chunks = [bytes.fromhex(c) for c in stored["bundle_chunks_v1_hex"].split()]
    assert [parse_chunk(c).payload for c in chunks] == [b"doork", b"eep"]
    asm = BundleAssembler(tmp_path / "v1.bundle")
    assert asm.add(chunks[1]) is None
    out = asm.add(chunks[0])
    assert out is not None and out.read_bytes() == b"doorkeep"


def test_v2_chunks_reassemble(tmp_path: Path) -> None:
    stored = json.loads(VECTORS.read_text())
    chunks = [bytes.fromhex(c) for c in stored["bundle_chunks_hex"].split()]
    asm = BundleAssembler(tmp_path / "v2.bundle")
    assert asm.add(chunks[1]) is None
    out = asm.add(chunks[0])
    assert out is not None and out.read_bytes() == b"doorkeep"


def test_v1_bundle_still_read(tmp_path: Path) -> None:
    """A real v1 bundle (frozen builder above) verifies and decrypts with today's reader."""
    from doorkeep.device.vault.grants import issue_grant
    from vault_support import make_device, make_packets, sealed_keys, write_clip
    dev = make_device(tmp_path)
    write_clip(dev, "c1", make_packets(12))
    g = issue_grant(dev.owner, device_id=dev.identity.device_id, sealed_keys=sealed_keys(dev, "c1"),
                    recipient=dev.recipient.public, recipient_name="R", purpose="p", requester="q")
    data = build_v1_bundle(dev.identity, g, dev.owner.public, dev.vault.store.manifest("c1"),
                           dev.vault.store.clip_path("c1").read_bytes())
    opened = open_bundle(data, dev.recipient, owner=dev.owner.public)
    assert [len(c.packets) for c in opened.clips] == [12]
    for i in (len(data) - 5, len(data) // 2):
        bad = bytearray(data)
        bad[i] ^= 1
        with pytest.raises(ReleaseError):
            open_bundle(bytes(bad), dev.recipient)


def test_vector_checkpoint_starts_a_verifiable_segment() -> None:
    """A segment that starts with the vector checkpoint verifies on its own, anchored by it (history "dropped"
    only once an audit_dropped record says so: alone it is missing history)."""
    from doorkeep.device.vault.audit import verify_bytes
    from doorkeep.device.vault.audit_format import checkpoint_problem, parse_record

    stored = json.loads(VECTORS.read_text())
    _, _, device = seeded()
    both = (stored["audit_record"] + stored["audit_checkpoint"]).encode()
    assert checkpoint_problem(parse_record(stored["audit_checkpoint"].strip().encode())) is None
    assert verify_bytes(both, device.verify_key).ok
    alone = verify_bytes(stored["audit_checkpoint"].encode(), device.verify_key)
    assert (alone.ok, alone.reason, alone.history_start) == (False, "missing_history", 1)


def test_docs_carry_the_vectors() -> None:
    stored = json.loads(VECTORS.read_text())
    doc = DOC.read_text()
    for k in ("owner_secret_file_hash", "device_id", "bundle_hash", "bundle_v1_hash", "bundle_chunks_hex",
              "bundle_chunks_v1_hex"):
        assert stored[k] in doc, k
    for k in ("owner_public_file", "manifest", "manifest_v2", "grant", "request", "audit_record",
              "audit_checkpoint"):
        assert stored[k].strip() in doc, k


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        clip = make_sample_clip(Path(d))
    out = compute(clip)
    out["sample_clip_hex"] = clip.hex()
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
