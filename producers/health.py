"""Health and metrics over HTTP for producer processes (``mountsync serve`` has its own routes).

- ``GET /healthz``: liveness, 200 while the process answers.
- ``GET /readyz``: 200 when Redis, PostgreSQL and the source (if it has a ``ping()``) answer,
  503 with the failing check otherwise. Used as the readiness probe: a producer that cannot
  reach Redis is not pulling, and its pod should show it.
- ``GET /metrics``: the process's Prometheus metrics (received, enqueued, dead-lettered, ...).

Started by ``run_producer`` when ``--metrics-port`` / ``MOUNTSYNC_METRICS_PORT`` is set.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from werkzeug.wrappers import Request, Response

log = structlog.get_logger("mountsync.health")

Check = Callable[[], None]
"""Raises when the dependency is not usable; the message is shown in /readyz."""


def run_checks(checks: Mapping[str, Check]) -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"unavailable: {type(exc).__name__}: {exc}"[:500]
    return all(v == "ok" for v in results.values()), results


def metrics_body(*registries: CollectorRegistry) -> bytes:
    """The exposition of the global registry followed by ``registries`` (disjoint metric names)."""
    return b"".join(generate_latest(r) for r in (REGISTRY, *registries))


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status=status, mimetype="application/json")


def health_app(checks: Mapping[str, Check], *registries: CollectorRegistry) -> Any:
    """A WSGI app serving /healthz, /readyz and /metrics."""

    @Request.application
    def application(request: Request) -> Response:
        if request.method != "GET":
            return _json({"error": "method not allowed"}, 405)
        if request.path == "/healthz":
            return _json({"status": "ok"})
        if request.path == "/readyz":
            ok, results = run_checks(checks)
            return _json({"status": "ok" if ok else "unavailable", "checks": results}, 200 if ok else 503)
        if request.path == "/metrics":
            return Response(metrics_body(*registries), mimetype=CONTENT_TYPE_LATEST)
        return _json({"error": "not found"}, 404)

    return application


def runtime_checks(runtime: Any, source: Any = None) -> dict[str, Check]:
    """Redis, PostgreSQL and, when the source offers ``ping()``, the source itself."""

    def postgres() -> None:
        with runtime.pool.connection(timeout=5) as conn:
            conn.execute("SELECT 1")

    checks: dict[str, Check] = {"redis": lambda: runtime.redis.ping(), "postgres": postgres}
    ping = getattr(source, "ping", None)
    if callable(ping):
        checks["source"] = ping
    return checks


class HealthServer:
    """A small threaded HTTP server in a daemon thread; ``stop()`` shuts it down."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        from werkzeug.serving import make_server

        self._server = make_server(host, port, app, threaded=True)
        self.port = int(self._server.server_port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_producer_health(runtime: Any, source: Any, host: str, port: int) -> HealthServer:
    server = HealthServer(health_app(runtime_checks(runtime, source)), host, port)
    log.info("health and metrics endpoint", host=host, port=server.port,
             paths=["/healthz", "/readyz", "/metrics"])  # fmt: skip
    return server
