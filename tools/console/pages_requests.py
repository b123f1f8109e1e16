"""Requests page: the inbox of footage requests relayed by the device; Approve (sign a grant for the chosen clips
to one recipient key and send it to the device, which exports the bundle to that recipient) or Decline.

Both run on the console's action thread (the device's answer to a grant comes once the export is published) and
update the request's status live; the device audits both (``grant_accepted``/``export``, ``request_declined``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from doorkeep.device.errors import DoorkeepError, InvalidArgument
from doorkeep.device.vault.clips import parse_header
from doorkeep.device.vault.grants import issue_grant
from doorkeep.device.vault.keys import PublicKeys, SecretKeys
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from .timeline import FootageRequest
from .web import Console, console, render, require, require_post

log = logging.getLogger(__name__)

#: Clips this far outside a request's window are still offered (unticked): clocks and memories are imprecise.
NEAR_S = 3600.0
#: How long the device may take to export a bundle before the console calls it failed.
GRANT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Offered:
    clip_id: str
    t_start: float
    t_end: float | None
    snapshot: bool
    in_window: bool


def offered_clips(c: Console, r: FootageRequest) -> list[Offered]:
    """The device's clips overlapping the request's window (ticked) or within an hour of it (unticked)."""
    lo, hi = r.window
    out = []
    for info in (c.link.clips.values() if c.link is not None else []):
        if info.t_start is None:
            continue
        end = info.t_end if info.t_end is not None else info.t_start
        if info.t_start <= hi + NEAR_S and end >= lo - NEAR_S:
            out.append(Offered(info.clip_id, info.t_start, info.t_end, bool(info.snapshot),
                               info.t_start <= hi and end >= lo))
    return sorted(out, key=lambda o: o.t_start)


async def requests_page(request: Request) -> Response:
    require(request)
    c = console(request)
    return render(request, "requests.html", requests=c.state.requests(), error=request.query_params.get("error", ""),
                  matching=lambda r: offered_clips(c, r))


def _request(c: Console, request: Request) -> FootageRequest | None:
    return c.state.request(str(request.path_params["request_id"]))


async def approve(request: Request) -> Response:
    token, form = await require_post(request)
    c = console(request)
    r = _request(c, request)
    if r is None or r.status not in ("pending", "failed"):
        return RedirectResponse("/requests", status_code=303)
    keys = c.session.keys(token)
    clips = [v for k, v in (await request.form()).multi_items() if k == "clip"]
    try:
        recipient = _recipient(r, form)
        days = min(30.0, max(1.0, float(form.get("days") or 7)))
    except (DoorkeepError, ValueError) as exc:
        return RedirectResponse(f"/requests?error={_q(str(exc))}", status_code=303)
    if not clips:
        return RedirectResponse("/requests?error=" + _q("Tick at least one clip to release."), status_code=303)
    c.state.set_request_status(r.request_id, "sending", f"fetching {len(clips)} clip(s) and signing the grant")
    c.actions.submit(_grant, c, keys, r, [str(x) for x in clips], recipient, days)
    return RedirectResponse("/requests", status_code=303)


def _recipient(r: FootageRequest, form: dict[str, Any]) -> PublicKeys:
    if form.get("recipient") == "other":
        text = str(form.get("recipient_key") or "").strip()
        if not text:
            raise InvalidArgument("Paste the recipient's public key (the .pub file from `doorkeep recipient keygen`).")
        return PublicKeys.from_json(json.loads(text), what="recipient key")
    return PublicKeys.from_json(r.recipient_key, what="requester key")


def _grant(c: Console, keys: SecretKeys, r: FootageRequest, clip_ids: list[str], recipient: PublicKeys,
           days: float) -> None:
    """Fetch each chosen clip (its sealed key is in its header), sign the grant, send it, record the verdict."""
    try:
        sealed = {}
        for clip_id in clip_ids:
            sealed[clip_id] = parse_header(c.media.ciphertext(clip_id)[:8192]).sealed_key
        grant = issue_grant(keys, device_id=c.device_id, sealed_keys=sealed, recipient=recipient,
                            recipient_name=r.requester, purpose=r.purpose, requester=r.requester,
                            request_id=r.request_id, lifetime_s=int(days * 86400))
        c.state.set_request_status(r.request_id, "sending", "the device is exporting the clips to the recipient")
        verdict = c.link.require().send_grant(grant.to_bytes(), timeout=GRANT_TIMEOUT_S)
    except DoorkeepError as exc:
        log.warning("console: grant for request %s failed: %s", r.request_id, exc)
        c.state.set_request_status(r.request_id, "failed", str(exc))
        return
    if verdict.ok:
        c.state.set_request_status(r.request_id, "approved", f"{len(clip_ids)} clip(s) sent, grant "
                                   f"{grant.grant_id[:12]}…, valid {days:g} days")
    else:
        c.state.set_request_status(r.request_id, "failed", f"the device refused the grant: {verdict.reason}")


async def decline(request: Request) -> Response:
    _token, form = await require_post(request)
    c = console(request)
    r = _request(c, request)
    if r is None or r.status != "pending":
        return RedirectResponse("/requests", status_code=303)
    reason = str(form.get("reason") or "")[:200]
    c.state.set_request_status(r.request_id, "sending", "telling the device")
    c.actions.submit(_decline, c, r, reason)
    return RedirectResponse("/requests", status_code=303)


def _decline(c: Console, r: FootageRequest, reason: str) -> None:
    try:
        verdict = c.link.require().decline_request(r.request_id, reason)
    except DoorkeepError as exc:
        c.state.set_request_status(r.request_id, "pending", f"could not reach the device: {exc}")
        return
    if verdict.ok:
        c.state.set_request_status(r.request_id, "declined", reason or "no reason given")
    else:
        c.state.set_request_status(r.request_id, "pending", f"the device refused: {verdict.reason}")


async def owner_public_key(request: Request) -> Response:
    """The owner's public key file, to hand to recipients: their ``doorkeep decrypt --owner FILE`` (or ``doorkeep
    recipient trust FILE``) checks against it that a release really came from the owner."""
    token = require(request)
    pub = console(request).session.keys(token).public
    return Response(pub.to_bytes(), media_type="application/json",
                    headers={"content-disposition": 'attachment; filename="owner.key.pub"'})


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text[:300])


def routes() -> list[Route]:
    return [Route("/requests", requests_page), Route("/requests/{request_id}/approve", approve, methods=["POST"]),
            Route("/requests/{request_id}/decline", decline, methods=["POST"]),
            Route("/owner.key.pub", owner_public_key)]
