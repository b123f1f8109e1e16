"""Audit page: the device's audit log fetched over the owner channel, every record checked (hash chain from the
first record, the device's signature, the head the device signed in its heartbeat), told as a readable history."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from doorkeep.device.errors import DoorkeepError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .history import describe
from .web import Console, console, render, require


@dataclass(frozen=True)
class Checked:
    records: int
    head: str
    seen_records: int | None
    seen_head: str | None
    seen_in_chain: bool | None


def load(c: Console) -> tuple[list[Any], Checked]:
    """Every audit record (fetched incrementally: only what is new since the last visit) and what was checked."""
    link = c.link.require()
    cache: list[Any] = c.extras.setdefault("audit", [])
    new = link.fetch_audit(len(cache), prev_head=cache[-1].hash if cache else None)
    cache.extend(new)
    seen = getattr(link.heartbeats, "seen", None)
    in_chain = None
    if seen is not None:
        in_chain = 0 < seen.records <= len(cache) and cache[seen.records - 1].hash == seen.head
    return cache, Checked(len(cache), cache[-1].hash if cache else "0" * 64,
                          seen.records if seen else None, seen.head if seen else None, in_chain)


async def audit_page(request: Request) -> Response:
    require(request)
    c = console(request)
    show_all = request.query_params.get("all") == "1"
    try:
        records, checked = await asyncio.to_thread(load, c)
    except DoorkeepError as exc:
        c.extras["audit"] = []  # start again from the first record next time
        return render(request, "audit.html", error=str(exc), lines=[], checked=None, show_all=show_all)
    lines = [describe(r.index, r.t, r.kind, r.fields) for r in reversed(records)]
    return render(request, "audit.html", error="", checked=checked, show_all=show_all,
                  lines=[ln for ln in lines if show_all or ln.important], total=len(lines))


def routes() -> list[Route]:
    return [Route("/audit", audit_page)]
