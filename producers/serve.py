"""``mountsync serve``: push endpoints, health, metrics and the JSON API, as one WSGI app.

Handlers are looked up lazily by "module:function" so a missing cloud SDK only disables its own
endpoint (503 with the reason) instead of the whole server.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from shared.config import Settings
from shared.errors import MissingExtra, ServiceUnavailable

log = structlog.get_logger("mountsync.serve")

MAX_BODY = 4 * 1024 * 1024  # Event Grid batches are at most 1 MiB; Pub/Sub push 10 MB of base64

ROUTES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("/healthz", ("GET",), "producers.serve:healthz"),
    ("/readyz", ("GET",), "producers.serve:readyz"),
    ("/metrics", ("GET",), "producers.serve:metrics_view"),
    ("/push/gcs", ("POST",), "producers.gcs_push:handle"),
    ("/eventgrid", ("POST", "OPTIONS"), "producers.azure_webhook:handle"),
    ("/push/minio", ("POST",), "producers.minio_push:handle"),
    ("/api/migrations", ("POST",), "producers.migration_api:submit"),
    ("/api/migrations", ("GET",), "producers.migration_api:list_jobs"),
    ("/api/migrations/<job_id>", ("GET",), "producers.migration_api:status"),
    ("/api/migrations/<job_id>/cancel", ("POST",), "producers.migration_api:cancel"),
)


@dataclass
class ServeContext:
    settings: Settings
    _runtime: Any = field(default=None, repr=False)
    _system_metrics: Any = field(default=None, repr=False)

    @property
    def runtime(self) -> Any:
        """Producer runtime (DB pool, Redis, queue), opened on first use and kept."""
        if self._runtime is None:
            from producers.runtime import build_runtime

            self._runtime = build_runtime(self.settings)
        return self._runtime


def json_response(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status=status, mimetype="application/json")


def healthz(request: Request, ctx: ServeContext) -> Response:
    return json_response({"status": "ok"})


def readyz(request: Request, ctx: ServeContext) -> Response:
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
    ok = all(v == "ok" for v in checks.values())
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks},
                         200 if ok else 503)  # fmt: skip


def metrics_view(request: Request, ctx: ServeContext) -> Response:
    """This process's metrics plus the deployment's gauges (queues, lag, dead letters, alerts, jobs)."""
    from producers.health import metrics_body

    if ctx._system_metrics is None:
        ctx._system_metrics = system_registry(ctx.settings)
    return Response(metrics_body(ctx._system_metrics), mimetype=CONTENT_TYPE_LATEST)


def system_registry(settings: Settings) -> CollectorRegistry:
    from shared.migration.metrics import JobsCollector
    from shared.system_metrics import system_collector

    registry = CollectorRegistry(auto_describe=False)
    collector = system_collector(settings)
    registry.register(collector)
    registry.register(JobsCollector(collector.connect))
    return registry


def _resolve(target: str) -> Any:
    module_name, _, func = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise MissingExtra(f"endpoint unavailable: {exc.name} is not installed") from exc
    return getattr(module, func)


def make_app(settings: Settings) -> Any:
    url_map = Map([Rule(path, methods=list(methods), endpoint=target)
                   for path, methods, target in ROUTES])  # fmt: skip
    ctx = ServeContext(settings)

    @Request.application  # type: ignore[untyped-decorator]
    def application(request: Request) -> Response:
        request.max_content_length = MAX_BODY
        adapter = url_map.bind_to_environ(request.environ)
        try:
            target, args = adapter.match()
            return _resolve(target)(request, ctx, **args)
        except (NotFound, MethodNotAllowed) as exc:
            return json_response({"error": exc.description}, exc.code or 404)
        except HTTPException as exc:
            return json_response({"error": exc.description}, exc.code or 400)
        except (MissingExtra, ServiceUnavailable) as exc:
            log.error("endpoint unavailable", path=request.path, error=str(exc))
            return json_response({"error": str(exc)}, 503)
        except Exception:
            log.exception("request failed", path=request.path)
            return json_response({"error": "internal error"}, 500)

    application.ctx = ctx
    return application


def run_server(settings: Settings, *, host: str, port: int, threads: int) -> None:
    import redis
    from waitress import serve

    from shared.redis_check import warn_if_redis_loses_data

    warn_if_redis_loses_data(redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5), "serve")
    log.info("serving", host=host, port=port)
    serve(make_app(settings), host=host, port=port, threads=threads, ident="mountsync")
