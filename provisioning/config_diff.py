"""What a configuration change does to a device, in plain words: values changed, zones and privacy masks added,
changed or removed.

The one place that compares two effective configurations (:func:`diff_configs`) and says it (:func:`report`). A
signed configuration document is the device's **whole policy** (docs/config.md, "What a signed document changes"):
whatever it does not set returns to its default, and a zone or privacy mask it does not list is removed. So every
owner tool shows this report before the document takes effect — ``config sign`` (against the last document signed
on the owner's machine), ``config check`` / ``config apply`` / the running device (against the policy in force),
``config push`` — and a document that removes a privacy mask is refused (:class:`MaskRemoval`) unless the owner
signed it with ``--allow-mask-removal`` (:func:`check_mask_removal`, the one rule, on both sides).

Example::

    changes = diff_configs(current, proposed, new_table=table)
    for line in report(changes):
        print(line)      # "this removes 1 privacy mask: neighbour's window", "change capture.fps: 30.0 -> 10.0"
    check_mask_removal(changes, allowed=False)   # raises MaskRemoval naming the masks
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from doorkeep.device.config import Config

from .errors import MaskRemoval

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
    #: A value the new document no longer sets: it returns to its default.
    unset: bool = False

    @property
    def secret(self) -> bool:
        return self.key in SECRET_KEYS

    def describe(self) -> str:
        if self.key in NAMED_LISTS:
            what = f"{NAMED_LISTS[self.key]} {self.name!r}"
            return {"add": f"add {what}", "remove": f"REMOVE {what}"}.get(self.action, f"change {what}")
        if self.secret:
            return f"change {self.key} (not shown)"
        back = " (the document does not set it: back to the default)" if self.unset else ""
        return f"change {self.key}: {_show(self.old)} -> {_show(self.new)}{back}"

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


def _table_keys(table: dict[str, Any]) -> set[str]:
    return {f"{sec}.{k}" for sec, val in table.items() if isinstance(val, dict) for k in val} | set(table)


def diff_configs(old: Config, new: Config, *, new_table: dict[str, Any] | None = None) -> list[Change]:
    """Every difference between two configurations: values by key path, then zones and masks by name.

    ``new_table``: the signed table that yields ``new``; a changed value it does not set is marked ``unset`` (it
    went back to its default because the document is a whole policy)."""
    a, b = _flat(old), _flat(new)
    sets = _table_keys(new_table) if new_table is not None else None
    changes = [Change("change", k, a.get(k), b.get(k), unset=sets is not None and k not in sets)
               for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]
    for key in NAMED_LISTS:
        before = {e.name: e for e in getattr(old, key)}
        after = {e.name: e for e in getattr(new, key)}
        changes += [Change("remove", key, old=_plain(before[n].polygon), name=n) for n in before if n not in after]
        changes += [Change("add", key, new=_plain(after[n].polygon), name=n) for n in after if n not in before]
        changes += [Change("change", key, old=_plain(before[n].polygon), new=_plain(after[n].polygon), name=n)
                    for n in before if n in after and before[n] != after[n]]
    return changes


#: Order of the plain-words summary: what is taken away first, it is what an owner must not miss.
_VERBS = (("remove", "removes"), ("add", "adds"), ("change", "changes the shape of"))


def report(changes: list[Change]) -> list[str]:
    """The changes in plain words, one line each: zones and privacy masks removed/added/reshaped by name first
    ("this removes 1 privacy mask: neighbour's window"), then every value ("change capture.fps: 30.0 -> 10.0")."""
    lines = []
    for action, verb in _VERBS:
        for key in ("masks", "zones"):
            names = [c.name for c in changes if c.key == key and c.action == action]
            if names:
                what = NAMED_LISTS[key] + ("s" if len(names) > 1 else "")
                lines.append(f"this {verb} {len(names)} {what}: {', '.join(names)}")
    return lines + [c.describe() for c in changes if c.key not in NAMED_LISTS]


def removed_masks(changes: list[Change]) -> list[str]:
    return [c.name for c in changes if c.key == "masks" and c.action == "remove"]


def check_mask_removal(changes: list[Change], *, allowed: bool) -> None:
    """A privacy mask leaves a device's policy only when its owner said so explicitly.

    Raises:
        MaskRemoval: ``changes`` remove a mask and ``allowed`` is False (the message names the masks).
    """
    names = removed_masks(changes)
    if names and not allowed:
        what = "privacy mask" + ("s" if len(names) > 1 else "")
        raise MaskRemoval(f"this removes {len(names)} {what}: {', '.join(names)} (a signed configuration is the "
                          "whole policy: list the mask again to keep it, or sign with --allow-mask-removal to remove "
                          "it)")
