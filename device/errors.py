"""One error tree for doorkeep.

Every error doorkeep raises derives from :class:`DoorkeepError`, with one base per area, so callers can catch a
whole area (``except VaultError``) or everything (``except DoorkeepError``). Leaves also inherit the matching
builtin (``ValueError``, ``OSError``, ...) so generic code still behaves.
"""

from __future__ import annotations


class DoorkeepError(Exception):
    """Root of every doorkeep error."""


class DoorkeepWarning(UserWarning):
    """Root of every doorkeep warning (degradations that keep running)."""


class ConfigError(DoorkeepError, ValueError):
    """A configuration value was refused. The message names the key path, the value and why."""

    def __init__(self, path: str, value: object, why: str) -> None:
        self.path = path
        self.value = value
        self.why = why
        super().__init__(f"config {path} = {value!r}: {why}")


class CaptureError(DoorkeepError):
    """A frame source could not start or delivered something unusable."""


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
    """A signed event payload was malformed, unsigned, forged or tampered with."""


class VaultError(DoorkeepError):
    """Clip storage, keys or audit log failure."""


class FormatError(VaultError, ValueError):
    """A vault format (clip header, manifest, grant, request, bundle, audit record) failed to parse."""


class ReleaseError(VaultError, PermissionError):
    """A release grant or bundle was refused. ``reason`` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ProvisionError(DoorkeepError):
    """Identity, pairing or signed-configuration failure."""
