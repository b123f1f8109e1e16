"""The owner's half of numeric-comparison pairing (protocol: :mod:`.pairing`; messages: :mod:`.pairing_messages`).

The owner's tool makes the offer, shows the code once the device has answered, confirms when the owner says the two
codes match, and pins the device key from the device's signed ``done``. As on the device, only a message the
device's key signed can move the exchange on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import nacl.utils
from doorkeep.device.identity import device_id_for, fingerprint_for
from doorkeep.device.safe_text import printable
from doorkeep.device.vault import codec
from doorkeep.device.vault.keys import SecretKeys

from .documents import OwnerDocument
from .errors import PairingMismatch, ProvisionRefused
from .pairing import Channel, Confirm, SeenMessages, exchange_step
from .pairing_messages import (
    NONCE_BYTES,
    SESSION_BYTES,
    Message,
    commitment,
    pairing_code,
    seal,
    transcript_hash,
)


@dataclass(frozen=True)
class OwnerPaired:
    """Owner-side result: the device key to pin."""

    device_id: str
    device_key: bytes
    fingerprint: str
    code: str
    counter: int

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
    _nonce: bytes = field(default=b"", repr=False)  # secret until revealed: never in a repr
    _commit: bytes = b""
    _transcript: bytes = b""
    #: The reason of an ``abort`` that could not be authenticated (shown if the exchange then times out).
    unverified_abort: str | None = None
    _seen: SeenMessages = field(default_factory=lambda: SeenMessages())

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
        """One reply from the device → the messages to send. As on the device, only a message the device's key
        signed can change the state: anything else raises a refusal and leaves :attr:`state` as it was."""
        if self.state in ("new", "done", "failed"):
            raise PairingMismatch(f"no pairing exchange in progress ({self.state})")
        msg = Message.parse(data)
        if msg.session != self._session:
            raise PairingMismatch("reply for another pairing session")
        key = self.device_key or self._claimed_key(msg)
        if key is None:
            if msg.type == "abort":
                self.unverified_abort = printable(msg.fields.obj.get("reason", ""), max_len=100)
            raise PairingMismatch(f"ignored an unauthenticated {msg.type!r} message")
        msg.verify(key)
        if not self._seen.fresh(data):
            return []  # the same signed message again (an MQTT QoS 1 redelivery)
        if msg.type == "abort":
            self.state = "failed"
            raise PairingMismatch(f"the device aborted: {printable(msg.fields.obj.get('reason', ''), max_len=100)}",
                                  reason="aborted-by-device")
        if self.state == "accept" and msg.type == "accept":
            return self._on_accept(msg, key)
        if self.state == "done-wait" and msg.type == "done":
            if msg.get(lambda: msg.fields.b64("transcript", length=32)) != self._transcript:
                self.state = "failed"
                raise PairingMismatch("the device finished a different exchange")
            assert self.device_id is not None and self.code is not None
            self.result = OwnerPaired(self.device_id, self.device_key, fingerprint_for(self.device_key), self.code,
                                      msg.get(lambda: msg.fields.integer("counter")))
            self.state = "done"
            return []
        state, self.state = self.state, "failed"
        raise PairingMismatch(f"unexpected {msg.type!r} message in state {state!r}")

    def _claimed_key(self, msg: Message) -> bytes | None:
        """Before the device key is known: the key an ``accept`` or ``abort`` names, if it belongs to the device
        expected (any device when none is expected, for an ``accept`` only)."""
        if msg.type not in ("accept", "abort") or self.state != "accept":
            return None
        key = msg.get(lambda: msg.fields.b64("device", length=32)) if "device" in msg.fields.obj else None
        if key is None:
            return None
        if self.device_id is not None and device_id_for(key) != self.device_id:
            return None  # another device, or a key that does not match the id it claims
        return key if msg.type == "accept" or self.device_id is not None else None

    def _on_accept(self, msg: Message, key: bytes) -> list[bytes]:
        claimed = msg.get(lambda: msg.fields.text("device_id", max_len=64))
        if claimed != device_id_for(key):
            raise PairingMismatch(f"device id {printable(claimed)} does not belong to the device key")
        n_device = msg.get(lambda: msg.fields.b64("nonce", length=NONCE_BYTES))
        self.device_key, self.device_id = key, claimed
        self._transcript = transcript_hash(self._session, self.keys.public, key, self._commit, self._nonce,
                                           n_device)
        self.code = pairing_code(self._transcript)
        self.state = "decide"
        return [seal({"type": "reveal", "session": codec.b64e(self._session),
                      "nonce": codec.b64e(self._nonce)}, self.keys.sign)]

    @property
    def awaiting_decision(self) -> bool:
        """The device answered, the code is shown and the owner has not answered yet."""
        return self.state == "decide" and self.code is not None

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



def run_owner(machine: OwnerPairing, channel: Channel, *, confirm: Confirm, timeout: float) -> OwnerPaired:
    """Drive the owner side: offer, show the code, confirm, wait for ``done``. Replies refused without ending the
    exchange (junk, forgeries, an unauthenticated abort) are skipped."""
    deadline = time.monotonic() + timeout
    channel.send(machine.start())
    try:
        while machine.result is None:
            left = deadline - time.monotonic()
            if left <= 0:
                said = machine.unverified_abort
                hint = f" (an unauthenticated abort said: {said})" if said else ""
                raise PairingMismatch(f"no answer from the device in time (is its pairing window open?){hint}",
                                      reason="timeout")
            data = channel.recv(min(left, 1.0))
            if data is not None:
                exchange_step(machine, channel, data, confirm=confirm, side="by the owner")
    except ProvisionRefused as exc:
        if exc.reason not in ("aborted-by-device", "timeout", "code-rejected") and machine._session:
            channel.send(machine.abort_message(exc.reason))
        raise
    return machine.result
