"""Owner pairing by numeric comparison: the owner's tool and the device exchange public keys and fresh nonces,
both show a 6-digit code derived from all of them, the owner checks the two codes match and confirms on both sides.

The exchange (sans-I/O state machines: the device's here, the owner's in :mod:`.pairing_owner`; messages and
derivations in :mod:`.pairing_messages`; MQTT transport in :mod:`.pairing_mqtt`; boot-partition file in
:mod:`.boot_pairing`), every message signed by its sender's key over ``doorkeep-pair-v1 || NUL || canonical``::

    owner  -> device  offer    session, owner public keys, commit = H(session, owner keys, N_o)[, re-pair auth]
    device -> owner   accept   session, device key, device id, N_d
    owner  -> device  reveal   session, N_o            (device checks the commitment)
                       both: code = H(transcript) mod 10^6, shown to the human
    owner  -> device  confirm  session, transcript     (the owner pressed "yes, the codes match")
    device -> owner   done     session, transcript, counter   (device confirmed too and pinned the owner)
    either            abort    session, reason[, device key (the device's aborts)]

The owner commits to N_o before seeing N_d and reveals it only after, so neither side can choose its nonce to
steer the code (Bluetooth SSP numeric comparison): a man in the middle matches both codes with probability 10^-6.
Messages are refused outside an open :class:`PairingWindow`. A device that already has an owner refuses an offer
unless it comes from that owner itself or carries an ``authorize-repair`` document signed by it (or the device
was factory reset).

Only an authenticated message changes a session: before a session exists, an offer signed by the key it offers;
afterwards, a message of that session signed by the peer's key. Junk, forgeries, another session's messages and
unauthenticated aborts are refused without touching the state (and counted, not audited one by one), and an exact
copy of a message already handled (an MQTT QoS 1 redelivery) is skipped, so the drivers keep listening.
Format: docs/formats.md ("Provisioning: pairing messages").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import nacl.utils
from doorkeep.device.errors import FormatError
from doorkeep.device.safe_text import printable
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import PublicKeys

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
#: Refused offers audited one by one per window (signed offers cost an attacker nothing; the rest are counted).
MAX_AUDITED_REFUSALS = 10


class SeenMessages:
    """Digests of the authenticated messages a session already handled: a redelivered copy is not a new step."""

    def __init__(self) -> None:
        self._digests: set[bytes] = set()

    def fresh(self, data: bytes) -> bool:
        d = codec.blake2b(bytes(data).strip(), person=b"dk-pair-seen", size=16)
        if d in self._digests:
            return False
        self._digests.add(d)
        return True

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


# ------------------------------------------------------------------------------------------------- device side
@dataclass
class DevicePairing:
    """The device's half. Feed received messages to :meth:`handle`; send what it returns; call :meth:`decide`
    once the local human has compared :attr:`code`. A refusal that ends the session, and each refused signed offer
    (up to :data:`MAX_AUDITED_REFUSALS`), is audited (``pair_refused``); unauthenticated messages are only counted
    (:attr:`ignored`, in the final record) so a flood cannot fill the audit log."""

    prov: DeviceProvisioning
    window: PairingWindow = field(default_factory=PairingWindow)
    state: str = "offer"
    code: str | None = None
    result: DevicePaired | None = None
    _owner: PublicKeys | None = None
    _auth: OwnerDocument | None = None
    _session: bytes = b""
    _commit: bytes = b""
    _nonce: bytes = field(default=b"", repr=False)  # secret until revealed: never in a repr
    _transcript: bytes = b""
    _owner_ok = False
    _local_ok = False
    #: Messages refused without changing the state (junk, forgeries, other sessions), counted in the final record.
    ignored: int = 0
    _refusals: int = 0
    _seen: SeenMessages = field(default_factory=lambda: SeenMessages())

    def __post_init__(self) -> None:
        self.prov.audit.append("pair_window_open", seconds=round(self.window.remaining(), 1),
                               repair=self.prov.owner() is not None)

    def _sign(self, data: bytes) -> bytes:
        return self.prov.identity.sign(data)

    def handle(self, data: bytes) -> list[bytes]:
        """One received message → the messages to send. Raises a :class:`ProvisionRefused` for anything not
        accepted; only a message signed by the session's owner key (before a session exists: an offer signed by
        the key it offers) can change the state, so junk, forgeries and other sessions' messages leave the session
        as it was (:attr:`state` tells whether the refusal ended it; the driver goes on listening if not)."""
        if not self.window.is_open():
            if self.state not in ("done", "failed"):
                self._fail("window-closed", "the pairing window is closed")
            raise WindowClosed("the pairing window is closed; open it with `doorkeep pair --device` or the button")
        if self.state in ("done", "failed"):
            raise PairingMismatch(f"pairing session already {self.state}")
        try:
            msg = Message.parse(data)
            if self.state == "offer":
                out = self._offer(msg)
                self._seen.fresh(data)
                return out
            assert self._owner is not None
            if msg.session != self._session:
                raise PairingMismatch("message for another pairing session")
            msg.verify(self._owner.sign)
        except ProvisionRefused:
            self.ignored += 1
            raise
        if not self._seen.fresh(data):
            return []  # the same signed message again (an MQTT QoS 1 redelivery)
        try:
            if msg.type == "abort":
                raise PairingMismatch(f"the owner aborted: {printable(msg.fields.obj.get('reason', ''), max_len=100)}",
                                      reason="aborted-by-owner")
            handler: Callable[[Message], list[bytes]] = getattr(self, f"_on_{self.state}")
            return handler(msg)
        except ProvisionRefused as exc:
            self._fail(exc.reason, exc.detail)
            raise

    def _offer(self, msg: Message) -> list[bytes]:
        """No session yet: an offer signed by the key it offers starts one. A signed offer this device refuses
        (already paired, a bad hand-over) is audited and answered with an ``abort`` (``exc.reply``), but leaves the
        window open for the real owner."""
        if msg.type == "abort":
            return []  # nothing of ours to abort
        self._expect(msg, "offer")
        try:
            owner = PublicKeys.from_json(msg.fields.obj.get("owner"), what="offer.owner")
        except (FormatError, ValueError, TypeError) as exc:
            raise MalformedDocument(str(exc)) from None
        if owner.role != "owner":
            raise MalformedDocument("offer.owner must be an owner key")
        msg.verify(owner.sign)  # proof of possession of the offered key
        try:
            return self._on_offer(msg, owner)
        except ProvisionRefused as exc:
            if self._refusals < MAX_AUDITED_REFUSALS:
                self.prov.audit.append("pair_refused", reason=exc.reason, detail=exc.detail[:300])
            self._refusals += 1
            exc.reply = self._abort(exc.reason, session=msg.session)
            raise

    def _expect(self, msg: Message, mtype: str) -> None:
        if msg.type != mtype:
            raise PairingMismatch(f"expected {mtype!r}, got {msg.type!r}")

    def _on_offer(self, msg: Message, owner: PublicKeys) -> list[bytes]:
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
        if msg.get(lambda: msg.fields.b64("transcript", length=32)) != self._transcript:
            raise PairingMismatch("the owner confirmed a different exchange")
        self._owner_ok = True
        return self._maybe_finish()

    @property
    def awaiting_decision(self) -> bool:
        """The code is shown and the local human has not answered yet."""
        return self.state == "confirm" and self.code is not None and not self._local_ok

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
                               previous_owner=owner_key_id(previous) if previous else None, channel="exchange",
                               ignored=self.ignored, refused_offers=self._refusals)
        return [seal({"type": "done", "session": codec.b64e(self._session),
                      "transcript": codec.b64e(self._transcript), "counter": self.prov.last_counter()}, self._sign)]

    def _abort(self, reason: str, *, session: bytes | None = None) -> bytes:
        # carries the device key so the owner's tool can check it (it may not know the key yet)
        return seal({"type": "abort", "session": codec.b64e(session or self._session or bytes(SESSION_BYTES)),
                     "reason": reason, "device": codec.b64e(self.prov.identity.public_bytes)}, self._sign)

    def abort_message(self, reason: str) -> bytes:
        """An ``abort`` to tell the owner why this side gave up."""
        return self._abort(reason)

    def _fail(self, reason: str, detail: str) -> None:
        self.state = "failed"
        self.prov.audit.append("pair_refused", reason=reason, detail=detail[:300], ignored=self.ignored,
                               refused_offers=self._refusals)


# ------------------------------------------------------------------------------------------------- drivers
class Channel(Protocol):
    """A bidirectional message pipe (the MQTT pairing topics, or a queue in tests)."""

    def send(self, data: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes | None: ...


Confirm = Callable[[str], bool]


class Machine(Protocol):
    """What the drivers need of either side's state machine."""

    state: str
    code: str | None

    @property
    def awaiting_decision(self) -> bool: ...

    def handle(self, data: bytes) -> list[bytes]: ...

    def decide(self, accepted: bool) -> list[bytes]: ...


def exchange_step(machine: Machine, channel: Channel, data: bytes, *, confirm: Confirm, side: str) -> None:
    """Feed one received message to ``machine`` and send what it answers. A refusal that leaves the session as it
    was (junk, a forgery, a stranger) is logged, answered if the machine made a reply, and skipped; one that ended
    the session is raised. Once a code is shown, ``confirm(code)`` decides (raises ``code-rejected`` on no)."""
    try:
        replies = machine.handle(data)
    except ProvisionRefused as exc:
        if machine.state == "failed":
            raise
        log.warning("pairing: ignored a message: %s", printable(exc))
        if exc.reply is not None:
            channel.send(exc.reply)
        return
    for out in replies:
        channel.send(out)
    if machine.awaiting_decision and machine.code is not None:
        for out in machine.decide(confirm(machine.code)):
            channel.send(out)
        if machine.state == "failed":
            raise PairingMismatch(f"the codes did not match (rejected {side})", reason="code-rejected")


def run_device(machine: DevicePairing, channel: Channel, *, confirm: Confirm) -> DevicePaired:
    """Drive the device side until paired; raises the refusal that ended the session (after telling the owner) or
    :class:`WindowClosed`. Messages refused without ending it (junk, forgeries, a stranger's offer) are skipped."""
    try:
        while machine.result is None:
            remaining = machine.window.remaining()
            if remaining <= 0:
                if machine.state != "failed":
                    machine._fail("window-closed", "the pairing window expired before pairing finished")
                raise WindowClosed("the pairing window expired before pairing finished")
            data = channel.recv(min(remaining, 1.0))
            if data is not None:
                exchange_step(machine, channel, data, confirm=confirm, side="on the device")
    except ProvisionRefused as exc:
        if exc.reason not in ("aborted-by-owner", "window-closed", "code-rejected"):
            channel.send(machine.abort_message(exc.reason))
        raise
    return machine.result
