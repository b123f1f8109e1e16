"""Provisioning refusals: each carries a short machine-readable ``reason`` code and names what was wrong.

Every refusal is a :class:`ProvisionRefused` (a :class:`ProvisionError`, deliberately not an ``OSError``: an I/O
handler must never swallow a forged document); the subclasses let callers and tests tell the checks apart without
parsing messages. Reason codes are part of the audit records and the CLI output, so they are stable strings (see
docs/formats.md, "Provisioning").
"""

from __future__ import annotations

from doorkeep.device.errors import ProvisionError


class ProvisionRefused(ProvisionError):
    """A provisioning document or message was refused. ``reason`` is a stable short code."""

    reason = "refused"
    #: A message to send back to the peer that caused the refusal (e.g. a pairing ``abort``), if any.
    reply: bytes | None = None

    def __init__(self, detail: str = "", *, reason: str | None = None) -> None:
        if reason is not None:
            self.reason = reason
        self.detail = detail
        super().__init__(f"{self.reason}: {detail}" if detail else self.reason)


class MalformedDocument(ProvisionRefused, ValueError):
    """Not a doorkeep document of the expected format/version, or a field has the wrong type or length."""

    reason = "malformed"


class UnsignedDocument(ProvisionRefused):
    """The document carries no signature."""

    reason = "unsigned"


class BadSignature(ProvisionRefused):
    """The signature does not verify against the pinned (or claimed) key."""

    reason = "bad-signature"


class WrongDevice(ProvisionRefused):
    """The document names another device."""

    reason = "wrong-device"


class StaleCounter(ProvisionRefused):
    """The document's counter is not above the last applied one (a replay or a rollback)."""

    reason = "stale-counter"


class InvalidConfig(ProvisionRefused, ValueError):
    """The signed configuration does not pass the config loader; ``path`` names the refused key."""

    reason = "invalid-config"

    def __init__(self, detail: str = "", *, path: str = "") -> None:
        self.path = path
        super().__init__(detail)


class MaskRemoval(ProvisionRefused):
    """A configuration document would remove a privacy mask and its owner did not sign it with
    ``--allow-mask-removal`` (provisioning/config_diff.py)."""

    reason = "mask-removal"


class StoredConfigRefused(ProvisionRefused):
    """The configuration document stored in the state directory does not verify against the pinned owner and the
    recorded counter (forged, replaced, rolled back); ``reason`` is the underlying refusal's code."""


class NotPaired(ProvisionRefused):
    """The device has no owner pinned yet, so no owner-signed document can be checked."""

    reason = "not-paired"


class AlreadyPaired(ProvisionRefused):
    """Re-pairing without the current owner's signature (or a factory reset) is refused."""

    reason = "already-paired"


class WindowClosed(ProvisionRefused):
    """A pairing message arrived while no pairing window was open."""

    reason = "window-closed"


class PairingMismatch(ProvisionRefused):
    """A pairing message was tampered with: wrong commitment, signature, session or a code the owner rejected."""

    reason = "pairing-mismatch"


class UnsafePermissions(ProvisionRefused):
    """The state directory or a key file is readable by others and could not (or may not) be fixed."""

    reason = "unsafe-permissions"
