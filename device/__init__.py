"""doorkeep.device — the on-device runtime vendors embed.

Data flows frame → ring → motion gate → detector → event → publisher / vault; each stage is one module named after it.

The public SDK is what ``__all__`` names (docs/vendor.md): import it from here, never from the submodules, which may
change. Names load lazily on first use, so ``import doorkeep.device`` stays cheap and touches no hardware.

Example::

    from doorkeep.device import Config, DeviceIdentity, assemble, stop_on_signals

    config = Config.from_toml("/etc/doorkeep/doorkeep.toml")
    with assemble(config, identity=DeviceIdentity.load_or_create(config.state_dir)) as device, \\
            stop_on_signals() as stop:
        stop.wait()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> submodule that defines it.
_EXPORTS: dict[str, str] = {
    # configuration and identity
    "Config": "config", "DeviceIdentity": "identity",
    # the whole device, or the pipeline alone
    "assemble": "assembly", "Device": "assembly", "Doorbell": "app", "stop_on_signals": "loop",
    # sources
    "FrameSource": "sources.base", "open_source": "sources", "SyntheticSource": "sources.synthetic",
    # detection and events
    "Detection": "detections", "Detector": "detections", "DetectionPipeline": "detect.pipeline",
    "build_detector": "detect.detector", "Event": "events", "EventSink": "events", "Tracker": "events",
    "PersonTracker": "person_events", "PrivacyMask": "masks", "Zone": "zones",
    # what hangs off events
    "MqttPublisher": "publish.publisher", "publisher_from_config": "publish.publisher", "Vault": "vault.vault",
    "build_vault": "vault.vault", "SoftwareButton": "button", "GpioButton": "button",
    # running it well: stats, supervised threads, systemd, logging
    "Stats": "stats", "Worker": "worker", "Supervisor": "supervisor", "Notifier": "sd_notify",
    "FailureLog": "lograte",
    # errors (one tree)
    "DoorkeepError": "errors", "ConfigError": "errors", "CaptureError": "errors", "DetectError": "errors",
    "EventError": "errors", "PublishError": "errors", "VaultError": "errors", "ProvisionError": "errors",
}

#: Kept equal to ``_EXPORTS`` (a test checks); a literal so linters and IDEs read it.
__all__ = [
    "CaptureError", "Config", "ConfigError", "DetectError", "Detection", "DetectionPipeline", "Detector", "Device",
    "DeviceIdentity", "Doorbell", "DoorkeepError", "Event", "EventError", "EventSink", "FailureLog", "FrameSource",
    "GpioButton", "MqttPublisher", "Notifier", "PersonTracker", "PrivacyMask", "ProvisionError", "PublishError",
    "SoftwareButton", "Stats", "Supervisor", "SyntheticSource", "Tracker", "Vault", "VaultError", "Worker", "Zone",
    "assemble", "build_detector", "build_vault", "open_source", "publisher_from_config", "stop_on_signals",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        from .errors import UnknownName  # an AttributeError too, as the module __getattr__ protocol needs

        raise UnknownName(f"module {__name__!r} has no attribute {name!r} (the SDK is doorkeep.device.__all__)")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if TYPE_CHECKING:  # the same names, for type checkers and IDEs
    from .app import Doorbell
    from .assembly import Device, assemble
    from .button import GpioButton, SoftwareButton
    from .config import Config
    from .detect.detector import build_detector
    from .detect.pipeline import DetectionPipeline
    from .detections import Detection, Detector
    from .errors import (
        CaptureError,
        ConfigError,
        DetectError,
        DoorkeepError,
        EventError,
        ProvisionError,
        PublishError,
        VaultError,
    )
    from .events import Event, EventSink, Tracker
    from .identity import DeviceIdentity
    from .lograte import FailureLog
    from .loop import stop_on_signals
    from .masks import PrivacyMask
    from .person_events import PersonTracker
    from .publish.publisher import MqttPublisher, publisher_from_config
    from .sd_notify import Notifier
    from .sources import open_source
    from .sources.base import FrameSource
    from .sources.synthetic import SyntheticSource
    from .stats import Stats
    from .supervisor import Supervisor
    from .vault.vault import Vault, build_vault
    from .worker import Worker
    from .zones import Zone
