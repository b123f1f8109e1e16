"""Settings page: masks and zones drawn on the device's live (already masked) view, thresholds and retention,
saved as an owner-signed configuration document that the device verifies, applies and answers (its verdict shown).

A configuration document replaces the policy tables it names, so the page starts from the configuration the
device has applied (fetched over the owner channel and re-verified here: our own signature, this device) and
changes only what the page edits; broker settings and everything else travel unchanged. The counter comes from
the owner's device book, raised past the device's when the device is ahead (another tool signed meanwhile).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from doorkeep.device.config import Config
from doorkeep.device.errors import DoorkeepError, InvalidArgument
from doorkeep.provisioning.documents import KIND_CONFIG, OwnerDocument
from doorkeep.provisioning.errors import ProvisionRefused
from doorkeep.provisioning.owner_state import DeviceBook
from doorkeep.provisioning.signed_config import sign_config
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .link import NotConnected
from .web import Console, console, render, require, require_post

log = logging.getLogger(__name__)


def applied_table(c: Console, owner_sign: bytes) -> tuple[dict[str, Any], int]:
    """The configuration table the device applied and its counter ({} and 0 when none, or none readable).

    Re-verified on the owner side: signed by this owner for this device (the device could send anything).
    """
    link = c.link.require()
    getter = getattr(link, "get_config", None)
    data = getter() if getter is not None else None
    if not data:
        return dict(c.extras.get("last_table") or {}), int(c.extras.get("last_counter") or 0)
    doc = OwnerDocument.from_bytes(data)
    doc.verify(kind=KIND_CONFIG, pinned_owner=owner_sign, device_id=c.device_id, last_counter=0)
    table = doc.body.get("config")
    return (dict(table) if isinstance(table, dict) else {}), doc.counter


def page_values(table: dict[str, Any]) -> dict[str, Any]:
    """What the page edits, from a configuration table (defaults where it says nothing)."""
    cfg = Config.from_dict({k: v for k, v in table.items() if k not in ("device", "capture")})
    return {"masks": [{"name": m.name, "polygon": [list(p) for p in m.polygon]} for m in cfg.masks],
            "zones": [{"name": z.name, "polygon": [list(p) for p in z.polygon]} for z in cfg.zones],
            "threshold": cfg.detect.threshold, "end_after_s": cfg.events.end_after_s,
            "max_age_days": cfg.vault.max_age_days, "max_gb": round(cfg.vault.max_bytes / 1e9, 3)}


def edited_table(table: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """``table`` with the page's edits laid on it (other tables and keys kept as they are; a value the owner left
    as it was is not written, so the document says only what the owner chose)."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in table.items()}
    was = page_values(table)

    def put(section: str, key: str, value: Any, page_key: str) -> None:
        if value != was[page_key] or key in (out.get(section) or {}):
            out.setdefault(section, {})[key] = value

    def shapes(key: str) -> list[dict[str, Any]]:
        items = body.get(key) or []
        if not isinstance(items, list):
            raise InvalidArgument(f"{key} must be a list")
        return [{"name": str(s.get("name", ""))[:20].strip() or key[:-1], "polygon": s.get("polygon")}
                for s in items if isinstance(s, dict)]

    for key in ("masks", "zones"):
        new = shapes(key)
        if new or key in out:
            out[key] = new
    put("detect", "threshold", float(body["threshold"]), "threshold")
    put("events", "end_after_s", float(body["end_after_s"]), "end_after_s")
    put("vault", "max_age_days", float(body["max_age_days"]), "max_age_days")
    if float(body["max_gb"]) != was["max_gb"] or "max_bytes" in (out.get("vault") or {}):
        out.setdefault("vault", {})["max_bytes"] = int(float(body["max_gb"]) * 1e9)
    if not out.get("zones") and (out.get("events") or {}).get("require_zone"):
        out["events"]["require_zone"] = False  # the loader refuses require_zone without zones
    return out


async def settings_page(request: Request) -> Response:
    token = require(request)
    c = console(request)
    keys = c.session.keys(token)
    error = ""
    try:
        table, _counter = await asyncio.to_thread(applied_table, c, keys.public.sign)
    except (DoorkeepError, ValueError) as exc:
        table, error = {}, f"Could not read the device's current configuration: {exc}"
    return render(request, "settings.html", current_json=json.dumps(page_values(table)), error=error)


async def view(request: Request) -> Response:
    """The camera's current view, masked by the device, sealed to the owner and opened here."""
    require(request)
    c = console(request)
    try:
        snap = await asyncio.to_thread(lambda: c.link.require().live_snapshot())
    except DoorkeepError as exc:
        log.warning("console: no live view: %s", exc)
        return Response(status_code=503)
    return Response(snap.jpeg, media_type="image/jpeg")


async def save(request: Request) -> Response:
    token, body = await require_post(request)
    c = console(request)
    keys = c.session.keys(token)
    try:
        verdict = await asyncio.to_thread(_sign_and_send, c, keys, body)
    except NotConnected as exc:
        return JSONResponse({"ok": False, "reason": "not-connected", "detail": str(exc)})
    except (KeyError, TypeError, ValueError) as exc:
        return JSONResponse({"ok": False, "reason": "invalid", "detail": f"the page sent {exc!s}"})
    except ProvisionRefused as exc:  # refused here, before a counter went to the device
        return JSONResponse({"ok": False, "reason": exc.reason, "detail": str(exc)})
    except DoorkeepError as exc:
        return JSONResponse({"ok": False, "reason": "error", "detail": str(exc)})
    return JSONResponse(verdict)


def _sign_and_send(c: Console, keys: Any, body: dict[str, Any]) -> dict[str, Any]:
    table, device_counter = applied_table(c, keys.public.sign)
    new = edited_table(table, body)
    book = DeviceBook.load(c.extras["book"])
    book.pin(c.device_id, c.device_key, counter=device_counter)  # never below what the device applied
    # Removing a privacy mask is signed as such only when the owner ticked it (the device refuses it otherwise).
    removal = body.get("allow_mask_removal") is True and bool(removes_masks(table, new))
    doc = sign_config(new, device_id=c.device_id, counter=book.next_counter(c.device_id), keys=keys,
                      allow_mask_removal=removal)
    verdict = c.link.require().apply_config(doc.to_bytes())
    if verdict.ok:
        c.extras["last_table"], c.extras["last_counter"] = new, doc.counter
    result = dict(verdict.result or {})
    return {"ok": verdict.ok, "reason": verdict.reason, "detail": verdict.detail,
            "counter": result.get("counter", doc.counter), "changed": result.get("changed", [])}


def removes_masks(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The privacy masks ``new`` takes away from ``old`` — the device's own rule (provisioning/config_diff.py)."""
    from doorkeep.device.config import Config
    from doorkeep.provisioning.config_diff import diff_configs, removed_masks

    return removed_masks(diff_configs(Config.from_dict(old), Config.from_dict(new), new_table=new))


def routes() -> list[Route]:
    return [Route("/settings", settings_page, methods=["GET"]), Route("/settings", save, methods=["POST"]),
            Route("/settings/view.jpg", view)]
