"""Timeline and Device pages: the verified live events grouped by day, and the device's health."""

from __future__ import annotations

from doorkeep.device.identity import fingerprint_for
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .web import console, render, require


async def timeline(request: Request) -> Response:
    require(request)
    state = console(request).state
    since = state.version()  # before the visits are read: the stream replays what changes from here on
    return render(request, "timeline.html", days=state.days(), since=since)


async def device(request: Request) -> Response:
    require(request)
    return render(request, "device.html", fingerprint=fingerprint_for(console(request).device_key))


def routes() -> list[Route]:
    return [Route("/timeline", timeline), Route("/device", device)]
