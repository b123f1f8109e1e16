"""One error tree for doorkeep.

Every error doorkeep raises on purpose derives from :class:`DoorkeepError`, with one base per area, so callers can
catch a whole area (``except VaultError``) or everything (``except DoorkeepError``). Leaves also inherit the matching
builtin (``ValueError`` for a bad value, ``TypeError`` for a wrong type, ``TimeoutError`` for a timeout) so generic
code still behaves. A refusal (a bad signature, a refused grant or document, a publish the broker denied) is never an
``OSError``: code that handles I/O failures with ``except OSError`` must not swallow a forgery.
``tests/test_errors_tree.py`` enforces both rules over the whole package.
"""

from __future__ import annotations

from .redact import mask, redact, secrets_in


class DoorkeepError(Exception):
    """Root of every doorkeep error."""


class DoorkeepWarning(UserWarning):
    """Root of every doorkeep warning (degradations that keep running)."""


class InvalidArgument(DoorkeepError, ValueError):
    """A doorkeep function was given a value it cannot take (out of range, unknown name): a bug in the caller."""


class WrongType(DoorkeepError, TypeError):
    """A doorkeep function was given an object of the wrong type or size (e.g. raw bytes where a key is expected)."""


class UnknownName(DoorkeepError, AttributeError):
    """``doorkeep.device.<name>`` is not part of the public SDK (``doorkeep.device.__all__``)."""


class UsageError(DoorkeepError, RuntimeError):
    """A doorkeep object was used out of order: a commit without a begin, a write after close, a sink added twice."""


class ConfigError(DoorkeepError, ValueError):
    """A configuration value was refused. The message names the key path, the value and why.

    The value of a secret-looking key (``password``, also misspelt or unknown: ``pasword``) is neither kept nor shown:
    ``value`` holds ``"<redacted>"`` there (in tables: at each such entry), and ``why`` has those secrets masked.
    The message is printed, logged, and for a signed configuration published and audited (device/redact.py).
    """

    def __init__(self, path: str, value: object, why: str) -> None:
        self.path = path
        self.value = redact(path, value)
        self.why = mask(why, secrets_in(path, value))
        super().__init__(f"config {path} = {self.value!r}: {self.why}")


class CaptureError(DoorkeepError):
    """A frame source could not start or delivered something unusable."""


class FrameError(CaptureError, ValueError):
    """A frame does not have the geometry a part was built for (size, shape, dtype), or the geometry is impossible."""


class DetectError(DoorkeepError):
    """Inference runtime, model file or decoder failure."""


class RuntimeMissingError(DetectError, ImportError):
    """Neither ai-edge-litert nor tflite-runtime can be imported."""


class ModelError(DetectError, ValueError):
    """A model file or manifest was refused (wrong hash, bad manifest, missing file)."""


class EventError(DoorkeepError, ValueError):
    """Bad zone, mask or event-machine input."""


class PublishError(DoorkeepError):
    """MQTT publishing or payload failure."""


class PayloadError(PublishError, ValueError):
    """An MQTT payload was malformed, over its size bound, unsigned, forged or tampered with."""


class OutboxError(PublishError):
    """The durable outbox's database could not be read or written (I/O error, busy, read-only): retried later;
    messages meanwhile wait in memory (device/publish/outbox.py)."""


class OutboxFull(OutboxError):
    """The outbox's disk is full (SQLite's ``SQLITE_FULL``): the space reserve is released and the write retried."""


class OutboxCorrupt(OutboxError):
    """The outbox database is damaged (``SQLITE_CORRUPT``/``SQLITE_NOTADB``): moved aside, a new one started
    (publish/outbox.py)."""


class TopicError(PublishError, ValueError):
    """A value cannot be an MQTT topic segment (``[A-Za-z0-9_-]``, 1..64 characters)."""


class VaultError(DoorkeepError):
    """Clip storage, keys or audit log failure."""


class FormatError(VaultError, ValueError):
    """A vault format (clip header, manifest, grant, request, bundle, audit record) failed to parse."""


class KeyRoleError(VaultError, ValueError):
    """A key of the wrong role: a recipient key where the owner's is needed, or the reverse."""


class AuditError(VaultError, ValueError):
    """An audit record was refused before it was written (bad kind, fields that are not JSON, too large)."""


class ReleaseError(VaultError):
    """A release grant or bundle was refused (a refusal: not an ``OSError``). ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class OutputFailed(DoorkeepError):
    """A file the user asked for could not be written (a full disk, a read-only directory) and nothing was left
    behind, neither a partial file under its name nor a temporary one. ``path`` and ``errno`` say which and why."""

    def __init__(self, path: str, errno: int | None, why: str) -> None:
        self.path, self.errno = path, errno
        super().__init__(f"cannot write {path}: {why} (nothing was written)")


class ProvisionError(DoorkeepError):
    """Identity, pairing or signed-configuration failure."""


class ChannelError(DoorkeepError):
    """The owner channel or the request inbox refused a message, or an owner command failed.

    ``reason`` is a stable code (docs/formats.md#owner-channel): ``too_big``, ``malformed``, ``wrong_version``,
    ``unknown_command``, ``bad_args``, ``wrong_device``, ``stale``, ``future``, ``replayed``, ``not_owner``,
    ``bad_signature``, ``rate``, or a command's own refusal (``unknown_clip``, a grant or config reason, ...).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class CommandRefused(ChannelError):
    """The device answered an owner command with a signed refusal (``reason``, ``detail``)."""


class ChannelTimeout(ChannelError, TimeoutError):
    """No (complete) signed answer from the device within the wait: offline, or the broker dropped messages."""

    def __init__(self, detail: str) -> None:
        super().__init__("timeout", detail)


class ReplyInvalid(ChannelError):
    """A message on the owner reply topic did not verify against the device key (forged, tampered, malformed)."""
