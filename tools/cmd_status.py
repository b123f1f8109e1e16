"""Device views that change nothing: ``status``, ``identity show`` and ``config check``.

``status`` reads the state directory (provisioning/device_status.py) — run it as the service user:
``sudo -u doorkeep doorkeep status --config /etc/doorkeep/doorkeep.toml``. ``identity show`` prints the device id
and its public key in the form ``doorkeep events --device-key`` takes. ``config check FILE`` validates a settings
file (TOML, as for ``config sign``) or a signed document and lists what it would change on this device.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, NoReturn

from doorkeep.tools.cmd_vault import _config, _state_args


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("status", help="device: what the doorbell is doing (identity, owner, MQTT, mode, clips, ...)",
                       description="Reads the state directory (no socket, nothing changed): run it as the service "
                       "user, e.g. sudo -u doorkeep doorkeep status --config /etc/doorkeep/doorkeep.toml")
    _state_args(p)
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_status)

    i = sub.add_parser("identity", help="device: the device id and public key")
    isub = i.add_subparsers(dest="identity_cmd", metavar="ACTION", required=True)
    s = isub.add_parser("show", help="print the device id, fingerprint and PUBLIC key (for doorkeep events)")
    _state_args(s)
    s.add_argument("--json", action="store_true")
    s.add_argument("--public-key", action="store_true", help="print only the public key (64 hex characters)")
    s.set_defaults(func=_identity_show)


def add_config_check(cs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``config check`` (registered by cmd_provision beside sign/apply/push)."""
    c = cs.add_parser("check", help="device: validate a settings file or signed document; show what it would change",
                      description="FILE is a settings TOML (the tables `config sign` takes) or a signed document. "
                      "Nothing is applied, stored or audited.")
    c.add_argument("file", type=Path)
    _state_args(c)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=_config_check)


# ------------------------------------------------------------------------------------------------ status
def _when(t: float | None, now: float) -> str:
    from doorkeep.tools.console.fmt import ago, when

    return f"{when(t)} ({ago(t, now=now)})" if t else "-"


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n} bytes"


def _status(args: argparse.Namespace) -> int:
    import time

    from doorkeep.provisioning.device_status import device_status
    from doorkeep.provisioning.signed_config import load_local_toml
    from doorkeep.tools.console.fmt import duration

    cfg = _config(args)
    try:
        st = device_status(cfg, local=load_local_toml(args.config) if args.config else {})
    except PermissionError as exc:
        _unreadable(cfg.state_dir, exc)
    if args.json:
        print(json.dumps(st, sort_keys=True))
        return 0
    now = time.time()
    ident, svc, mqtt = st["identity"], st["service"], st["mqtt"]
    rows: list[tuple[str, str]] = []
    rows.append(("device", f"{ident['device_id']}  fingerprint {ident['fingerprint']}" if ident else
                 f"no identity yet in {st['state_dir']} (the first `doorkeep run` creates it)"))
    live = svc["running"] and "note" not in svc  # a fresh status file: the figures below are current
    if live:
        rows.append(("service", f"running (pid {svc['pid']}, up {duration(st.get('uptime_s') or 0)})"))
    else:
        rows.append(("service", svc.get("note", "not running")))
    rows.append(("owner", f"paired (owner key {st['owner']['key_id']})" if st["owner"] else
                 "NOT paired: run `doorkeep pair --device`"))
    rows.append(("config", f"signed configuration #{st['config_counter']} applied" if st["config_counter"] else
                 "no signed configuration applied (local file and defaults)"))
    if "problem" in st:
        rows.append(("PROBLEM", st["problem"]))
    where = f"{mqtt.get('host')}:{mqtt.get('port')}"
    if not mqtt.get("enabled", True):
        rows.append(("mqtt", "disabled ([mqtt] enabled = false)"))
    elif "connected" in mqtt:
        rows.append(("mqtt", f"connected to {where}" if mqtt["connected"] else
                     f"NOT connected to {where} (events wait in the outbox)"))
    else:
        rows.append(("mqtt", f"{where} ({'not reported yet' if svc['running'] else 'service not running'})"))
    backlog = mqtt.get("backlog")
    rows.append(("outbox", "no outbox yet" if backlog is None else f"{backlog} message(s) waiting to be sent"))
    rows.append(("mode", st["mode"] if st["mode"] and live else
                 f"{st['mode']} when last seen" if st["mode"] else "-"))
    v = st["vault"]
    rows.append(("clips", f"{v['clips']} clip(s), {_size(v['bytes'])} in {v['dir']}"))
    ev = st["last_event"]
    rows.append(("last event", f"{ev['kind']} {ev['phase']} at {_when(ev['t'], now)}"
                 + (f", zone {ev['zone']}" if ev.get("zone") else "") if ev else "none seen by the service"))
    a = st["audit"]
    rows.append(("audit log", f"{a['records']} records, last: {a['last_kind']} at {_when(a['last_t'], now)}" if a
                 else "empty"))
    for k, val in rows:
        print(f"{k:<11} {val}")
    return 0


def _unreadable(state: Path, exc: OSError) -> NoReturn:
    from doorkeep.device.errors import ProvisionError

    raise ProvisionError(f"cannot read the state directory {state} ({exc.strerror}: {exc.filename}); run this as "
                         "the service user, e.g. sudo -u doorkeep doorkeep status --config /etc/doorkeep/doorkeep.toml"
                         ) from None


# ------------------------------------------------------------------------------------------------ identity
def _identity_show(args: argparse.Namespace) -> int:
    from doorkeep.device.errors import ProvisionError
    from doorkeep.provisioning.device_status import load_identity

    cfg = _config(args)
    try:
        ident = load_identity(cfg.state_dir)
    except PermissionError as exc:
        _unreadable(cfg.state_dir, exc)
    if ident is None:
        raise ProvisionError(f"no device identity in {cfg.state_dir} yet: the first `doorkeep run` (or "
                            "`doorkeep pair --device`) creates it")
    pub = ident.public_bytes.hex()
    if args.public_key:
        print(pub)
    elif args.json:
        print(json.dumps({"device_id": ident.device_id, "fingerprint": ident.fingerprint, "public_key": pub}))
    else:
        print(f"device id    {ident.device_id}\nfingerprint  {ident.fingerprint}\npublic key   {pub}")
        print(f"hub: doorkeep events --broker HOST --device-key {pub}")
    return 0


# ------------------------------------------------------------------------------------------------ config check
def _config_check(args: argparse.Namespace) -> int:
    from doorkeep.device.errors import InvalidArgument, ProvisionError
    from doorkeep.provisioning.config_diff import diff_configs, removed_masks, report
    from doorkeep.provisioning.device_state import DeviceProvisioning
    from doorkeep.provisioning.device_status import load_identity, running_config
    from doorkeep.provisioning.signed_config import (
        LOCAL_TABLES,
        SignedConfigStore,
        load_local_toml,
        validate_table,
    )

    if not args.file.is_file():
        raise InvalidArgument(f"{args.file}: no such file")
    local = load_local_toml(args.config) if args.config else {}
    current, problem = running_config(local, _config(args))
    if problem:
        raise ProvisionError(f"the device's own configuration is unusable, so no comparison: {problem}")
    cfg = current
    hw = {k: v for k, v in local.items() if k in LOCAL_TABLES}
    ident = load_identity(cfg.state_dir)
    prov = DeviceProvisioning(cfg.state_dir, identity=ident, audit=None) if ident else None  # type: ignore[arg-type]
    store = SignedConfigStore(prov, local=hw) if prov is not None else None
    data = args.file.read_bytes()
    out: dict[str, Any] = {"file": str(args.file), "device_id": ident.device_id if ident else None}
    if data.lstrip().startswith(b"{"):  # a signed document: check it exactly as `config apply` would
        if store is None:
            raise ProvisionError(f"no device identity in {cfg.state_dir}: a signed document cannot be checked here")
        doc, proposed = store.check(data)
        out.update(kind="signed", counter=doc.counter, last_counter=prov.last_counter())  # type: ignore[union-attr]
        verdict = (f"signed by the pinned owner for this device, counter #{doc.counter} (last applied "
                   f"#{out['last_counter']}): `config apply` would accept it")
        table = doc.body["config"]
    else:
        table = load_local_toml(args.file)
        proposed = validate_table(table, local=hw)
        out.update(kind="settings")
        verdict = "valid settings"
    changes = diff_configs(current, proposed, new_table=table)
    out.update(valid=True, changes=[c.to_json() for c in changes])
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    where = f"this device ({ident.device_id})" if ident else f"a device with state in {cfg.state_dir}"
    print(f"{args.file}: {verdict}")
    if not changes:
        print(f"no change on {where}")
    else:
        print(f"on {where} (a signed configuration is the whole policy):")
        for line in report(changes):
            print(f"  {line}")
    if out["kind"] == "settings" and removed_masks(changes):
        print("signing it removes privacy masks: `doorkeep config sign` refuses it without --allow-mask-removal")
    return 0
