"""Owner pairing by numeric comparison: the owner's tool and the device exchange public keys and fresh nonces,
both show a 6-digit code derived from all of them, the owner checks the two codes match and confirms on both sides.

The exchange (sans-I/O state machines here; messages and derivations in :mod:`.pairing_messages`; MQTT transport
in :mod:`.pairing_mqtt`; boot-partition file in :mod:`.boot_pairing`), every message signed by its sender's key
over ``doorkeep-pair-v1 || NUL || canonical``::

    owner  -> device  offer    session, owner public keys, commit = H(session, owner keys, N_o)[, re-pair auth]
    device -> owner   accept   session, device key, device id, N_d
    owner  -> device  reveal   session, N_o            (device checks the commitment)
                       both: code = H(transcript) mod 10^6, shown to the human
    owner  -> device  confirm  session, transcript     (the owner pressed "yes, the codes match")
    device -> owner   done     session, transcript, counter   (device confirmed too and pinned the owner)
    either            abort    session, reason

The owner commits to N_o before seeing N_d and reveals it only after, so neither side can choose its nonce to
steer the code (Bluetooth SSP numeric comparison): a man in the middle matches both codes with probability 10^-6.
Messages are refused outside an open :class:`PairingWindow`. A device that already has an owner refuses an offer
unless it comes from that owner itself or carries an ``authorize-repair`` document signed by it (or the device
was factory reset).
Format: docs/formats.md ("Provisioning: pairing messages").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
    WindowClosed,
)
from .pairing_messages import (
    NONCE_BYTES,
    SESSION_BYTES,
    Message,
    commitment,
    pairing_code,
    seal,
    transcript_hash,
)

log = logging.getLogger(__name__)

#: Default pairing window after ``doorkeep pair --device`` or a button press.
DEFAULT_WINDOW_S = 300.0

# ------------------------------------------------------------------------------------------------- the window
@dataclass
class PairingWindow:
    """Pairing messages are accepted only while this is open (``duration_s`` after opening)."""

    duration_s: float = DEFAULT_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    opened_at: float | None = None

    def __post_init__(self) -> None:
        if self.opened_at is None:
            self.opened_at = self.clock()

    def remaining(self) -> float:
        assert self.opened_at is not None
        return max(0.0, self.opened_at + self.duration_s - self.clock())

    def is_open(self) -> bool:
        return self.remaining() > 0.0

    def close(self) -> None:
        self.duration_s = 0.0


@dataclass(frozen=True)
class DevicePaired:
    """Device-side result: the owner now pinned and the code both sides showed."""

    owner: PublicKeys
    code: str
    repaired: bool


@dataclass(frozen=True)
class OwnerPaired:
    """Owner-side result: the device key to pin."""

    device_id: str
    device_key: bytes
    fingerprint: str
    code: str
    counter: int


# ------------------------------------------------------------------------------------------------- device side
@dataclass
class DevicePairing:
    """The device's half. Feed received messages to :meth:`handle`; send what it returns; call :meth:`decide`
    once the local human has compared :attr:`code`. Every refusal is audited (``pair_refused``) and raised."""

    prov: DeviceProvisioning
    window: PairingWindow = field(default_factory=PairingWindow)
    state: str = "offer"
    code: str | None = None
    result: DevicePaired | None = None
    _owner: PublicKeys | None = None
    _auth: OwnerDocument | None = None
    _session: bytes = b""
    _commit: bytes = b""
    _nonce: bytes = b""
    _transcript: bytes = b""
    _owner_ok = False
    _local_ok = False

    def __post_init__(self) -> None:
        self.prov.audit.append("pair_window_open", seconds=round(self.window.remaining(), 1),
                               repair=self.prov.owner() is not None)

    def _sign(self, data: bytes) -> bytes:
        return self.prov.identity.sign(data)

    def handle(self, data: bytes) -> list[bytes]:
        try:
            if not self.window.is_open():
                raise WindowClosed("the pairing window is closed; open it with `doorkeep pair --device` or the button")
            if self.state in ("done", "failed"):
                raise PairingMismatch(f"pairing session already {self.state}")
            msg = Message.parse(data)
            if msg.type == "abort":
                if self._owner is None or msg.session != self._session:
                    return []  # nothing of ours to abort
                msg.verify(self._owner.sign)
                raise PairingMismatch(f"the owner aborted: {str(msg.fields.obj.get('reason', ''))[:100]}",
                                      reason="aborted-by-owner")
            if self._session and msg.session != self._session:
                raise PairingMismatch("message for another pairing session")
            handler: Callable[[Message], list[bytes]] = getattr(self, f"_on_{self.state}")
            return handler(msg)
        except ProvisionRefused as exc:
            if self.state != "failed":
                self._fail(exc.reason, exc.detail)
            raise

    def _expect(self, msg: Message, mtype: str) -> None:
        if msg.type != mtype:
            raise PairingMismatch(f"expected {mtype!r}, got {msg.type!r}")

    def _on_offer(self, msg: Message) -> list[bytes]:
        self._expect(msg, "offer")
        try:
            owner = PublicKeys.from_json(msg.fields.obj.get("owner"), what="offer.owner")
        except (FormatError, ValueError, TypeError) as exc:
            raise MalformedDocument(str(exc)) from None
        if owner.role != "owner":
            raise MalformedDocument("offer.owner must be an owner key")
        msg.verify(owner.sign)  # proof of possession of the offered key
        self._commit = msg.get(lambda: msg.fields.b64("commit", length=32))
        current = self.prov.owner()
        # The same owner re-pairing (e.g. a new laptop) already proved itself: the offer is signed by the pinned key.
        if current is not None and current != owner:
            auth = msg.fields.obj.get("auth")
            if auth is None:
                raise AlreadyPaired(f"already paired to owner {owner_key_id(current)}; re-pairing needs the current "
                                    "owner's signature (doorkeep pair --owner --authorize-with OLD_KEY) "
                                    "or a factory reset")
            doc = OwnerDocument.from_bytes(codec.canonical(auth))
            doc.verify(kind=KIND_REPAIR, pinned_owner=current.sign, device_id=self.prov.identity.device_id,
                       last_counter=self.prov.last_counter())
            if doc.body.get("new_owner") != owner.to_json():
                raise BadSignature("the re-pair authorisation names another new owner key")
            self._auth = doc
        self._owner, self._session = owner, msg.session
        self._nonce = nacl.utils.random(NONCE_BYTES)
        self.state = "reveal"
        return [seal({"type": "accept", "session": codec.b64e(self._session),
                      "device": codec.b64e(self.prov.identity.public_bytes),
                      "device_id": self.prov.identity.device_id, "nonce": codec.b64e(self._nonce)}, self._sign)]

    def _on_reveal(self, msg: Message) -> list[bytes]:
        self._expect(msg, "reveal")
        assert self._owner is not None
        msg.verify(self._owner.sign)
        n_owner = msg.get(lambda: msg.fields.b64("nonce", length=NONCE_BYTES))
        if commitment(self._session, self._owner, n_owner) != self._commit:
            raise PairingMismatch("the owner's nonce does not match its commitment")
        self._transcript = transcript_hash(self._session, self._owner, self.prov.identity.public_bytes, self._commit,
                                           n_owner, self._nonce)
        self.code = pairing_code(self._transcript)
        self.state = "confirm"
        log.warning("PAIRING CODE %s — compare with the owner's screen (owner key %s)", self.code,
                    owner_key_id(self._owner))
        return []

    def _on_confirm(self, msg: Message) -> list[bytes]:
        self._expect(msg, "confirm")
        assert self._owner is not None
        msg.verify(self._owner.sign)
        if msg.get(lambda: msg.fields.b64("transcript", length=32)) != self._transcript:
            raise PairingMismatch("the owner confirmed a different exchange")
        self._owner_ok = True
        return self._maybe_finish()

    def decide(self, accepted: bool) -> list[bytes]:
        """The local human's verdict on :attr:`code` (``False`` aborts and is audited)."""
        if self.code is None or self.state not in ("confirm",):
            raise PairingMismatch("there is no code to decide on yet")
        if not accepted:
            self._fail("code-rejected", "the codes did not match on the device side")
            return [self._abort("code-rejected")]
        self._local_ok = True
        return self._maybe_finish()

    def _maybe_finish(self) -> list[bytes]:
        if not (self._owner_ok and self._local_ok):
            return []
        assert self._owner is not None
        previous = self.prov.owner()
        self.prov.pin(self._owner, replace=previous is not None)
        if self._auth is not None:
            self.prov.commit_counter(self._auth.counter)
        self.state = "done"
        self.result = DevicePaired(self._owner, self.code or "", previous is not None)
        self.prov.audit.append("paired", owner=owner_key_id(self._owner), code=self.code,
                               previous_owner=owner_key_id(previous) if previous else None, channel="exchange")
        return [seal({"type": "done", "session": codec.b64e(self._session),
                      "transcript": codec.b64e(self._transcript), "counter": self.prov.last_counter()}, self._sign)]

    def _abort(self, reason: str) -> bytes:
        return seal({"type": "abort", "session": codec.b64e(self._session or bytes(SESSION_BYTES)),
                     "reason": reason}, self._sign)

    def abort_message(self, reason: str) -> bytes:
        """An ``abort`` to tell the owner why this side gave up."""
        return self._abort(reason)

    def _fail(self, reason: str, detail: str) -> None:
        self.state = "failed"
        self.prov.audit.append("pair_refused", reason=reason, detail=detail[:300])


# ------------------------------------------------------------------------------------------------- owner side
@dataclass
class OwnerPairing:
    """The owner's half. :meth:`start` makes the offer; feed replies to :meth:`handle`; call :meth:`decide` when the
    owner has compared :attr:`code` with the device's.

    Args:
        keys: the owner's secret keys.
        device_id: the device expected (None: whichever device answers; its id and fingerprint are shown).
        authorization: a re-pair document signed by the device's current owner.
    """

    keys: SecretKeys
    device_id: str | None = None
    authorization: OwnerDocument | None = None
    state: str = "new"
    code: str | None = None
    result: OwnerPaired | None = None
    device_key: bytes = b""
    _session: bytes = b""
    _nonce: bytes = b""
    _commit: bytes = b""
    _transcript: bytes = b""

    def start(self) -> bytes:
        self._session = nacl.utils.random(SESSION_BYTES)
        self._nonce = nacl.utils.random(NONCE_BYTES)
        self._commit = commitment(self._session, self.keys.public, self._nonce)
        msg: dict[str, Any] = {"type": "offer", "session": codec.b64e(self._session),
                               "owner": self.keys.public.to_json(), "commit": codec.b64e(self._commit)}
        if self.authorization is not None:
            msg["auth"] = codec.parse_json(self.authorization.to_bytes(), what="authorization")
        self.state = "accept"
        return seal(msg, self.keys.sign)

    def handle(self, data: bytes) -> list[bytes]:
        msg = Message.parse(data)
        if msg.session != self._session:
            raise PairingMismatch("reply for another pairing session")
        if msg.type == "abort":
            if self.device_key:
                msg.verify(self.device_key)
            self.state = "failed"
            raise PairingMismatch(f"the device aborted: {msg.fields.obj.get('reason')}", reason="aborted-by-device")
        if self.state == "accept" and msg.type == "accept":
            key = msg.get(lambda: msg.fields.b64("device", length=32))
            msg.verify(key)
            claimed = msg.get(lambda: msg.fields.text("device_id", max_len=64))
            if claimed != device_id_for(key):
                raise PairingMismatch(f"device id {claimed} does not belong to the device key")
            if self.device_id is not None and claimed != self.device_id:
                raise PairingMismatch(f"expected device {self.device_id}, {claimed} answered")
            n_device = msg.get(lambda: msg.fields.b64("nonce", length=NONCE_BYTES))
            self.device_key, self.device_id = key, claimed
            self._transcript = transcript_hash(self._session, self.keys.public, key, self._commit, self._nonce,
                                               n_device)
            self.code = pairing_code(self._transcript)
            self.state = "decide"
            return [seal({"type": "reveal", "session": codec.b64e(self._session),
                          "nonce": codec.b64e(self._nonce)}, self.keys.sign)]
        if self.state == "done-wait" and msg.type == "done":
            msg.verify(self.device_key)
            if msg.get(lambda: msg.fields.b64("transcript", length=32)) != self._transcript:
                raise PairingMismatch("the device finished a different exchange")
            assert self.device_id is not None and self.code is not None
            self.result = OwnerPaired(self.device_id, self.device_key, fingerprint_for(self.device_key), self.code,
                                      msg.get(lambda: msg.fields.integer("counter")))
            self.state = "done"
            return []
        raise PairingMismatch(f"unexpected {msg.type!r} message in state {self.state!r}")

    def decide(self, accepted: bool) -> list[bytes]:
        """The owner's verdict on :attr:`code`: a signed ``confirm``, or an ``abort``."""
        if self.state != "decide":
            raise PairingMismatch("there is no code to decide on yet")
        if not accepted:
            self.state = "failed"
            return [self.abort_message("code-rejected")]
        self.state = "done-wait"
        return [seal({"type": "confirm", "session": codec.b64e(self._session),
                      "transcript": codec.b64e(self._transcript)}, self.keys.sign)]

    def abort_message(self, reason: str) -> bytes:
        return seal({"type": "abort", "session": codec.b64e(self._session), "reason": reason}, self.keys.sign)


# ------------------------------------------------------------------------------------------------- drivers
class Channel(Protocol):
    """A bidirectional message pipe (the MQTT pairing topics, or a queue in tests)."""

    def send(self, data: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes | None: ...


Confirm = Callable[[str], bool]


def run_device(machine: DevicePairing, channel: Channel, *, confirm: Confirm) -> DevicePaired:
    """Drive the device side until paired; raises the refusal (after telling the owner) or :class:`WindowClosed`."""
    try:
        while machine.result is None:
            remaining = machine.window.remaining()
            if remaining <= 0:
                if machine.state != "failed":
                    machine._fail("window-closed", "the pairing window expired before pairing finished")
                raise WindowClosed("the pairing window expired before pairing finished")
            data = channel.recv(min(remaining, 1.0))
            if data is None:
                continue
            for out in machine.handle(data):
                channel.send(out)
            if machine.state == "confirm" and machine.code is not None and not machine._local_ok:
                for out in machine.decide(confirm(machine.code)):
                    channel.send(out)
                if machine.state == "failed":
                    raise PairingMismatch("the codes did not match (rejected on the device)", reason="code-rejected")
    except ProvisionRefused as exc:
        if exc.reason not in ("aborted-by-owner", "window-closed", "code-rejected"):
            channel.send(machine.abort_message(exc.reason))
        raise
    return machine.result


def run_owner(machine: OwnerPairing, channel: Channel, *, confirm: Confirm, timeout: float) -> OwnerPaired:
    """Drive the owner side: offer, show the code, confirm, wait for ``done``."""
    deadline = time.monotonic() + timeout
    channel.send(machine.start())
    try:
        while machine.result is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise PairingMismatch("no answer from the device in time (is its pairing window open?)",
                                      reason="timeout")
            data = channel.recv(min(left, 1.0))
            if data is None:
                continue
            for out in machine.handle(data):
                channel.send(out)
            if machine.state == "decide" and machine.code is not None:
                for out in machine.decide(confirm(machine.code)):
                    channel.send(out)
                if machine.state == "failed":
                    raise PairingMismatch("the codes did not match (rejected by the owner)", reason="code-rejected")
    except ProvisionRefused as exc:
        if exc.reason not in ("aborted-by-device", "timeout", "code-rejected") and machine._session:
            channel.send(machine.abort_message(exc.reason))
        raise
    return machine.result
