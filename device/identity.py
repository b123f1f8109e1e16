"""The device's Ed25519 identity: the key that signs events, manifests, bundles and audit records.

The device id is derived from the public key, so it cannot be claimed by another key:
``dk-`` + the first 10 bytes of BLAKE2b(verify key) in lowercase base32 (16 characters, safe for MQTT topics and
Home Assistant ids). The fingerprint shown to humans is 8 decimal digits in two groups, derived the same way.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import nacl.encoding
import nacl.hash
import nacl.signing

from .errors import InvalidArgument, ProvisionError, WrongType
from .fileio import write_atomic

KEY_FILE = "device.key"


def device_id_for(verify_key: bytes) -> str:
    """The device id belonging to an Ed25519 public key (32 bytes)."""
    if len(verify_key) != 32:
        raise InvalidArgument(f"an Ed25519 public key is 32 bytes, got {len(verify_key)}")
    digest = nacl.hash.blake2b(verify_key, digest_size=10, person=b"doorkeep-devid", encoder=nacl.encoding.RawEncoder)
    return "dk-" + base64.b32encode(digest).decode().lower()


def fingerprint_for(verify_key: bytes) -> str:
    """A short code a human compares: ``1234-5678``, from the public key."""
    digest = nacl.hash.blake2b(verify_key, digest_size=8, person=b"doorkeep-fpr", encoder=nacl.encoding.RawEncoder)
    n = int.from_bytes(digest, "big") % 10**8
    return f"{n // 10**4:04d}-{n % 10**4:04d}"


class DeviceIdentity:
    """The device's signing key and the names derived from it.

    The key object stays private (PyNaCl's ``str(SigningKey)`` prints the seed): the identity signs through
    :meth:`sign` and shows only its public names; ``repr``/``str`` never include the seed. Two identities are equal
    when their public keys are.
    """

    __slots__ = ("_signing_key",)

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        if not isinstance(signing_key, nacl.signing.SigningKey):
            raise WrongType("DeviceIdentity needs a nacl SigningKey")
        self._signing_key = signing_key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeviceIdentity) and other.public_bytes == self.public_bytes

    def __hash__(self) -> int:
        return hash(self.public_bytes)

    @property
    def verify_key(self) -> nacl.signing.VerifyKey:
        return self._signing_key.verify_key

    @property
    def public_bytes(self) -> bytes:
        return bytes(self._signing_key.verify_key)

    @property
    def device_id(self) -> str:
        return device_id_for(self.public_bytes)

    @property
    def fingerprint(self) -> str:
        return fingerprint_for(self.public_bytes)

    def sign(self, message: bytes) -> bytes:
        """Detached 64-byte Ed25519 signature over ``message``."""
        return self._signing_key.sign(message).signature

    def __repr__(self) -> str:  # never print the seed
        return f"DeviceIdentity({self.device_id}, fingerprint {self.fingerprint})"

    __str__ = __repr__

    @classmethod
    def generate(cls) -> DeviceIdentity:
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def load_or_create(cls, state_dir: str | os.PathLike[str]) -> DeviceIdentity:
        """Load ``state_dir/device.key``, creating it (dir 0700, key 0600, written atomically) on first boot."""
        state = Path(state_dir)
        state.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state / KEY_FILE
        if path.exists():
            seed = path.read_bytes()
            if len(seed) != 32:
                raise ProvisionError(f"{path}: a device key is 32 bytes, found {len(seed)}; refusing to overwrite it")
            return cls(nacl.signing.SigningKey(seed))
        ident = cls.generate()
        write_atomic(path, bytes(ident._signing_key), mode=0o600)
        return ident
