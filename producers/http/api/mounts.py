"""``GET /api/v1/mounts``, ``/mounts/{mount}``, ``/mounts/{mount}/objects`` and
``POST /mounts/{mount}/reindex``."""

from __future__ import annotations

import json
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import Response

from mountsync.producers.http.api.models import MountsPage, MountView, ObjectsPage, ReindexBody, ReindexQueued
from mountsync.shared.api.auth import require_write
from mountsync.shared.api.deps import ApiRuntime, catalog, runtime
from mountsync.shared.catalog import listing, runs
from mountsync.shared.catalog.change_log import log_bounds
from mountsync.shared.catalog.mounts import Mount, Mounts
from mountsync.shared.errors import BadInput, RetryableError
from mountsync.shared.queues import QUEUE_REINDEX, TASK_REINDEX, ChangeQueue, send

router = APIRouter(tags=["mounts"])
Catalog = Annotated[psycopg.Connection, Depends(catalog)]
Runtime = Annotated[ApiRuntime, Depends(runtime)]


def _queued(rt: ApiRuntime) -> int | None:
    """Changes waiting in the ``changes`` queue (all mounts share it); None while Redis is down."""
    try:
        return ChangeQueue(rt.celery, rt.redis, rt.settings).depth()
    except RetryableError:
        return None


def _view(conn: psycopg.Connection, mount: Mount, queued: int | None) -> dict[str, Any]:
    return {**mount.describe(), **listing.mount_status(conn, mount), "changes_queued": queued}


@router.get("/mounts", response_model=MountsPage)
def list_mounts(conn: Catalog, rt: Runtime) -> dict[str, Any]:
    queued = _queued(rt)
    return {"mounts": [_view(conn, m, queued) for m in Mounts(conn).list()], "next_cursor": None}


@router.get("/mounts/{mount}", response_model=MountView)
def get_mount(mount: str, conn: Catalog, rt: Runtime) -> dict[str, Any]:
    return _view(conn, Mounts(conn).get(mount), _queued(rt))


@router.get("/mounts/{mount}/objects", responses={200: {"model": ObjectsPage}})
def list_objects(
    mount: str,
    conn: Catalog,
    prefix: Annotated[str, Query(description="key prefix, relative to the mount", max_length=1024)] = "",
    cursor: Annotated[str, Query(description="next_cursor of the previous page", max_length=4096)] = "",
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Response:
    """Live objects in key order, a page at a time (the same rows as ``mountsync ls --json``)."""
    found = Mounts(conn).get(mount)
    head = log_bounds(conn).head  # before the listing: continuing the feed from here misses nothing
    after = listing.decode_key_cursor(cursor) if cursor else ""
    page = listing.objects_page(conn, found, prefix, after, limit)
    envelope = json.dumps({"mount": mount, "next_cursor": page.next_cursor, "changes_cursor": head})
    return Response(f'{envelope[:-1]},"objects":{page.objects_json}}}', media_type="application/json")


@router.post("/mounts/{mount}/reindex", status_code=202, response_model=ReindexQueued,
             dependencies=[Depends(require_write)])  # fmt: skip
def reindex_mount(mount: str, conn: Catalog, rt: Runtime,
                  body: Annotated[ReindexBody | None, Body()] = None) -> dict[str, Any]:  # fmt: skip
    """Queue a reconcile of the mount (or one folder of it), as ``mountsync reindex``."""
    prefix = (body.prefix if body else "").strip("/")
    if any(part in ("..", ".") for part in prefix.split("/")):
        raise BadInput(f"prefix {prefix!r}: '.' and '..' are not allowed")
    found = Mounts(conn).get(mount)
    run_id = runs.create_run(conn, found.id, prefix, "api")
    conn.commit()  # the worker that takes the task must see the run row
    send(rt.celery, TASK_REINDEX, found.name, prefix, run_id, "api", queue=QUEUE_REINDEX)
    return {"mount": found.name, "run": run_id, "state": "queued"}
