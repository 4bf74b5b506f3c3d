"""``GET /api/v1/sinks`` and ``/api/v1/sinks/{name}``: each sink's state, cursor and lag.

The rows of ``mountsync sink list --json`` (``shared/catalog/sinks.py``), never a secret. Plugged
into ``serve``'s app through the ``mountsync.api`` entry-point group, like the alignment routes.
"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query

from mountsync.shared.api.deps import catalog
from mountsync.shared.errors import NotFound
from mountsync.workers.sinks.cli import sink_rows

router = APIRouter(tags=["sinks"])
Catalog = Annotated[psycopg.Connection, Depends(catalog)]


@router.get("/sinks")
def list_sinks(conn: Catalog, kind: Annotated[str | None, Query(pattern="^(webhook|label-studio)$")] = None
               ) -> dict[str, Any]:  # fmt: skip
    """Every sink (webhooks, connectors) with ``lag_entries`` and ``lag_seconds`` behind the log's head."""
    return {"sinks": sink_rows(conn, kind)}


@router.get("/sinks/{name}")
def show_sink(name: str, conn: Catalog) -> dict[str, Any]:
    for row in sink_rows(conn):
        if row["name"] == name:
            return row
    raise NotFound(f"no sink named {name!r}")
