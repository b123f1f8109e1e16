"""Clip page, its MP4 (served from memory, with byte ranges so the player can seek), download, and thumbnails."""

from __future__ import annotations

import asyncio
import re

from doorkeep.device.errors import DoorkeepError
from doorkeep.device.vault.clips import check_clip_id
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import fmt
from .web import console, render, require

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def _clip_id(request: Request) -> str:
    try:
        return check_clip_id(request.path_params["clip_id"])
    except DoorkeepError:
        raise _NotFound() from None


class _NotFound(DoorkeepError):
    """No clip by that id (or not a clip id at all)."""


async def clip_page(request: Request) -> Response:
    require(request)
    c = console(request)
    clip_id = _clip_id(request)
    c.media.prepare(clip_id)
    job = c.media.job(clip_id)
    return render(request, "clip.html", clip_id=clip_id, info=c.link.clips.get(clip_id),
                  manifest=job.manifest if job is not None and job.state == "ready" else None)


async def clip_status(request: Request) -> Response:
    require(request)
    c = console(request)
    clip_id = _clip_id(request)
    job = c.media.job(clip_id) or c.media.prepare(clip_id)
    out = job.as_json()
    if job.state == "ready":
        out["facts_html"] = request.app.state.templates.get_template("_manifest.html").render(
            manifest=job.manifest, info=None, fmt=fmt)
    return JSONResponse(out)


def ranged(request: Request, data: bytes, *, media_type: str, filename: str = "") -> Response:
    """``data`` whole (200) or the one byte range asked for (206), as players expect."""
    headers = {"accept-ranges": "bytes"}
    if filename:
        headers["content-disposition"] = f'attachment; filename="{filename}"'
    m = _RANGE.match(request.headers.get("range", "").strip())
    if m is None or filename:
        return Response(data, media_type=media_type, headers=headers)
    n = len(data)
    first, last = m.groups()
    if first == "":
        start, end = max(0, n - int(last or 0)), n - 1
    else:
        start, end = int(first), min(int(last) if last else n - 1, n - 1)
    if start >= n or start > end:
        return Response(status_code=416, headers={"content-range": f"bytes */{n}"})
    headers["content-range"] = f"bytes {start}-{end}/{n}"
    return Response(data[start:end + 1], status_code=206, media_type=media_type, headers=headers)


async def clip_video(request: Request) -> Response:
    require(request)
    clip_id = _clip_id(request)
    data = console(request).media.mp4(clip_id)
    if data is None:
        return JSONResponse({"error": "not fetched yet"}, status_code=404)
    download = request.url.path.endswith("/download")
    return ranged(request, data, media_type="video/mp4", filename=f"{clip_id}.mp4" if download else "")


async def thumbnail(request: Request) -> Response:
    """The clip's snapshot JPEG, made by the device when it recorded and sealed to the owner."""
    require(request)
    c = console(request)
    clip_id = _clip_id(request)
    try:
        jpeg = await asyncio.to_thread(c.media.thumbnail, clip_id)
    except DoorkeepError:
        jpeg = None
    if jpeg is None:
        return Response(status_code=404)
    return Response(jpeg, media_type="image/jpeg")


async def _not_found(_request: Request, _exc: Exception) -> Response:
    return JSONResponse({"error": "no such clip"}, status_code=404)


def routes() -> list[Route]:
    return [Route("/clip/{clip_id}", clip_page), Route("/api/clip/{clip_id}", clip_status),
            Route("/clip/{clip_id}/video.mp4", clip_video), Route("/clip/{clip_id}/download", clip_video),
            Route("/thumb/{clip_id}.jpg", thumbnail)]


EXCEPTION_HANDLERS = {_NotFound: _not_found}
