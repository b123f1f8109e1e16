"""The device's audit records told as a history people can read (one sentence per record, one rule per kind).

Records arrive verified (chain, hash, device signature, heads seen in signed heartbeats — tools/owner_fetch.py);
this module only words them. ``IMPORTANT`` kinds are what the Audit page shows by default: requests, grants,
exports, declines, configuration changes, shredding and anything refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import fmt

IMPORTANT = frozenset({
    "request_received", "request_refused", "request_declined", "grant_accepted", "grant_refused", "export",
    "clip_shredded", "vault_shred_all", "config_applied", "config_refused", "owner_rotated", "paired",
    "pair_refused", "factory_reset", "owner_cmd_refused", "audit_repair", "clip_torn", "clip_discarded",
    "clip_failed", "owner_fetch", "export_failed", "vault_fault", "vault_fault_cleared", "audit_dropped",
    "owner_rotation_refused", "state_permissions_fixed", "clip_shred_failed", "clock_jump", "outbox_reset"})

SHRED_REASONS = {"max_age": "older than the retention period", "max_bytes": "the vault was over its size limit",
                 "disk_full": "the disk was full"}


@dataclass(frozen=True)
class Line:
    index: int
    t: float
    kind: str
    text: str
    tone: str  # info | good | warn | bad
    important: bool


def _s(f: dict[str, Any], key: str, default: str = "?") -> str:
    v = f.get(key)
    return default if v is None or v == "" else str(v)


def _clips(f: dict[str, Any]) -> str:
    n = len(f.get("clips") or [])
    return f"{n} clip{'s' if n != 1 else ''}"


_WORDS: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "boot": ("info", lambda f: f"The device started (version {_s(f, 'version')})."),
    "vault_start": ("info", lambda f: "Recording is on: clips are sealed to your key."),
    "vault_idle": ("warn", lambda f: "Not recording: no owner key is pinned."),
    "event": ("info", lambda f: ("Someone was seen" if f.get("kind") == "person" else "The doorbell rang")
              + ("" if f.get("phase") in ("start", "press") else " (visit ended)") + "."),
    "clip_written": ("info", lambda f: f"Clip {_s(f, 'clip_id')} recorded "
                     f"({fmt.size(f.get('size') or f.get('bytes'))})."),
    "clip_recovered": ("warn", lambda f: f"Clip {_s(f, 'clip_id')} recovered after a power cut."),
    "clip_torn": ("warn", lambda f: f"Clip {_s(f, 'clip_id')} was cut short by a crash."),
    "clip_discarded": ("warn", lambda f: f"Clip {_s(f, 'clip_id')} could not be recovered and was discarded."),
    "clip_failed": ("bad", lambda f: f"Recording clip {_s(f, 'clip_id')} failed: {_s(f, 'error', 'unknown')}."),
    "clip_shredded": ("info", lambda f: f"Clip {_s(f, 'clip_id')} destroyed: "
                      f"{SHRED_REASONS.get(str(f.get('reason')), _s(f, 'reason'))}."),
    "vault_shred_all": ("warn", lambda f: "Every clip was destroyed."),
    "request_received": ("warn", lambda f: f"{_s(f, 'requester')} asked for footage ({_s(f, 'incident')})"
                         + (f": {f['purpose']}" if f.get("purpose") else "") + _window(f) + "."),
    "request_refused": ("bad", lambda f: f"A footage request was refused: {_s(f, 'reason')}."),
    "request_declined": ("good", lambda f: f"You declined request {_s(f, 'request_id')[:12]}…"
                         + (f" ({f['reason']})" if f.get("reason") else "") + "."),
    "grant_accepted": ("good", lambda f: f"Your release of {_clips(f)} to {_s(f, 'recipient_name')} "
                       f"({_s(f, 'requester')}) was accepted: {_s(f, 'purpose')}; valid until "
                       f"{fmt.when(f.get('expires_at'))}."),
    "grant_refused": ("bad", lambda f: f"A release was refused: {_s(f, 'reason')}."),
    "export": ("good", lambda f: f"Footage sent under grant {_s(f, 'grant_id')[:12]}… "
               f"({fmt.size(f.get('bytes'))}, to {_s(f, 'destination')})."),
    "config_applied": ("good", lambda f: f"Configuration #{_s(f, 'counter')} applied"
                       + (f": {', '.join(map(str, f.get('changed') or []))[:200]}" if f.get("changed") else "") + "."),
    "config_refused": ("bad", lambda f: f"A configuration was refused: {_s(f, 'reason')} {_s(f, 'detail', '')}."),
    "owner_rotated": ("warn", lambda f: "The owner key was changed."),
    "paired": ("good", lambda f: "Paired with the owner."),
    "pair_refused": ("bad", lambda f: f"A pairing attempt was refused: {_s(f, 'reason')}."),
    "pair_window_open": ("info", lambda f: "A pairing window was opened."),
    "factory_reset": ("warn", lambda f: "Factory reset."),
    "owner_fetch": ("info", lambda f: f"You fetched the {_s(f, 'part')} of clip {_s(f, 'clip_id')}."),
    "owner_commands": ("info", lambda f: f"{_s(f, 'count', '')} commands from your console handled.".strip()),
    "owner_cmd_refused": ("bad", lambda f: f"Commands NOT from you were refused: {_tally(f)}."),
    "audit_repair": ("warn", lambda f: "A half-written record (power cut) was cut off the log."),
    "export_failed": ("bad", lambda f: f"Sending footage under grant {_s(f, 'grant_id')[:12]}… failed "
                      f"({_s(f, 'reason')}); "
                      + ("the grant is spent." if f.get("spent") else "the grant can be used again.")),
    "vault_fault": ("bad", lambda f: f"Recording stopped: a storage fault ({_s(f, 'errno')} during {_s(f, 'op')}); "
                    "capture and events went on."),
    "vault_fault_cleared": ("good", lambda f: f"Recording resumed: the storage fault ({_s(f, 'errno')}) cleared."),
    "checkpoint": ("info", lambda f: f"Audit log checkpoint after {_s(f, 'count')} records."),
    "audit_dropped": ("warn", lambda f: f"The oldest audit history ({_s(f, 'segments')} segment(s)) was removed to "
                      "keep the log within its size limit; a signed checkpoint vouches for it."),
    "clip_shred_failed": ("bad", lambda f: f"Destroying clip {_s(f, 'clip_id')} failed ({_s(f, 'error')}); "
                          + ("the clip is still whole." if f.get("kept") else "it will be finished later.")),
    "clock_jump": ("warn", lambda f: "The device's clock jumped "
                   + ("back" if float(f.get("jump_s") or 0) < 0 else "forward")
                   + f" by {fmt.duration(abs(float(f.get('jump_s') or 0)))}."),
    "outbox_reset": ("warn", lambda f: f"A damaged event queue was set aside ({_s(f, 'lost', '0')} unsent events "
                     "lost)."),
    "owner_rotation_refused": ("bad", lambda f: f"An owner key change was refused: {_s(f, 'reason')}."),
    "state_permissions_fixed": ("warn", lambda f: f"Permissions of {_s(f, 'path')} were too open "
                                f"({_s(f, 'old')}) and were fixed."),
}


def _window(f: dict[str, Any]) -> str:
    w = f.get("window")
    if isinstance(w, list) and len(w) == 2 and all(isinstance(x, int | float) for x in w):
        return f", for {fmt.when(w[0])} to {fmt.when(w[1])}"
    return ""


def _tally(f: dict[str, Any]) -> str:
    reasons = f.get("reasons")
    if isinstance(reasons, dict) and reasons:
        return ", ".join(f"{n}× {r}" for r, n in sorted(reasons.items()))
    return _s(f, "count", "some")


def describe(index: int, t: float, kind: str, fields: dict[str, Any]) -> Line:
    tone, words = _WORDS.get(kind, ("info", lambda f: f"{kind.replace('_', ' ')}."))
    try:
        text = words(fields)
    except (TypeError, ValueError, KeyError, AttributeError):
        text = f"{kind.replace('_', ' ')} (fields: {', '.join(sorted(fields))})."
    return Line(index, t, kind, text, tone, kind in IMPORTANT)
