"""The owner's side of the pairing: which devices this owner paired, their pinned keys and the next counter.

One JSON file (default ``~/.config/doorkeep/devices.json``, 0600, written atomically). The owner's tool refuses to
sign for a device it has not paired, and numbers every owner-signed document from here, so counters stay monotonic
per device. Format: docs/formats.md ("Provisioning: owner-side device book").

Example::

    book = DeviceBook.load(DeviceBook.default_path())
    book.pin(paired.device_id, paired.device_key, counter=paired.counter)
    counter = book.next_counter(paired.device_id)   # persisted before it is used
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from doorkeep.device.errors import FormatError
from doorkeep.device.identity import device_id_for, fingerprint_for
from doorkeep.device.vault import codec

from .errors import MalformedDocument, NotPaired, PairingMismatch
from .files import make_dirs, write_atomic

FORMAT = "doorkeep/owner-devices"
VERSION = 1


@dataclass(frozen=True)
class PinnedDevice:
    """A device this owner paired."""

    device_id: str
    key: bytes
    counter: int
    paired_at: int

    @property
    def fingerprint(self) -> str:
        return fingerprint_for(self.key)


class DeviceBook:
    """The owner's pinned device keys (one file)."""

    def __init__(self, path: str | os.PathLike[str], devices: dict[str, PinnedDevice] | None = None, *,
                 pending: list[bytes] | None = None) -> None:
        self.path = Path(path)
        self.devices: dict[str, PinnedDevice] = dict(devices or {})
        #: Nonces of boot-partition pairing files written but not yet answered by a device receipt.
        self.pending: list[bytes] = list(pending or [])

    @staticmethod
    def default_path() -> Path:
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return Path(base) / "doorkeep" / "devices.json"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DeviceBook:
        """Read the book (an absent file is an empty book)."""
        p = Path(path)
        if not p.exists():
            return cls(p)
        try:
            f = codec.Fields(codec.parse_json(p.read_bytes(), what=str(p)), what=str(p))
            f.header(FORMAT, VERSION)
            f.only("format", "v", "devices", "pending")
            pending = [codec.b64d(n, what=f"{p} pending", length=32) for n in f.items("pending", max_len=64)]
            devices = {}
            for item in f.items("devices"):
                d = codec.Fields(item, what=f"{p} device")
                d.only("id", "key", "counter", "paired_at")
                key = d.b64("key", length=32)
                dev_id = d.text("id", max_len=64)
                if device_id_for(key) != dev_id:
                    raise FormatError(f"{p}: device {dev_id} does not match its key")
                devices[dev_id] = PinnedDevice(dev_id, key, d.integer("counter"), d.integer("paired_at"))
        except FormatError as exc:
            raise MalformedDocument(str(exc)) from None
        return cls(p, devices, pending=pending)

    def save(self) -> None:
        make_dirs(self.path.parent)  # ~/.config/doorkeep: 0700
        items: list[dict[str, Any]] = [
            {"id": d.device_id, "key": codec.b64e(d.key), "counter": d.counter, "paired_at": d.paired_at}
            for d in sorted(self.devices.values(), key=lambda d: d.device_id)
        ]
        write_atomic(self.path, codec.canonical({"format": FORMAT, "v": VERSION, "devices": items,
                                                   "pending": [codec.b64e(n) for n in self.pending]}) + b"\n")

    def pin(self, device_id: str, key: bytes, *, counter: int = 0) -> PinnedDevice:
        """Pin a device key after pairing (re-pairing the same key keeps the higher counter)."""
        if device_id_for(key) != device_id:
            raise PairingMismatch(f"device id {device_id} does not belong to this key")
        old = self.devices.get(device_id)
        dev = PinnedDevice(device_id, key, max(counter, old.counter if old else 0), int(time.time()))
        self.devices[device_id] = dev
        self.save()
        return dev

    def get(self, device_id: str) -> PinnedDevice:
        try:
            return self.devices[device_id]
        except KeyError:
            known = ", ".join(sorted(self.devices)) or "none"
            raise NotPaired(f"device {device_id} is not paired with this owner (paired: {known})") from None

    def only(self) -> PinnedDevice:
        """The single paired device (for commands where ``--device-id`` may be omitted)."""
        if len(self.devices) != 1:
            raise NotPaired(f"{len(self.devices)} devices paired; name one with --device-id")
        return next(iter(self.devices.values()))

    def next_counter(self, device_id: str) -> int:
        """Reserve and persist the next counter for ``device_id`` (saved before the document is signed)."""
        dev = self.get(device_id)
        nxt = PinnedDevice(dev.device_id, dev.key, dev.counter + 1, dev.paired_at)
        self.devices[device_id] = nxt
        self.save()
        return nxt.counter
