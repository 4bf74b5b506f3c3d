"""The ``mountsync serve`` application: one FastAPI app, served by uvicorn.

- push receivers (``receivers.py``): ``/push/gcs``, ``/eventgrid``, ``/push/minio``;
- ``/healthz``, ``/readyz``, ``/metrics`` (``health.py``);
- ``/api/v1``: every route needs ``Authorization: Bearer TOKEN``; the OpenAPI document is at
  ``/api/v1/openapi.json``, interactive docs at ``/api/v1/docs``. Routers of ``producers/http/api``
  plus those other packages contribute through the ``mountsync.api`` entry-point group
  (``workers`` adds datasets, frames and alerts, whose logic lives there).
"""

from __future__ import annotations

import sys
import threading
from importlib.metadata import entry_points

import structlog
from fastapi import APIRouter, Depends, FastAPI

from mountsync.producers.http import health
from mountsync.producers.http.api import changes, deadletters, migrations, mounts
from mountsync.producers.http.context import ServeContext, recover_until_done
from mountsync.producers.http.receivers import RECEIVERS, Receiver, add_receivers
from mountsync.producers.statuspage.routes import install_status_page
from mountsync.shared.api.auth import require_read
from mountsync.shared.api.errors import ERROR_RESPONSES, install_error_handlers
from mountsync.shared.api.inputs import refuse_nul_bytes
from mountsync.shared.config import Settings

log = structlog.get_logger("mountsync.serve")
API_PREFIX = "/api/v1"
API_ENTRY_POINTS = "mountsync.api"
THREAD_DRAINER_SWITCH_INTERVAL_S = 0.0002


def api_router() -> APIRouter:
    """Every ``/api/v1`` route, behind a read token at least (write routes ask for more)."""
    api = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_read), Depends(refuse_nul_bytes)],
                    responses=ERROR_RESPONSES)  # fmt: skip
    for router in (mounts.router, changes.router, migrations.router, deadletters.router):
        api.include_router(router)
    for entry in entry_points(group=API_ENTRY_POINTS):
        api.include_router(entry.load())
    return api


def make_app(settings: Settings, *, consumer: str = "", receivers: tuple[Receiver, ...] = RECEIVERS) -> FastAPI:
    app = FastAPI(
        title="mountsync",
        version="1",
        summary="Bucket and directory mounts kept in step with a catalog; a durable change feed.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.serve = ServeContext(settings, consumer)
    install_error_handlers(app)
    add_receivers(app, receivers)
    app.include_router(health.router)
    app.include_router(api_router())
    install_status_page(app)
    return app


def run_server(settings: Settings, *, host: str, port: int, receivers: tuple[Receiver, ...] = RECEIVERS) -> None:
    import redis
    import uvicorn

    from mountsync.producers.inbox import consumer_name
    from mountsync.shared.redis_check import warn_if_redis_loses_data

    warn_if_redis_loses_data(redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5), "serve")
    if settings.inbox_drainer == "thread":
        # The event loop then shares the GIL with the drainers (CPU-bound batching and publishing):
        # a shorter switch interval lets it answer between their slices. Drainer processes need
        # none, and each forced switch costs: at 0.2 ms, a one-event POST took 25% more CPU.
        sys.setswitchinterval(THREAD_DRAINER_SWITCH_INTERVAL_S)
    app = make_app(settings, consumer=consumer_name(str(port)), receivers=receivers)
    ctx: ServeContext = app.state.serve
    stop = threading.Event()
    threading.Thread(target=recover_until_done, args=(ctx, stop), name="inbox-recovery", daemon=True).start()
    log.info("serving", host=host, port=port, receivers=[r.path for r in receivers])
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            server_header=False, timeout_graceful_shutdown=10)  # fmt: skip
    try:
        uvicorn.Server(config).run()
    finally:
        stop.set()
        ctx.stop()
