"""``/api/v1/migrations``: the same operations as ``mountsync migrate`` (CONTRACT.md spec).

- ``POST /migrations`` (write) body = a spec -> 202 ``{"job_id", "state", "status_url"}``;
- ``GET /migrations?state=S&limit=N`` -> ``{"jobs": [progress, ...]}``;
- ``GET /migrations/{job_id}`` -> progress and the first failures; 404 for an unknown job;
- ``POST /migrations/{job_id}/cancel`` (write) -> progress after the cancel.

A ``file://`` source makes a worker read its own disk, so over HTTP it must lie under one of
``MOUNTSYNC_MIGRATION_SOURCE_ROOTS`` (comma-separated absolute directories); otherwise 400.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query

from mountsync.shared.api.auth import require_write
from mountsync.shared.api.deps import ApiRuntime, runtime
from mountsync.shared.errors import BadInput
from mountsync.shared.events import Provider
from mountsync.shared.migration.client import MigrationClient
from mountsync.shared.storage import parse_storage_url

router = APIRouter(prefix="/migrations", tags=["migrations"])
Runtime = Annotated[ApiRuntime, Depends(runtime)]
ROOTS_SETTING = "MOUNTSYNC_MIGRATION_SOURCE_ROOTS"


def _client(rt: ApiRuntime) -> MigrationClient:
    return MigrationClient(rt.settings, pool=rt.pool, celery=rt.celery)


def check_source_allowed(spec: Any, roots_setting: str) -> None:
    """Refuse a local source outside the configured roots (``BadInput``, so 400 with the reason)."""
    source = spec.get("source") if isinstance(spec, dict) else None
    if not isinstance(source, str):
        return  # parse_spec names the missing source
    try:
        url = parse_storage_url(source)
    except BadInput:
        return  # parse_spec names what is wrong with it
    if url.provider is not Provider.FS:
        return
    roots = [os.path.realpath(r.strip()) for r in roots_setting.split(",") if r.strip()]
    path = os.path.realpath(url.bucket)
    if not any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots):
        allowed = ", ".join(roots) if roots else f"none ({ROOTS_SETTING} is not set)"
        raise BadInput(f"source {source!r}: local sources must lie under {ROOTS_SETTING} (allowed: {allowed})")


@router.post("", status_code=202, dependencies=[Depends(require_write)])
def submit(rt: Runtime, spec: Annotated[dict[str, Any], Body(description="a migration spec")]) -> dict[str, str]:
    check_source_allowed(spec, rt.settings.extra.get(ROOTS_SETTING, ""))
    job_id = _client(rt).submit(spec)
    return {"job_id": job_id, "state": "submitted", "status_url": f"/api/v1/migrations/{job_id}"}


@router.get("")
def list_jobs(
    rt: Runtime,
    state: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> dict[str, list[dict[str, Any]]]:
    return {"jobs": [p.to_json() for p in _client(rt).list(limit=limit, state=state or None)]}


@router.get("/{job_id}")
def status(job_id: str, rt: Runtime) -> dict[str, Any]:
    client = _client(rt)
    progress = client.status(job_id)
    failures = client.failures(job_id) if progress.items_failed else []
    return {**progress.to_json(), "failures": failures}


@router.post("/{job_id}/cancel", dependencies=[Depends(require_write)])
def cancel(job_id: str, rt: Runtime) -> dict[str, Any]:
    return _client(rt).cancel(job_id).to_json()
