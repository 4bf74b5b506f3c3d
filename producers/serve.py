"""``mountsync serve``: push endpoints, health, metrics and the JSON API, as one WSGI app.

Handlers are looked up lazily by "module:function" so a missing cloud SDK only disables its own
endpoint (503 with the reason) instead of the whole server.
"""

from __future__ import annotations

import importlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from mountsync.producers.sources import enricher_for, inbox_sources, push_routes
from mountsync.shared.config import Settings
from mountsync.shared.errors import MissingExtra, ServiceUnavailable
from mountsync.shared.events import Source

log = structlog.get_logger("mountsync.serve")

MAX_BODY = 4 * 1024 * 1024  # Event Grid batches are at most 1 MiB; Pub/Sub push 10 MB of base64

ROUTES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("/healthz", ("GET",), "mountsync.producers.serve:healthz"),
    ("/readyz", ("GET",), "mountsync.producers.serve:readyz"),
    ("/metrics", ("GET",), "mountsync.producers.serve:metrics_view"),
    *push_routes(),  # one per push source of the registry
    ("/api/migrations", ("POST",), "mountsync.producers.migration_api:submit"),
    ("/api/migrations", ("GET",), "mountsync.producers.migration_api:list_jobs"),
    ("/api/migrations/<job_id>", ("GET",), "mountsync.producers.migration_api:status"),
    ("/api/migrations/<job_id>/cancel", ("POST",), "mountsync.producers.migration_api:cancel"),
)


@dataclass
class ServeContext:
    settings: Settings
    consumer: str = ""  # inbox consumer name (stable for one host and port)
    _runtime: Any = field(default=None, repr=False)
    _system_metrics: Any = field(default=None, repr=False)
    _drainers: dict[Source, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def runtime(self) -> Any:
        """Producer runtime (DB pool, Redis, queue), opened on first use and kept."""
        with self._lock:
            if self._runtime is None:
                from mountsync.producers.runtime import build_runtime

                self._runtime = build_runtime(self.settings)
            return self._runtime

    def start_drainer(self, source: Source) -> None:
        """Start the inbox drainer of ``source`` unless it runs (again, if its thread died)."""
        current = self._drainers.get(source)
        if current is not None and current.alive:
            return
        from mountsync.producers.inbox import Drainer, consumer_name

        runtime = self.runtime
        with self._lock:
            current = self._drainers.get(source)
            if current is None or not current.alive:
                enrich = enricher_for(source, runtime.pool)
                consumer = self.consumer or consumer_name()
                self._drainers[source] = Drainer(runtime, source, enrich=enrich, consumer=consumer).start()

    def recover_inboxes(self) -> None:
        """Drain what earlier runs accepted but did not finish, before any new request arrives."""
        from mountsync.shared.queues import inbox_key

        for source in inbox_sources():
            if self.runtime.redis.xlen(inbox_key(self.settings.redis_prefix, source)):
                self.start_drainer(source)

    def drainers_alive(self) -> dict[str, bool]:
        return {source.value: drainer.alive for source, drainer in self._drainers.items()}

    def stop(self) -> None:
        """Stop the drainers (their unsettled entries stay pending) and close the runtime."""
        for drainer in self._drainers.values():
            drainer.stop()
        self._drainers.clear()
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


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
    for source, alive in ctx.drainers_alive().items():
        checks[f"inbox:{source}"] = "ok" if alive else "drainer stopped"
    ok = all(v == "ok" for v in checks.values())
    return json_response({"status": "ok" if ok else "unavailable", "checks": checks},
                         200 if ok else 503)  # fmt: skip


def metrics_view(request: Request, ctx: ServeContext) -> Response:
    """This process's metrics plus the deployment's gauges (queues, lag, dead letters, alerts, jobs)."""
    from mountsync.producers.health import metrics_body

    if ctx._system_metrics is None:
        ctx._system_metrics = system_registry(ctx.settings)
    return Response(metrics_body(ctx._system_metrics), mimetype=CONTENT_TYPE_LATEST)


def system_registry(settings: Settings) -> CollectorRegistry:
    from mountsync.shared.migration.metrics import JobsCollector
    from mountsync.shared.system_metrics import system_collector

    registry = CollectorRegistry(auto_describe=False)
    collector = system_collector(settings, inbox_sources())
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


def make_app(settings: Settings, *, consumer: str = "") -> Any:
    url_map = Map([Rule(path, methods=list(methods), endpoint=target)
                   for path, methods, target in ROUTES])  # fmt: skip
    ctx = ServeContext(settings, consumer)

    @Request.application
    def application(request: Request) -> Response:
        request.max_content_length = MAX_BODY
        adapter = url_map.bind_to_environ(request.environ)
        try:
            target, args = adapter.match()
            response: Response = _resolve(target)(request, ctx, **args)
            return response
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

    application.ctx = ctx  # type: ignore[attr-defined]
    return application


def run_server(settings: Settings, *, host: str, port: int, threads: int) -> None:
    import redis
    from waitress import serve

    from mountsync.producers.inbox import consumer_name
    from mountsync.shared.redis_check import warn_if_redis_loses_data

    warn_if_redis_loses_data(redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5), "serve")
    app = make_app(settings, consumer=consumer_name(str(port)))
    stop = threading.Event()
    threading.Thread(target=_recover, args=(app.ctx, stop), name="inbox-recovery", daemon=True).start()
    log.info("serving", host=host, port=port)
    try:
        serve(app, host=host, port=port, threads=threads, ident="mountsync")
    finally:
        stop.set()
        app.ctx.stop()


def _recover(ctx: ServeContext, stop: threading.Event) -> None:
    """Start the drainers of non-empty inboxes, retrying while Redis or PostgreSQL are down."""
    while not stop.is_set():
        try:
            ctx.recover_inboxes()
            return
        except Exception as exc:  # Redis or PostgreSQL down, a missing extra: keep serving, keep trying
            log.warning("cannot check the inboxes yet; retrying in 5 s", error=f"{type(exc).__name__}: {exc}")
        stop.wait(5)
