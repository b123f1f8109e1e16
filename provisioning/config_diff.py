"""What a configuration change does to a device, in plain words: values changed, zones and privacy masks added,
changed or removed.

The one place that compares two effective configurations (:func:`diff_configs`); ``doorkeep config check`` prints
it. Written minimal for ``config check`` (ux-cli); the add/change/remove semantics of signed documents (#11 item
2: showing them before signing and applying, the explicit flag for removing a privacy mask) extend it here.

Example::

    for change in diff_configs(current, proposed):
        print(change.describe())     # "change capture.fps: 30.0 -> 10.0", "REMOVE privacy mask 'neighbour'"
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from doorkeep.device.config import Config

#: Arrays of named tables, compared entry by entry: config field -> what one entry is called.
NAMED_LISTS = {"zones": "zone", "masks": "privacy mask"}
#: Values never printed (a changed password is reported as changed, nothing more).
SECRET_KEYS = ("mqtt.password",)


@dataclass(frozen=True)
class Change:
    """One difference: ``action`` is ``add``, ``change`` or ``remove``; ``key`` a dotted key path (``capture.fps``)
    or a named list (``masks``) with the entry's ``name``."""

    action: str
    key: str
    old: Any = field(default=None, repr=False)  # values stay out of reprs and logs (mqtt.password)
    new: Any = field(default=None, repr=False)
    name: str = ""

    @property
    def secret(self) -> bool:
        return self.key in SECRET_KEYS

    def describe(self) -> str:
        if self.key in NAMED_LISTS:
            what = f"{NAMED_LISTS[self.key]} {self.name!r}"
            return {"add": f"add {what}", "remove": f"REMOVE {what}"}.get(self.action, f"change {what}")
        if self.secret:
            return f"change {self.key} (not shown)"
        return f"change {self.key}: {_show(self.old)} -> {_show(self.new)}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action, "key": self.key}
        if self.name:
            out["name"] = self.name
        if not self.secret:
            out.update(old=_plain(self.old), new=_plain(self.new))
        return out


def _show(v: Any) -> str:
    return repr(_plain(v))


def _plain(v: Any) -> Any:
    """JSON-ready: tuples as lists, paths as strings."""
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, PurePath):
        return str(v)
    return v


def _flat(cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name in NAMED_LISTS:
            continue
        if dataclasses.is_dataclass(value):
            for g in dataclasses.fields(value):
                out[f"{f.name}.{g.name}"] = getattr(value, g.name)
        else:
            out[f.name] = value
    return out


def diff_configs(old: Config, new: Config) -> list[Change]:
    """Every difference between two configurations: values by key path, then zones and masks by name."""
    a, b = _flat(old), _flat(new)
    changes = [Change("change", k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    for key in NAMED_LISTS:
        before = {e.name: e for e in getattr(old, key)}
        after = {e.name: e for e in getattr(new, key)}
        changes += [Change("remove", key, old=_plain(before[n].polygon), name=n) for n in before if n not in after]
        changes += [Change("add", key, new=_plain(after[n].polygon), name=n) for n in after if n not in before]
        changes += [Change("change", key, old=_plain(before[n].polygon), new=_plain(after[n].polygon), name=n)
                    for n in before if n in after and before[n] != after[n]]
    return changes
