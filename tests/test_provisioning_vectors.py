"""The test vectors of docs/formats.md ("Provisioning") are what the code produces."""

from __future__ import annotations

from pathlib import Path

import nacl.signing
import pytest
from doorkeep.device.identity import DeviceIdentity
from doorkeep.device.vault.keys import SecretKeys
from doorkeep.provisioning.boot_pairing import file_code, receipt_proof
from doorkeep.provisioning.documents import OwnerDocument
from doorkeep.provisioning.pairing import commitment, pairing_code, transcript_hash
from doorkeep.provisioning.signed_config import sign_config

FORMATS = Path(__file__).resolve().parents[1] / "docs" / "formats.md"
OWNER = SecretKeys.from_seeds("owner", bytes([1]) * 32, bytes([2]) * 32)
DEVICE = DeviceIdentity(nacl.signing.SigningKey(bytes([3]) * 32))
CONFIG_DOC = (
    '{"body":{"config":{"motion":{"min_changed":0.01}}},"counter":1,"device":"dk-vsoozrpitjqyu665",'
    '"format":"doorkeep/owner-doc","issued_at":1764374400,"kind":"config",'
    '"sig":"thwjpWdOBsvlfu1SXbaCr0C4VYTNCZAnxrMtON5g/jeZGxDH36sBQJXT3V25Bdtm+i7NgcV6co1RmJciCVWlCA==",'
    '"signer":"iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=","v":1}'
)
SESSION, N_OWNER, N_DEVICE = bytes([4]) * 16, bytes([5]) * 32, bytes([6]) * 32
VECTORS = {
    "owner_sign": "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
    "device_id": "dk-vsoozrpitjqyu665",
    "fingerprint": "0151-2476",
    "commit": "3a40c673b76142bd500504895a75d23a687a4c11d0e7a15a24641e81f093b7b6",
    "transcript": "7b9fe20d3b3526790d895eb17d2a3110983d54649d40c645a19a0116669e808c",
    "code": "367592",
    "file_code": "071506",
    "proof": "21223d19caed4ce483d5b3f3415d639d55a3bc77e7f99ab6a5e67375063af81e",
}


def test_config_document_vector():
    doc = sign_config({"motion": {"min_changed": 0.01}}, device_id=DEVICE.device_id, counter=1, keys=OWNER,
                      issued_at=1764374400)
    assert doc.to_bytes() == CONFIG_DOC.encode() + b"\n"
    assert OwnerDocument.from_bytes(CONFIG_DOC.encode()) == doc
    assert OWNER.public.sign.hex() == VECTORS["owner_sign"]
    assert (DEVICE.device_id, DEVICE.fingerprint) == (VECTORS["device_id"], VECTORS["fingerprint"])


def test_pairing_vectors():
    c = commitment(SESSION, OWNER.public, N_OWNER)
    t = transcript_hash(SESSION, OWNER.public, DEVICE.public_bytes, c, N_OWNER, N_DEVICE)
    assert (c.hex(), t.hex(), pairing_code(t)) == (VECTORS["commit"], VECTORS["transcript"], VECTORS["code"])
    assert file_code(OWNER.public, N_OWNER) == VECTORS["file_code"]
    assert receipt_proof(N_OWNER, DEVICE.public_bytes, OWNER.public.sign).hex() == VECTORS["proof"]


def test_vectors_are_the_ones_documented():
    if not FORMATS.exists():
        pytest.fail("docs/formats.md is missing")
    text = FORMATS.read_text()
    assert "## Provisioning" in text
    assert CONFIG_DOC in text
    for name, value in VECTORS.items():
        assert value in text, name
