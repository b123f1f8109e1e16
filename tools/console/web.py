"""The console's Starlette app: security headers, host check, unlock/lock, the live stream, and the pages.

Every response carries a strict Content-Security-Policy (only this origin's scripts, styles, images and media:
nothing is loaded from the network), ``X-Frame-Options: DENY``, ``Referrer-Policy: same-origin`` (``no-referrer``
would make Chromium send ``Origin: null`` on our own form posts) and ``no-store``. A request whose ``Host`` is not
one this console answers to is refused (DNS rebinding); a state-changing request must come from
this origin (``Origin``) and carry the session's CSRF token. Pages need the unlocked session (cookie
``dk_console``: HttpOnly, SameSite=Strict, Path=/).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doorkeep.device.errors import DoorkeepError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import fmt
from .session import Locked, OwnerSession, UnlockThrottled
from .timeline import LiveState

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "dk_console"
CSRF_HEADER = "x-csrf-token"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
       "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin"), (b"x-content-type-options", b"nosniff"),
                    (b"cross-origin-opener-policy", b"same-origin"), (b"cross-origin-resource-policy", b"same-origin"),
                    (b"cache-control", b"no-store")]


@dataclass
class Console:
    """Everything the pages use: the owner session, the verified live state, the owner channel (``link``: a
    :class:`~.link.DeviceLink`), the clip media (``media``: a :class:`~.media.ClipMedia`) and one action thread
    (``actions``) for the owner's slow decisions (grants, declines)."""

    session: OwnerSession
    state: LiveState
    device_key: bytes
    device_name: str = "doorbell"
    broker: str = ""
    link: Any = None
    media: Any = None
    actions: Any = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def device_id(self) -> str:
        return self.state.device_id


class NeedUnlock(DoorkeepError):
    """Raised by a handler that needs the unlocked session."""


class Forbidden(DoorkeepError):
    """A state-changing request without this origin or the session's CSRF token."""


class Guard:
    """ASGI middleware: refuse foreign ``Host`` headers, add the security headers to every response."""

    def __init__(self, app: ASGIApp, *, hosts: set[str]) -> None:
        self.app = app
        self.hosts = {h.lower() for h in hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
        if host not in self.hosts:
            await PlainTextResponse("doorkeep console: unknown Host header", status_code=421)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], *[(k, v) for k, v in SECURITY_HEADERS if k not in names]]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def allowed_hosts(bind_host: str, port: int) -> set[str]:
    """The Host headers this console answers to: its own address and port, and localhost when on loopback."""
    names = {bind_host}
    if bind_host in ("127.0.0.1", "::1", "localhost"):
        names |= {"127.0.0.1", "localhost", "[::1]"}
    return {f"{n}:{port}" for n in names} | ({f"{n}" for n in names} if port == 80 else set())


# ------------------------------------------------------------------------------------------------ helpers
def console(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


def token(request: Request) -> str | None:
    return request.cookies.get(COOKIE)


def require(request: Request) -> str:
    """The session token of an unlocked session (restarts the idle timer) or :class:`NeedUnlock`."""
    t = token(request)
    if not console(request).session.valid(t):
        raise NeedUnlock()
    return t or ""


def same_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1].lower() != request.headers.get("host", "").lower():
        raise Forbidden("cross-origin request refused")


async def require_post(request: Request) -> tuple[str, dict[str, Any]]:
    """For a state-changing request: (session token, form or JSON body) after the origin and CSRF checks."""
    same_origin(request)
    t = require(request)
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.json()
        body = body if isinstance(body, dict) else {}
    else:
        body = dict(await request.form())
    presented = request.headers.get(CSRF_HEADER) or body.get("csrf")
    if not console(request).session.csrf_ok(t, presented if isinstance(presented, str) else None):
        raise Forbidden("missing or wrong CSRF token")
    return t, body


def render(request: Request, name: str, **context: Any) -> HTMLResponse:
    c = console(request)
    t = token(request)
    csrf = c.session.csrf(t) if c.session.valid(t, touch=False) else ""
    pending = sum(1 for r in c.state.requests() if r.status == "pending")
    ctx = {"c": c, "csrf": csrf, "page": name.removesuffix(".html"), "health": c.state.health,
           "pending": pending, "fmt": fmt, **context}
    return request.app.state.templates.TemplateResponse(request, name, ctx)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------ unlock / lock
async def unlock_page(request: Request) -> Response:
    c = console(request)
    if c.session.valid(token(request), touch=False):
        return RedirectResponse("/timeline", status_code=303)
    return render(request, "unlock.html", error="", reason=c.session.lock_reason)


async def unlock(request: Request) -> Response:
    same_origin(request)
    c = console(request)
    form = await request.form()
    passphrase = str(form.get("passphrase", "")).encode()
    try:
        new = await asyncio.to_thread(c.session.unlock, passphrase)
    except UnlockThrottled as exc:
        return render(request, "unlock.html", error=str(exc), reason="")
    except DoorkeepError as exc:
        log.warning("console unlock failed: %s", exc)
        return render(request, "unlock.html", error="That passphrase does not open the owner key.", reason="")
    resp = RedirectResponse("/timeline", status_code=303)
    resp.set_cookie(COOKIE, new, httponly=True, samesite="strict", path="/",
                    secure=request.url.scheme == "https")
    return resp


async def lock(request: Request) -> Response:
    await require_post(request)
    console(request).session.lock("locked by the owner")
    resp = RedirectResponse("/unlock", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


# ------------------------------------------------------------------------------------------------ live stream
async def stream(request: Request) -> Response:
    """Server-sent events: rendered fragments for changed visits / requests / device health, ``locked`` on lock."""
    from starlette.responses import StreamingResponse

    require(request)
    c = console(request)
    t = token(request)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(maxsize=1000)

    def push(kind: str, key: str) -> None:
        loop.call_soon_threadsafe(_offer, queue, (kind, key))

    unsubscribe = c.state.subscribe(push)
    templates = request.app.state.templates
    # The page was rendered at version ``since``: what changed between its render and now (subscribed) comes first.
    since = request.query_params.get("since", "")
    if since.isdigit():
        for event_id in c.state.changed_since(int(since))[-queue.maxsize // 2:]:
            queue.put_nowait(("visit", event_id))

    async def events() -> Any:
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    kind, key = await asyncio.wait_for(queue.get(), timeout=10.0)
                except TimeoutError:
                    kind, key = "ping", ""
                if not c.session.valid(t, touch=False):
                    yield "event: locked\ndata: {}\n\n"
                    return
                if await request.is_disconnected():
                    return
                data = _fragment(templates, c, kind, key)
                if data is not None:
                    yield f"event: {kind}\ndata: {json.dumps(data)}\n\n"
        finally:
            unsubscribe()

    return StreamingResponse(events(), media_type="text/event-stream")


def _offer(queue: asyncio.Queue[tuple[str, str]], item: tuple[str, str]) -> None:
    if not queue.full():
        queue.put_nowait(item)


def _fragment(templates: Jinja2Templates, c: Console, kind: str, key: str) -> dict[str, Any] | None:
    if kind == "visit":
        v = c.state.visit(key)
        if v is None:
            return None
        html = templates.get_template("_visit.html").render(v=v, fmt=fmt)
        return {"id": v.event_id, "day": v.day, "day_label": fmt.day_label(v.day), "t": v.t_start, "html": html,
                "kind": v.kind, "x": fmt.day_fraction(v.t_start)}
    if kind == "device":
        h = c.state.health
        return {"availability": h.availability, "html": templates.get_template("_health.html").render(
            health=h, fmt=fmt, c=c)}
    if kind == "request":
        return {"pending": sum(1 for r in c.state.requests() if r.status == "pending")}
    if kind == "ping":
        return {}
    return None


# ------------------------------------------------------------------------------------------------ app
def build_app(c: Console, *, hosts: set[str], routes: list[Route] | None = None) -> ASGIApp:
    """The console app for ``c``, answering only to ``hosts`` (``host:port`` strings)."""
    from . import pages_audit, pages_clip, pages_requests, pages_settings, pages_timeline
    from .link import NotConnected

    templates = Jinja2Templates(directory=str(HERE / "templates"))
    all_routes = [
        Route("/", lambda r: RedirectResponse("/timeline", status_code=303)),
        Route("/unlock", unlock_page, methods=["GET"]),
        Route("/unlock", unlock, methods=["POST"]),
        Route("/lock", lock, methods=["POST"]),
        Route("/api/stream", stream),
        *pages_timeline.routes(),
        *pages_clip.routes(),
        *pages_requests.routes(),
        *pages_settings.routes(),
        *pages_audit.routes(),
        *(routes or []),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def need_unlock(request: Request, _exc: Exception) -> Response:
        if request.method == "GET" and not request.url.path.startswith("/api/"):
            return RedirectResponse("/unlock", status_code=303)
        return JSONResponse({"error": "locked"}, status_code=401)

    async def forbidden(_request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=403)

    async def not_connected(request: Request, exc: Exception) -> Response:
        if request.method == "GET" and not request.url.path.startswith("/api/"):
            return render(request, "offline.html", error=str(exc))
        return JSONResponse({"error": str(exc)}, status_code=503)

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        NeedUnlock: need_unlock, Forbidden: forbidden, NotConnected: not_connected, Locked: need_unlock,
        **pages_clip.EXCEPTION_HANDLERS}
    app = Starlette(routes=all_routes, exception_handlers=handlers)
    app.state.console = c
    app.state.templates = templates
    return Guard(app, hosts=hosts)
