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

import dataclasses
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from doorkeep.device.config import Config
from doorkeep.device.errors import ConfigError, FormatError
from doorkeep.device.identity import KEY_FILE, DeviceIdentity
from doorkeep.device.publish.publisher import OUTBOX_FILE
from doorkeep.device.status_file import STATUS_FILE, read_status
from doorkeep.device.vault.audit import MAX_LINE, parse_record
from doorkeep.device.vault.store import CLIP_SUFFIX, MANIFEST_SUFFIX
from doorkeep.device.vault.vault import AUDIT_FILE, VAULT_DIR

from .device_state import DeviceProvisioning, owner_key_id
from .errors import ProvisionRefused
from .signed_config import LOCAL_TABLES, SignedConfigStore, effective_config
from .state_lock import LOCK_FILE, lock_holder

#: A running service rewrites its status file at least every 30 s; three missed refreshes mean it is stuck.
STALE_AFTER_S = 90.0


def running_config(local: dict[str, Any], config: Config) -> tuple[Config, str | None]:
    """The configuration ``doorkeep run`` would use: on a paired device the local hardware tables plus the stored
    owner-signed document (else the local file as it is), in ``config``'s state directory. Read-only.

    Returns ``(config, problem)``: ``problem`` says why the stored document could not be used (then the local file
    is returned as it is).
    """
    state = config.state_dir
    ident = load_identity(state)
    if ident is None:
        return config, None
    prov = DeviceProvisioning(state, identity=ident, audit=None)  # type: ignore[arg-type]  # read-only
    hw = {k: v for k, v in local.items() if k in LOCAL_TABLES}
    try:
        if prov.owner() is None:
            return config, None
        signed = SignedConfigStore(prov, local=hw).load_table()
        cfg = effective_config(hw, signed)
    except (ProvisionRefused, ConfigError) as exc:
        return config, str(exc)
    return cfg.replace(device=dataclasses.replace(cfg.device, state_dir=config.device.state_dir)), None


def load_identity(state_dir: Path) -> DeviceIdentity | None:
    """The device identity if one exists (never creates one: that is the first ``doorkeep run``'s job)."""
    return DeviceIdentity.load_or_create(state_dir) if (state_dir / KEY_FILE).exists() else None


def _service(state: Path, live: dict[str, Any] | None, now: float) -> dict[str, Any]:
    """Running or not, and why: the status file when fresh, else the state lock and who holds it."""
    holder = lock_holder(state)
    age = None if live is None else round(now - float(live.get("updated_at", 0)), 1)
    pid = live.get("pid") if live else None
    fresh = (live is not None and live.get("state") == "running" and isinstance(pid, int) and _alive(pid)
             and age is not None and age < STALE_AFTER_S)
    if fresh:
        return {"running": True, "pid": pid, "status_age_s": age}
    out: dict[str, Any] = {"running": False, "pid": holder, "status_age_s": age, "note": "not running"}
    if holder is not None:
        who = _lock_text(state) or f"pid {holder}"
        if who.startswith("doorkeep run"):  # the service holds the state: starting up, or stuck
            out["running"] = True
            stuck = live is not None and live.get("state") == "running" and pid == holder
            out["note"] = (f"running (pid {holder}) but its status is {age:.0f} s old: stuck?" if stuck else
                           f"starting (pid {holder}): no status yet")
        else:
            out["note"] = f"not running; the state directory is in use by {who}"
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


def device_status(config: Config, *, local: dict[str, Any] | None = None, now: float | None = None) -> dict[str, Any]:
    """Everything ``doorkeep status`` shows, as JSON-ready values (see the module docstring for the sources).

    ``config`` names the state directory; ``local`` is the device's TOML (for the configuration it runs with).
    """
    now = time.time() if now is None else now
    config, problem = running_config(local or {}, config)
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
            problem = str(exc)
    if problem:
        out["problem"] = problem
    service = _service(state, live, now)
    out["service"] = service
    running = service["running"] and "note" not in service  # live figures only from a fresh status file
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
    out["uptime_s"] = round(now - float(live.get("started_at", now)), 1) if running and live else None
    return out
