"""The status page's HTTP routes: ``/`` (sign-in form or the page), ``/login``, ``/logout``,
``/ui/updates`` (long poll) and ``/ui/actions/{action}`` (buttons), plus its static files.

Sign-in takes an API token (``mountsync token create``) and keeps a server-side session
(``shared/api/sessions.py``); every action is a POST carrying the session's CSRF token and is
forwarded to the ``/api/v1`` route that does it, so a read-only token is refused there as well as
being shown no buttons here. ``/ui/updates`` holds the request until something shown changed: it
waits on the change feed (``/api/v1/changes?wait=``) and re-reads the sections in between, since
alerts and migration progress are not in the feed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from mountsync.producers.statuspage.reading import ApiReader, api_path, read_page
from mountsync.producers.statuspage.render import render_login, render_page, render_sections
from mountsync.shared.api.deps import runtime
from mountsync.shared.api.sessions import (
    SESSION_COOKIE,
    Session,
    cookie_options,
    session_store,
    signed_in,
)
from mountsync.shared.catalog.tokens import verify_token

router = APIRouter(include_in_schema=False)
STATIC_PATH = "/static/statuspage"
TICK_S = 15  # relative times ("3 min ago") are re-rendered at least this often
MAX_WAIT_S = 55.0
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}
WRONG_TOKEN = "That token is not valid or was revoked. Check it, or create one as shown above."


def _int_target(target: str) -> int:
    if not target.isdigit():
        raise ValueError(f"target {target!r}: expected a number")
    return int(target)


# action -> (the /api/v1 route that does it, what to say when it worked)
ACTIONS: dict[str, tuple[Callable[[str], str], str]] = {
    "reindex": (lambda t: api_path("mounts", t, "reindex"), "Reconcile of {t} queued."),
    "ack": (
        lambda t: api_path("alerts", _int_target(t), "ack"),
        "Alert #{t} acknowledged; the folder is pinned as it is now.",
    ),
    "cancel": (lambda t: api_path("migrations", t, "cancel"), "Migration {t} cancelled."),
    "resume": (lambda t: api_path("migrations", t, "resume"), "Migration {t} resumed."),
    "replay": (lambda t: api_path("deadletters", _int_target(t), "replay"), "Dead letter #{t} replayed."),
}


def _tick(now: datetime) -> int:
    return int(now.timestamp() // TICK_S)


@router.get("/", response_class=HTMLResponse)
async def status_page(request: Request) -> HTMLResponse:
    found = await run_in_threadpool(signed_in, request)
    if found is None:
        return HTMLResponse(render_login(), headers=PAGE_HEADERS)
    session_id, session, _ = found
    async with ApiReader(request.app, session_id) as reader:
        data = await read_page(reader)
    now = datetime.now(UTC)
    return HTMLResponse(render_page(data, session, now, data.digest(_tick(now))), headers=PAGE_HEADERS)


def _sign_in(request: Request, token: str) -> str | None:
    with runtime(request).pool.connection(timeout=10) as conn:
        info = verify_token(conn, token.strip())
    if info is None:
        return None
    session_id, _ = session_store(request).create(info.name, info.scope, info.created_at.isoformat())
    return session_id


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, token: Annotated[str, Form(max_length=500)] = "") -> Response:
    session_id = await run_in_threadpool(_sign_in, request, token) if token.strip() else None
    if session_id is None:
        return HTMLResponse(render_login(WRONG_TOKEN), status_code=401, headers=PAGE_HEADERS)
    response = RedirectResponse("/", status_code=303, headers=PAGE_HEADERS)
    response.set_cookie(value=session_id, **cookie_options(request))
    return response


@router.post("/logout")
async def logout(request: Request, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
    found = await run_in_threadpool(signed_in, request)
    if found is not None:
        session_id, session, _ = found
        if not session.csrf_matches(csrf_token):
            return HTMLResponse("The sign-out form is stale; reload the page and try again.", status_code=403)
        await run_in_threadpool(session_store(request).delete, session_id)
    response = RedirectResponse("/", status_code=303, headers=PAGE_HEADERS)
    options = cookie_options(request)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=options["secure"], httponly=True, samesite="strict")
    return response


@router.get("/ui/updates")
async def updates(
    request: Request,
    digest: Annotated[str, Query(max_length=64)] = "",
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 25.0,
) -> Response:
    """The sections as HTML once they differ from ``digest``; 204 when ``wait`` passed unchanged."""
    found = await run_in_threadpool(signed_in, request)
    if found is None:
        return JSONResponse({"error": "signed out: sign in again"}, status_code=401)
    session_id, session, _ = found
    deadline = time.monotonic() + wait
    async with ApiReader(request.app, session_id) as reader:
        while True:
            data = await read_page(reader)
            now = datetime.now(UTC)
            current = data.digest(_tick(now))
            if current != digest:
                return JSONResponse({"digest": current, "html": render_sections(data, session, now)})
            remaining = deadline - time.monotonic()
            if remaining <= 0 or await request.is_disconnected():
                return Response(status_code=204)
            await reader.wait_for_change(data.head_cursor, min(remaining, 1.0 if data.busy else 3.0))
            await asyncio.sleep(0.2)  # a feed that answers at once must not turn this into a busy loop


def _answer(request: Request, status: int, message: str) -> Response:
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"ok": status < 300, "message": message}, status_code=status)
    return RedirectResponse("/", status_code=303)  # without JavaScript: back to the page


@router.post("/ui/actions/{action}")
async def act(
    request: Request,
    action: str,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    target: Annotated[str, Form(max_length=1024)] = "",
) -> Response:
    found = await run_in_threadpool(signed_in, request)
    if found is None:
        return JSONResponse({"ok": False, "message": "Signed out: sign in again."}, status_code=401)
    session_id, session, _ = found
    if not session.csrf_matches(csrf_token):
        return _answer(request, 403, "The form is stale (CSRF token mismatch); reload the page.")
    if action not in ACTIONS:
        return _answer(request, 404, f"Unknown action {action!r}.")
    route, done = ACTIONS[action]
    try:
        path = route(target)
    except ValueError as exc:
        return _answer(request, 400, str(exc))
    async with ApiReader(request.app, session_id, csrf=session.csrf) as reader:
        status, body = await reader.post(path)
    if status < 300:
        return _answer(request, 200, done.format(t=target))
    reason = body.get("error") if isinstance(body, dict) else None
    return _answer(request, status, f"{action} {target}: {reason or f'HTTP {status}'}")


def install_status_page(app: FastAPI) -> None:
    """Add the page, its routes and its static files (shipped in this package) to ``app``."""
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(packages=[("mountsync.producers.statuspage", "static")]), name="statuspage")


__all__ = ["ACTIONS", "Session", "install_status_page", "router"]
