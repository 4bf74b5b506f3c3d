"""The migration JSON API of ``mountsync serve`` (same operations as ``mountsync migrate``).

- ``POST /api/migrations`` body = a spec (CONTRACT.md) -> 202 ``{"job_id", "state", "status_url"}``;
  a bad spec -> 400 ``{"error": reason}``.
- ``GET /api/migrations?state=S&limit=N`` -> ``{"jobs": [progress, ...]}``.
- ``GET /api/migrations/<job_id>`` -> progress (items, bytes, rate, ETA) + first failures; 404.
- ``POST /api/migrations/<job_id>/cancel`` -> progress after the cancel; 404.
"""

from __future__ import annotations

import json
from typing import Any

from werkzeug.wrappers import Request, Response

from mountsync.shared.errors import BadInput
from mountsync.shared.migration.client import JobNotFound, MigrationClient


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def _client(ctx: Any) -> MigrationClient:
    runtime = ctx.runtime
    return MigrationClient(ctx.settings, pool=runtime.pool, celery=runtime.celery)


def _error(exc: BadInput) -> Response:
    return _json({"error": str(exc)}, 404 if isinstance(exc, JobNotFound) else 400)


def submit(request: Request, ctx: Any) -> Response:
    try:
        data = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        return _json({"error": f"body is not JSON: {exc}"}, 400)
    try:
        job_id = _client(ctx).submit(data)
    except BadInput as exc:
        return _error(exc)
    body = {"job_id": job_id, "state": "submitted", "status_url": f"/api/migrations/{job_id}"}
    return _json(body, 202)


def list_jobs(request: Request, ctx: Any) -> Response:
    try:
        limit = int(request.args.get("limit", "50"))
    except ValueError:
        return _json({"error": "limit must be an integer"}, 400)
    try:
        jobs = _client(ctx).list(limit=limit, state=request.args.get("state") or None)
    except BadInput as exc:
        return _error(exc)
    return _json({"jobs": [p.to_json() for p in jobs]})


def status(request: Request, ctx: Any, job_id: str) -> Response:
    client = _client(ctx)
    try:
        progress = client.status(job_id)
    except BadInput as exc:
        return _error(exc)
    failures = client.failures(job_id) if progress.items_failed else []
    return _json({**progress.to_json(), "failures": failures})


def cancel(request: Request, ctx: Any, job_id: str) -> Response:
    try:
        progress = _client(ctx).cancel(job_id)
    except BadInput as exc:
        return _error(exc)
    return _json(progress.to_json())
