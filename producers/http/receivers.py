"""The push receivers on the ``serve`` app: ``POST /push/gcs``, ``POST``/``OPTIONS /eventgrid``,
``POST /push/minio``.

Each keeps its guarantees (see its module): it answers 2xx only after Redis holds the data; the
Event Grid webhook appends to its inbox and answers 503 while the inbox is full. The body is read
on the event loop (at most ``MAX_BODY``), the handler runs on the threadpool (it blocks on Redis).
Handlers are imported on first use, so a missing cloud SDK disables only its own receiver (503).

Authentication, per receiver (``serve`` refuses to start without it unless
``--insecure-receivers``): Pub/Sub OIDC (``MOUNTSYNC_GCS_PUSH_AUDIENCE`` or
``..._SERVICE_ACCOUNTS``), an Event Grid secret (``MOUNTSYNC_EVENTGRID_SECRET``), a MinIO bearer
token (``MOUNTSYNC_MINIO_WEBHOOK_TOKEN``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mountsync.producers.http.push import PushAnswer, PushRequest
from mountsync.producers.sources import load_target

MAX_BODY = 4 * 1024 * 1024  # Event Grid batches are at most 1 MiB; Pub/Sub push 10 MB of base64


@dataclass(frozen=True)
class Receiver:
    """A push endpoint: its source name, path, methods, handler ("module:function") and the
    settings any of which authenticates its senders (from the source registry)."""

    name: str
    path: str
    methods: tuple[str, ...]
    handler: str
    auth_settings: tuple[str, ...]


def registered_receivers() -> tuple[Receiver, ...]:
    """One receiver per push source of the source registry (``producers/sources.py``)."""
    from mountsync.producers.sources import REGISTRY

    return tuple(
        Receiver(e.source.value, e.push.path, e.push.methods, e.push.handler, e.push.auth_settings)
        for e in REGISTRY.values()
        if e.push is not None
    )


RECEIVERS: tuple[Receiver, ...] = registered_receivers()


def unauthenticated(receivers: tuple[Receiver, ...], extra: Mapping[str, str]) -> list[str]:
    """One line per receiver that would accept anyone, naming what to set."""
    return [
        f"{r.path} ({r.name}) has no authentication: set {' or '.join(r.auth_settings)}"
        for r in receivers
        if not any(extra.get(var, "").strip() for var in r.auth_settings)
    ]


def _response(answer: PushAnswer) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status, headers=answer.headers)
    return JSONResponse(answer.body, answer.status, headers=answer.headers)


async def _read_body(request: Request) -> bytes | None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)


def _route(receiver: Receiver) -> Callable[[Request], Any]:
    async def receive(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            return JSONResponse({"error": f"body larger than {MAX_BODY} bytes"}, 413)
        push = PushRequest(request.method, str(request.url), request.headers, request.query_params, body,
                           request.client.host if request.client else None)  # fmt: skip
        handler: Callable[[PushRequest, Any], PushAnswer] = load_target(receiver.handler)
        return _response(await run_in_threadpool(handler, push, request.app.state.serve))

    receive.__name__ = _name(receiver)
    return receive


def _name(receiver: Receiver) -> str:
    return f"receive_{receiver.name.replace('-', '_')}"


def add_receivers(app: FastAPI, receivers: tuple[Receiver, ...] = RECEIVERS) -> None:
    """Plain Starlette routes, matched before the API's: a receiver takes only the request, so
    FastAPI's dependency solving and scope bookkeeping (about a tenth of a one-event POST's CPU)
    would buy it nothing."""
    for r in receivers:
        app.router.add_route(r.path, _route(r), methods=list(r.methods), name=_name(r), include_in_schema=False)


def pick_receivers(spec: str) -> tuple[Receiver, ...]:
    """``all``, ``none`` or comma-separated receiver names; ``BadInput`` for an unknown name."""
    from mountsync.shared.errors import BadInput

    text = spec.strip().lower()
    if text == "all":
        return RECEIVERS
    if text in ("", "none"):
        return ()
    by_name = {r.name: r for r in RECEIVERS}
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise BadInput(f"--receivers: unknown {', '.join(unknown)}; use all, none or {', '.join(by_name)}")
    return tuple(by_name[n] for n in names)
