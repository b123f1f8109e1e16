"""Owner and recipient keys: Ed25519 for signing, X25519 for sealing clip keys.

The public half (:class:`PublicKeys`) is what the device pins (``<state_dir>/owner.pub``) and what a grant names as
its recipient. The secret half (:class:`SecretKeys`) lives on the owner's or recipient's machine in a file encrypted
with a passphrase: argon2id (libsodium ``pwhash``) derives a SecretBox key. Formats: docs/formats.md.

Example::

    keys = SecretKeys.generate("owner")
    keys.save(path, b"passphrase")
    pin_owner_public(state_dir, keys.public)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nacl.exceptions
import nacl.public
import nacl.pwhash
import nacl.secret
import nacl.signing
import nacl.utils

from ..errors import FormatError, KeyRoleError, VaultError, WrongType
from ..fileio import make_dirs, write_atomic
from .codec import Fields, b64e, canonical, parse_json

Role = Literal["owner", "recipient"]
ROLES: tuple[str, ...] = ("owner", "recipient")
PUBLIC_FORMAT = "doorkeep-public-key"
SECRET_FORMAT = "doorkeep-secret-key"
VERSION = 1
#: Where the device pins the owner's public keys, relative to the state dir.
OWNER_PUB_FILE = "owner.pub"
#: Upper bounds accepted from a key file, so a hostile file cannot make us allocate unbounded memory.
MAX_OPSLIMIT = 64
MAX_MEMLIMIT = 1 << 30
#: A passphrase, or a callable that asks for it (called only when the key file is otherwise acceptable).
Passphrase = bytes | Callable[[], bytes]


def wrong_role(what: str, found: str, expected: str) -> str:
    return f"{what}: is {'an' if found[0] in 'aeiou' else 'a'} {found} key, expected {expected}"


class PassphraseError(VaultError, ValueError):
    """The passphrase does not open this secret key file (or the file was altered)."""


@dataclass(frozen=True)
class Argon2Limits:
    """argon2id cost. ``MODERATE`` for real keys; ``MIN`` only for tests."""

    opslimit: int
    memlimit: int


MODERATE = Argon2Limits(nacl.pwhash.argon2id.OPSLIMIT_MODERATE, nacl.pwhash.argon2id.MEMLIMIT_MODERATE)
INTERACTIVE = Argon2Limits(nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE)
MIN = Argon2Limits(nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_MIN)


@dataclass(frozen=True)
class PublicKeys:
    """A party's public keys: Ed25519 ``sign`` (32 bytes) and X25519 ``box`` (32 bytes)."""

    role: str
    sign: bytes
    box: bytes

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise KeyRoleError(f"role must be one of {ROLES}, got {self.role!r}")
        for name in ("sign", "box"):
            v = getattr(self, name)
            if not isinstance(v, bytes) or len(v) != 32:
                raise WrongType(f"PublicKeys.{name} must be 32 bytes")

    @property
    def verify_key(self) -> nacl.signing.VerifyKey:
        return nacl.signing.VerifyKey(self.sign)

    @property
    def box_key(self) -> nacl.public.PublicKey:
        return nacl.public.PublicKey(self.box)

    def to_json(self) -> dict[str, object]:
        return {"format": PUBLIC_FORMAT, "v": VERSION, "role": self.role,
                "sign": b64e(self.sign), "box": b64e(self.box)}

    def to_bytes(self) -> bytes:
        return canonical(self.to_json()) + b"\n"

    @classmethod
    def from_json(cls, obj: object, *, what: str = "public key") -> PublicKeys:
        f = Fields(obj, what=what)
        f.header(PUBLIC_FORMAT, VERSION)
        f.only("format", "v", "role", "sign", "box")
        role = f.text("role")
        if role not in ROLES:
            raise FormatError(f"{what}: role must be one of {ROLES}")
        return cls(role, f.b64("sign", length=32), f.b64("box", length=32))

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str = "public key") -> PublicKeys:
        return cls.from_json(parse_json(data.strip(), what=what), what=what)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, role: str | None = None) -> PublicKeys:
        """Read a public key file; with ``role``, refuse a key of another role."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise VaultError(f"{p}: cannot read public key: {exc.strerror}") from None
        keys = cls.from_bytes(data, what=str(p))
        if role is not None and keys.role != role:
            raise FormatError(wrong_role(str(p), keys.role, role))
        return keys


#: The owner's public keys as pinned on the device.
OwnerPublic = PublicKeys


class SecretKeys:
    """A party's secret keys, usable only through :meth:`sign`, :meth:`unseal` and the encrypted key file.

    The key objects stay private: PyNaCl's ``str(SigningKey)`` prints the seed, so none is reachable as an attribute
    and ``repr``/``str`` show only the role and a public-key prefix.
    """

    def __init__(self, role: str, signing_key: nacl.signing.SigningKey, box_key: nacl.public.PrivateKey) -> None:
        if role not in ROLES:
            raise KeyRoleError(f"role must be one of {ROLES}, got {role!r}")
        if not isinstance(signing_key, nacl.signing.SigningKey) or not isinstance(box_key, nacl.public.PrivateKey):
            raise WrongType("SecretKeys needs a nacl SigningKey and a nacl PrivateKey")
        self.role = role
        self._signing_key = signing_key
        self._box_key = box_key

    def __repr__(self) -> str:
        return f"SecretKeys({self.role}, sign={self.public.sign.hex()[:16]}…, secret redacted)"

    __str__ = __repr__

    @property
    def public(self) -> PublicKeys:
        return PublicKeys(self.role, bytes(self._signing_key.verify_key), bytes(self._box_key.public_key))

    @classmethod
    def generate(cls, role: str) -> SecretKeys:
        return cls(role, nacl.signing.SigningKey.generate(), nacl.public.PrivateKey.generate())

    @classmethod
    def from_seeds(cls, role: str, sign_seed: bytes, box_secret: bytes) -> SecretKeys:
        """Deterministic keys (test vectors)."""
        return cls(role, nacl.signing.SigningKey(sign_seed), nacl.public.PrivateKey(box_secret))

    def sign(self, message: bytes) -> bytes:
        return self._signing_key.sign(message).signature

    def unseal(self, sealed: bytes) -> bytes:
        """Open a SealedBox addressed to this party; :class:`FormatError` if it is not ours or was altered."""
        try:
            return nacl.public.SealedBox(self._box_key).decrypt(sealed)
        except (nacl.exceptions.CryptoError, nacl.exceptions.TypeError, nacl.exceptions.ValueError):
            raise FormatError("sealed key does not open with this secret key") from None

    # ---------------------------------------------------------------------------------------- file format
    def to_file_bytes(self, passphrase: bytes, *, limits: Argon2Limits = MODERATE, salt: bytes | None = None,
                      nonce: bytes | None = None) -> bytes:
        """The encrypted secret key file (``salt``/``nonce`` fixed only for test vectors)."""
        salt = salt if salt is not None else nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        kek = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                                       opslimit=limits.opslimit, memlimit=limits.memlimit)
        secret = bytes(self._signing_key) + bytes(self._box_key)
        boxed = nacl.secret.SecretBox(kek).encrypt(secret, nonce)
        pub = self.public
        doc = {"format": SECRET_FORMAT, "v": VERSION, "role": self.role, "sign": b64e(pub.sign), "box": b64e(pub.box),
               "kdf": {"alg": "argon2id13", "ops": limits.opslimit, "mem": limits.memlimit, "salt": b64e(salt)},
               "secret": b64e(bytes(boxed))}
        return canonical(doc) + b"\n"

    @classmethod
    def from_file_bytes(cls, data: bytes, passphrase: Passphrase, *, what: str = "secret key",
                        role: str | None = None) -> SecretKeys:
        """The keys in an encrypted key file. ``passphrase`` may be a callable (a prompt): it is asked only once the
        file parses and, with ``role``, holds a key of that role — so a wrong file is refused before any prompt."""
        f = Fields(parse_json(data.strip(), what=what), what=what)
        f.header(SECRET_FORMAT, VERSION)
        f.only("format", "v", "role", "sign", "box", "kdf", "secret")
        found = f.text("role")
        if found not in ROLES:
            raise FormatError(f"{what}: role must be one of {ROLES}")
        if role is not None and found != role:
            raise FormatError(wrong_role(what, found, role))
        role = found
        claimed = PublicKeys(role, f.b64("sign", length=32), f.b64("box", length=32))
        kdf = f.sub("kdf")
        kdf.only("alg", "ops", "mem", "salt")
        if kdf.text("alg") != "argon2id13":
            raise FormatError(f"{what}: unsupported kdf")
        ops = kdf.integer("ops", lo=nacl.pwhash.argon2id.OPSLIMIT_MIN, hi=MAX_OPSLIMIT)
        mem = kdf.integer("mem", lo=nacl.pwhash.argon2id.MEMLIMIT_MIN, hi=MAX_MEMLIMIT)
        salt = kdf.b64("salt", length=nacl.pwhash.argon2id.SALTBYTES)
        boxed = f.b64("secret", length=64 + nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES)
        pw = passphrase() if callable(passphrase) else passphrase
        kek = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, pw, salt, opslimit=ops, memlimit=mem)
        try:
            secret = nacl.secret.SecretBox(kek).decrypt(boxed)
        except nacl.exceptions.CryptoError:
            raise PassphraseError(f"{what}: wrong passphrase (or the file was altered)") from None
        keys = cls.from_seeds(role, secret[:32], secret[32:])
        if keys.public != claimed:
            raise FormatError(f"{what}: public keys do not match the secret keys")
        return keys

    def save(self, path: str | os.PathLike[str], passphrase: bytes, *, limits: Argon2Limits = MODERATE,
             overwrite: bool = False) -> None:
        """Write the encrypted key file (mode 0600, atomically). Refuses to overwrite unless asked."""
        p = Path(path)
        if p.exists() and not overwrite:
            raise VaultError(f"{p} exists; refusing to overwrite a key file")
        write_atomic(p, self.to_file_bytes(passphrase, limits=limits), mode=0o600)

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: Passphrase, *, role: str | None = None) -> SecretKeys:
        """Read an encrypted key file; with ``role``, refuse a key of another role (before asking ``passphrase``,
        when it is a callable)."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise VaultError(f"{p}: cannot read secret key: {exc.strerror}") from None
        return cls.from_file_bytes(data, passphrase, what=str(p), role=role)


def pin_owner_public(state_dir: str | os.PathLike[str], owner: PublicKeys, *, replace: bool = False) -> Path:
    """Pin the owner's public keys on the device (``<state_dir>/owner.pub``); called by pairing.

    Raises :class:`VaultError` if a different owner is already pinned and ``replace`` is false (re-pairing to a
    new owner goes through factory reset, which destroys every clip first).
    """
    if owner.role != "owner":
        raise KeyRoleError("only an owner key can be pinned")
    path = Path(state_dir) / OWNER_PUB_FILE
    if path.exists() and not replace:
        if PublicKeys.load(path) == owner:
            return path
        raise VaultError(f"{path}: a different owner is already pinned")
    make_dirs(state_dir)  # a state directory made here is 0700 (the pin itself is public: 0644)
    write_atomic(path, owner.to_bytes(), mode=0o644)
    return path


def load_owner_public(path: str | os.PathLike[str]) -> PublicKeys:
    """The pinned owner keys (raises if missing or not an owner key)."""
    return PublicKeys.load(path, role="owner")
