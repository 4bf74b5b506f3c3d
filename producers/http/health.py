"""``GET /healthz`` (the process answers), ``/readyz`` (Redis, PostgreSQL, inbox drainers) and
``/metrics`` (this process plus the deployment's gauges). No authentication: probes and
Prometheus scrape these; they reveal no data."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from mountsync.producers.http.context import ServeContext
from mountsync.shared.config import Settings

router = APIRouter(tags=["health"])


def _ctx(request: Request) -> ServeContext:
    ctx: ServeContext = request.app.state.serve
    return ctx


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    ctx = _ctx(request)
    checks: dict[str, str] = {}
    try:
        ctx.runtime.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = f"unavailable: {exc}"
    try:
        with ctx.runtime.pool.connection(timeout=5) as conn:
            conn.execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = f"unavailable: {exc}"
    for source, alive in ctx.drainers_alive().items():
        checks[f"inbox:{source}"] = "ok" if alive else "drainer stopped"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, 200 if ok else 503)


@router.get("/metrics", response_class=Response)
def metrics_view(request: Request) -> Response:
    """This process's metrics plus the deployment's gauges (queues, lag, dead letters, alerts, jobs)."""
    from mountsync.producers.health import metrics_body

    ctx = _ctx(request)
    if ctx._system_metrics is None:
        ctx._system_metrics = system_registry(ctx.settings)
    return Response(metrics_body(ctx._system_metrics), media_type=CONTENT_TYPE_LATEST)


def system_registry(settings: Settings) -> CollectorRegistry:
    from mountsync.shared.migration.metrics import JobsCollector
    from mountsync.shared.system_metrics import system_collector

    registry = CollectorRegistry(auto_describe=False)
    collector = system_collector(settings)
    registry.register(collector)
    registry.register(JobsCollector(collector.connect))
    return registry
