"""Pairing through a file on the SD card's boot partition (the hobbyist path, no network needed).

The owner's tool writes ``/boot/firmware/doorkeep-pair.json``: the owner's public keys and a fresh secret nonce,
signed by the owner key. At boot the service unit moves it into the state directory (``incoming-pair.json``);
the device verifies it, pins the owner, logs the 6-digit code (the owner's tool showed the same code when it wrote
the file: the owner compares them to be sure the device pinned *their* key), writes a device-signed receipt and
deletes the file.

The receipt (``<state_dir>/pair-receipt.json``, also logged and published on ``pair/device`` when MQTT is up)
carries the device key and ``proof = BLAKE2b(key=nonce, device key || owner key)``: only someone who read the
pairing file can make it, so the owner's tool pins the device key from it safely.

Who holds the SD card can pair a *new* device, like who flashes it; a paired device refuses a pairing file unless
it carries the current owner's ``authorize-repair`` signature (or the device was factory reset).
Formats: docs/formats.md ("Provisioning: boot-partition pairing file and receipt").
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.signing
import nacl.utils
from doorkeep.device.errors import FormatError
from doorkeep.device.identity import device_id_for, fingerprint_for
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import PublicKeys, SecretKeys

from .device_state import DeviceProvisioning, owner_key_id
from .documents import KIND_REPAIR, OwnerDocument
from .errors import (
    AlreadyPaired,
    BadSignature,
    MalformedDocument,
    PairingMismatch,
    ProvisionRefused,
    WrongDevice,
)
from .files import shred, write_atomic
from .pairing import NONCE_BYTES, pairing_code

log = logging.getLogger(__name__)

BOOT_FILE = Path("/boot/firmware/doorkeep-pair.json")
INCOMING_FILE = "incoming-pair.json"
RECEIPT_FILE = "pair-receipt.json"
FILE_FORMAT = "doorkeep/pair-file"
RECEIPT_FORMAT = "doorkeep/pair-receipt"
FILE_DOMAIN = "doorkeep-pair-file-v1"
RECEIPT_DOMAIN = "doorkeep-pair-receipt-v1"


def file_code(owner: PublicKeys, nonce: bytes) -> str:
    """The code both the owner's tool (when writing) and the device (when consuming) show."""
    return pairing_code(codec.blake2b(owner.sign + owner.box + nonce, person=b"dk-pair-file"))


def receipt_proof(nonce: bytes, device_key: bytes, owner_sign: bytes) -> bytes:
    return nacl.hash.blake2b(device_key + owner_sign, key=nonce, person=b"dk-pair-proof",
                             encoder=nacl.encoding.RawEncoder)


def _sign(body: dict[str, Any], domain: str, sign: Any) -> bytes:
    sig = sign(codec.signed_message(domain, codec.canonical(body)))
    return codec.canonical({**body, "sig": codec.b64e(sig)}) + b"\n"


def _verify(f: codec.Fields, domain: str, key: bytes, what: str) -> None:
    body = {k: v for k, v in f.obj.items() if k != "sig"}
    try:
        nacl.signing.VerifyKey(key).verify(codec.signed_message(domain, codec.canonical(body)), f.b64("sig", length=64))
    except nacl.exceptions.BadSignatureError:
        raise BadSignature(f"{what}: signature does not verify") from None


# ------------------------------------------------------------------------------------------------- owner side
@dataclass(frozen=True)
class PairFile:
    data: bytes
    nonce: bytes
    code: str


def make_pair_file(keys: SecretKeys, *, device_id: str | None = None,
                   authorization: OwnerDocument | None = None) -> PairFile:
    """Owner side: a signed pairing file (keep ``nonce`` to check the device's receipt later)."""
    nonce = nacl.utils.random(NONCE_BYTES)
    body: dict[str, Any] = {"format": FILE_FORMAT, "v": 1, "owner": keys.public.to_json(), "nonce": codec.b64e(nonce),
                            "created_at": int(time.time())}
    if device_id is not None:
        body["device"] = device_id
    if authorization is not None:
        body["auth"] = codec.parse_json(authorization.to_bytes(), what="authorization")
    return PairFile(_sign(body, FILE_DOMAIN, keys.sign), nonce, file_code(keys.public, nonce))


@dataclass(frozen=True)
class ReceiptInfo:
    device_id: str
    device_key: bytes
    fingerprint: str
    counter: int
    nonce: bytes


def verify_receipt(data: bytes, *, owner: PublicKeys, nonces: list[bytes]) -> ReceiptInfo:
    """Owner side: check a device receipt against the owner key and the nonces of files this owner wrote."""
    try:
        f = codec.Fields(codec.parse_json(data.strip(), what="pairing receipt"), what="pairing receipt")
        f.header(RECEIPT_FORMAT, 1)
        f.only("format", "v", "device_id", "device", "owner", "proof", "counter", "code", "sig")
        key = f.b64("device", length=32)
        dev_id = f.text("device_id", max_len=64)
        _verify(f, RECEIPT_DOMAIN, key, "pairing receipt")
        if dev_id != device_id_for(key):
            raise PairingMismatch(f"receipt device id {dev_id} does not belong to its key")
        if f.b64("owner", length=32) != owner.sign:
            raise PairingMismatch("the receipt names another owner key")
        proof = f.b64("proof", length=32)
        for n in nonces:
            if receipt_proof(n, key, owner.sign) == proof:
                return ReceiptInfo(dev_id, key, fingerprint_for(key), f.integer("counter"), n)
        raise PairingMismatch("the receipt answers no pairing file this owner wrote (proof mismatch)")
    except FormatError as exc:
        raise MalformedDocument(str(exc)) from None


# ------------------------------------------------------------------------------------------------- device side
@dataclass(frozen=True)
class BootPaired:
    owner: PublicKeys
    code: str
    receipt: bytes
    repaired: bool


def consume_pair_file(path: str | os.PathLike[str], prov: DeviceProvisioning) -> BootPaired:
    """Device side: verify and apply a pairing file, log the code, write the receipt, delete the file.

    The file is deleted (shredded) whether it is accepted or refused, so a refused file is not retried forever.

    Raises:
        ProvisionRefused: malformed, bad-signature, wrong-device or already-paired (audited as ``pair_refused``).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    finally:
        shred(p)
    try:
        result = _apply(data, prov)
    except ProvisionRefused as exc:
        prov.refused("pair_refused", exc, channel="boot-file")
        raise
    log.warning("PAIRING CODE %s — paired to owner %s from %s; compare with the code the owner's tool showed",
                result.code, owner_key_id(result.owner), p.name)
    log.warning("pairing receipt for the owner's tool: %s", result.receipt.decode().strip())
    return result


def _apply(data: bytes, prov: DeviceProvisioning) -> BootPaired:
    try:
        f = codec.Fields(codec.parse_json(data.strip(), what="pairing file"), what="pairing file")
        f.header(FILE_FORMAT, 1)
        f.only("format", "v", "owner", "nonce", "created_at", "device", "auth", "sig")
        owner = PublicKeys.from_json(f.obj.get("owner"), what="pairing file owner")
        if owner.role != "owner":
            raise MalformedDocument("pairing file: owner must be an owner key")
        nonce = f.b64("nonce", length=NONCE_BYTES)
        _verify(f, FILE_DOMAIN, owner.sign, "pairing file")
        device = f.obj.get("device")
    except FormatError as exc:
        raise MalformedDocument(str(exc)) from None
    ident = prov.identity
    if device is not None and device != ident.device_id:
        raise WrongDevice(f"pairing file is for {device}, this device is {ident.device_id}")
    current = prov.owner()
    auth_counter = 0
    if current is not None and current != owner:
        auth = f.obj.get("auth")
        if auth is None:
            raise AlreadyPaired(f"already paired to owner {owner_key_id(current)}; a pairing file for another "
                                "owner needs the current owner's authorisation or a factory reset")
        doc = OwnerDocument.from_bytes(codec.canonical(auth))
        doc.verify(kind=KIND_REPAIR, pinned_owner=current.sign, device_id=ident.device_id,
                   last_counter=prov.last_counter())
        if doc.body.get("new_owner") != owner.to_json():
            raise BadSignature("the re-pair authorisation names another new owner key")
        auth_counter = doc.counter
    prov.pin(owner, replace=current is not None)
    if auth_counter:
        prov.commit_counter(auth_counter)
    code = file_code(owner, nonce)
    receipt = _sign({"format": RECEIPT_FORMAT, "v": 1, "device_id": ident.device_id,
                     "device": codec.b64e(ident.public_bytes), "owner": codec.b64e(owner.sign),
                     "proof": codec.b64e(receipt_proof(nonce, ident.public_bytes, owner.sign)),
                     "counter": prov.last_counter(), "code": code}, RECEIPT_DOMAIN, ident.sign)
    write_atomic(prov.state_dir / RECEIPT_FILE, receipt, mode=0o600)
    prov.audit.append("paired", owner=owner_key_id(owner), code=code, channel="boot-file",
                      previous_owner=owner_key_id(current) if current else None)
    return BootPaired(owner, code, receipt, current is not None)


def consume_pending(prov: DeviceProvisioning, *, boot_file: Path = BOOT_FILE) -> BootPaired | None:
    """At service start: consume ``incoming-pair.json`` (moved there by the unit) or ``boot_file`` if readable."""
    for candidate in (prov.state_dir / INCOMING_FILE, boot_file):
        if candidate.is_file():
            return consume_pair_file(candidate, prov)
    return None
