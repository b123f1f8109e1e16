"""What ``doorkeep status`` shows: read from the state directory only — no control socket, nothing created.

Sources: the identity (``device.key``, its public half), the pinned owner (``owner.pub``), the signed-config
counter (``provisioning.json``), the vault directory (clips and bytes), the outbox database (backlog, read-only),
the audit log's last record, and ``status.json`` — what the running service writes (device/status_file.py): day or
night, MQTT connected or not, the last event. Whether the service runs comes from the state lock (held by
``doorkeep run`` for its whole life; read from ``/proc/locks``, never taken) and the status file's age and pid.

Example::

    report = device_status(Config.from_toml("/etc/doorkeep/doorkeep.toml"))
    print(report["service"]["running"], report["mqtt"])
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from doorkeep.device.config import Config
from doorkeep.device.errors import FormatError
from doorkeep.device.identity import KEY_FILE, DeviceIdentity
from doorkeep.device.publish.publisher import OUTBOX_FILE
from doorkeep.device.status_file import STATUS_FILE, read_status
from doorkeep.device.vault.audit import MAX_LINE, parse_record
from doorkeep.device.vault.store import CLIP_SUFFIX, MANIFEST_SUFFIX
from doorkeep.device.vault.vault import AUDIT_FILE, VAULT_DIR

from .device_state import DeviceProvisioning, owner_key_id
from .errors import ProvisionRefused
from .state_lock import LOCK_FILE, lock_holder

#: A running service rewrites its status file at least every 30 s; three missed refreshes mean it is stuck.
STALE_AFTER_S = 90.0


def load_identity(state_dir: Path) -> DeviceIdentity | None:
    """The device identity if one exists (never creates one: that is the first ``doorkeep run``'s job)."""
    return DeviceIdentity.load_or_create(state_dir) if (state_dir / KEY_FILE).exists() else None


def _service(state: Path, live: dict[str, Any] | None, now: float) -> dict[str, Any]:
    holder = lock_holder(state)
    age = None if live is None else round(now - float(live.get("updated_at", 0)), 1)
    pid = live.get("pid") if live else None
    live_pid = isinstance(pid, int) and _alive(pid)
    fresh = age is not None and age < STALE_AFTER_S
    running = live is not None and live.get("state") == "running" and live_pid and fresh
    out: dict[str, Any] = {"running": bool(running), "pid": pid if running else holder, "status_age_s": age}
    if holder is not None and not running:
        who = _lock_text(state) or f"pid {holder}"
        if live is not None and live.get("state") == "running" and holder == pid:
            out["note"] = f"running (pid {pid}) but its status is {age:.0f} s old: stuck?"
        else:
            out["note"] = f"not running; the state directory is in use by {who}"
    elif not running:
        out["note"] = "not running"
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _lock_text(state: Path) -> str:
    try:
        return (state / LOCK_FILE).read_text(errors="replace").strip()[:200]
    except OSError:
        return ""


def _vault(config: Config) -> dict[str, Any]:
    d = Path(config.vault.dir).expanduser() if config.vault.dir else config.state_dir / VAULT_DIR
    clips = sorted(d.glob("*" + CLIP_SUFFIX)) if d.is_dir() else []
    size = sum(p.stat().st_size for p in clips)
    size += sum(p.stat().st_size for p in d.glob("*" + MANIFEST_SUFFIX)) if d.is_dir() else 0
    return {"dir": str(d), "clips": len(clips), "bytes": size}


def outbox_backlog(path: Path) -> int | None:
    """Rows waiting in the outbox database, read-only (``None``: no outbox yet or unreadable)."""
    if not path.exists():
        return None
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2.0) as db:
            (n,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(n)
    except sqlite3.Error:
        return None


def audit_tail(path: Path) -> dict[str, Any] | None:
    """The audit log's last record (index, time, kind) — not verified (``doorkeep audit verify`` does that)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 2 * MAX_LINE))
            data = f.read()
    except FileNotFoundError:
        return None
    for line in reversed(data.splitlines()):
        try:
            rec = parse_record(line)
        except FormatError:
            continue  # a torn last line, or the cut-off first one
        return {"records": rec.index + 1, "last_kind": rec.kind, "last_t": rec.t}
    return None


def device_status(config: Config, *, now: float | None = None) -> dict[str, Any]:
    """Everything ``doorkeep status`` shows, as JSON-ready values (see the module docstring for the sources)."""
    now = time.time() if now is None else now
    state = config.state_dir
    ident = load_identity(state)
    out: dict[str, Any] = {"state_dir": str(state), "identity": None, "owner": None, "config_counter": 0}
    try:
        live = read_status(state / STATUS_FILE)
    except FormatError:
        live = None
    if ident is not None:
        out["identity"] = {"device_id": ident.device_id, "fingerprint": ident.fingerprint,
                           "public_key": ident.public_bytes.hex()}
        prov = DeviceProvisioning(state, identity=ident, audit=None)  # type: ignore[arg-type]  # read-only
        try:
            owner = prov.owner()
            out["owner"] = {"key_id": owner_key_id(owner)} if owner is not None else None
            out["config_counter"] = prov.last_counter()
        except ProvisionRefused as exc:
            out["problem"] = str(exc)
    service = _service(state, live, now)
    out["service"] = service
    running = service["running"]
    out["mode"] = live.get("mode") if live else None
    mqtt = dict(live.get("mqtt") or {}) if live else {}
    if not running:
        mqtt.pop("connected", None)  # only a running service is connected to anything
    if not mqtt:
        mqtt = {"enabled": config.mqtt.enabled, "host": config.mqtt.host, "port": config.mqtt.port}
    mqtt["backlog"] = mqtt.get("backlog") if running else outbox_backlog(state / OUTBOX_FILE)
    out["mqtt"] = mqtt
    out["vault"] = _vault(config)
    out["last_event"] = live.get("last_event") if live else None
    out["audit"] = audit_tail(state / AUDIT_FILE)
    out["uptime_s"] = live.get("uptime_s") if running and live else None
    return out
