"""Test vectors for every vault format (docs/formats.md#test-vectors): fixed seeds give exactly these bytes.

Deterministic formats (keys, manifest, grant, request, bundle, bundle chunk, audit record) are rebuilt from seeds
and compared byte for byte with tests/vault_vectors.json; the randomised ones (a clip: sealed box and secretstream
header are random by design) are checked by decrypting the stored sample with the seeded owner key.
Regenerate (only when a format version changes): ``python tests/test_vault_vectors.py > tests/vault_vectors.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nacl.signing
from doorkeep.device.frames import Packet
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.audit import GENESIS, SIG_DOMAIN, AuditRecord, record_hash
from doorkeep.device.vault.bundles import (
    BundleClip,
    build_bundle,
    bundle_chunks,
    open_bundle,
)
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
                 True).signed(device)
    v["manifest"] = m.to_bytes().decode()
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
    v["bundle_chunks_hex"] = " ".join(c.hex() for c in bundle_chunks(b"doorkeep", chunk_size=5))
    body = {"v": 1, "i": 0, "t": 1700000000.0, "kind": "boot", "f": {"version": "1"}, "prev": GENESIS.hex()}
    rh = record_hash(GENESIS, body)
    rec = AuditRecord(0, 1700000000.0, "boot", {"version": "1"}, GENESIS.hex(), rh.hex(),
                      device.sign(signed_message(SIG_DOMAIN, rh)))
    v["audit_record"] = rec.to_line().decode()
    return v


def _frames(data: bytes, offset: int):
    from doorkeep.device.vault.clips import iter_frames
    return list(iter_frames(data, offset))


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


def test_vector_bundle_verifies_up_to_the_sealed_key() -> None:
    """The vector grant carries a dummy sealed key, so the recipient gets exactly to decryption and stops."""
    import pytest
    from doorkeep.device.errors import ReleaseError

    stored = json.loads(VECTORS.read_text())
    clip = bytes.fromhex(stored["sample_clip_hex"])
    owner, recipient, device = seeded()
    g = Grant.from_bytes(stored["grant"].encode()).verify(owner.public)
    m = Manifest.from_bytes(stored["manifest"].encode())
    bundle = build_bundle(device, g, owner.public, [BundleClip(m, clip)], created_at=1700000100.0,
                          bundle_id="0123456789abcdef0123456789abcdef")
    with pytest.raises(ReleaseError) as ei:
        open_bundle(bundle, recipient)
    assert ei.value.reason == "tampered" and "sealed key" in str(ei.value)
    Request.from_bytes(stored["request"].encode())


def test_docs_carry_the_vectors() -> None:
    stored = json.loads(VECTORS.read_text())
    doc = DOC.read_text()
    for k in ("owner_secret_file_hash", "device_id", "bundle_hash", "bundle_chunks_hex"):
        assert stored[k] in doc, k
    for k in ("owner_public_file", "manifest", "grant", "request", "audit_record"):
        assert stored[k].strip() in doc, k


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        clip = make_sample_clip(Path(d))
    out = compute(clip)
    out["sample_clip_hex"] = clip.hex()
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
