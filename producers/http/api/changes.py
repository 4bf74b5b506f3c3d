"""``GET /api/v1/changes``: the durable change feed, long-polled.

Entries come in cursor order with none skipped (see ``shared/catalog/change_log.py`` for why a
late-committing lower cursor cannot be passed over). ``wait`` holds the request up to 60 s until
something arrives, checking the log every ``POLL_S`` without holding a connection in between.
A cursor older than the retention answers 410 with the cursor to continue from after re-listing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from mountsync.producers.http.api.models import ChangesGone, ChangesPage
from mountsync.shared.api.deps import runtime
from mountsync.shared.catalog.change_log import PAGE_LIMIT_MAX, LogBounds, log_bounds, read_changes_json
from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.errors import BadInput

router = APIRouter(tags=["changes"])
POLL_S = 0.2
MAX_WAIT_S = 60


def _read(request: Request, after: int, mount: str | None, limit: int) -> tuple[LogBounds, str, int | None, int]:
    with runtime(request).pool.connection(timeout=10) as conn:
        if mount is not None:
            Mounts(conn).get(mount)  # 404 for an unknown mount
        bounds = log_bounds(conn)
        if after < bounds.pruned_through or after > bounds.head:
            return bounds, "[]", None, 0
        return bounds, *read_changes_json(conn, after, mount=mount, limit=limit)


def _gone(bounds: LogBounds, mount: str | None) -> JSONResponse:
    relist = f"/api/v1/mounts/{mount}/objects" if mount else "/api/v1/mounts/{mount}/objects"
    return JSONResponse(
        {
            "error": f"entries up to cursor {bounds.pruned_through} are past the retention "
            f"(MOUNTSYNC_CHANGES_RETENTION); re-list {relist}, then continue from its changes_cursor "
            f"(or from continue_from, {bounds.head}, taken before re-listing)",
            "continue_from": bounds.head,
            "relist": relist,
        },
        410,
    )


@router.get("/changes", responses={200: {"model": ChangesPage}, 410: {"model": ChangesGone}})
async def changes(
    request: Request,
    after: Annotated[int, Query(ge=0, le=2**63 - 1, description="the last cursor you have (0: from the start)")] = 0,
    mount: Annotated[str | None, Query(max_length=200, description="only this mount's changes")] = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX)] = 1000,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_S, description="seconds to wait for a change")] = 0,
) -> Response:
    """Changes after a cursor, in cursor order: ``{cursor, mount, dest_folder, key, kind, ...}``."""
    deadline = time.monotonic() + wait
    while True:
        bounds, page, last, count = await run_in_threadpool(_read, request, after, mount, limit)
        if after < bounds.pruned_through:
            return _gone(bounds, mount)
        if after > bounds.head:
            raise BadInput(f"after {after} is beyond the newest cursor ({bounds.head}); was the catalog reset?")
        if count or time.monotonic() >= deadline or await request.is_disconnected():
            break
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
    # PostgreSQL rendered the entries; only the envelope is assembled here.
    body = f'{{"changes":{page},"next_cursor":{last if last is not None else after}}}'
    return Response(body, media_type="application/json")
