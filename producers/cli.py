"""``mountsync produce ...`` and ``mountsync serve``: producer processes."""

from __future__ import annotations

import importlib
import signal
import threading
from collections.abc import Callable
from typing import Any

import structlog
import typer

from mountsync.shared.output import err_console

log = structlog.get_logger("mountsync.producer")

ROOT_COMMANDS = (
    "mountsync.producers.gcs_setup",
    "mountsync.producers.deadletters.cli",
    "mountsync.producers.http.token_cli",
)

produce_app = typer.Typer(help="Run one producer (an event source feeding the changes queue).",
                          no_args_is_help=True)  # fmt: skip
METRICS_PORT = "mountsync.metrics_port"


@produce_app.callback()
def produce_options(
    ctx: typer.Context,
    metrics_port: int = typer.Option(
        0,
        "--metrics-port",
        min=0,
        max=65535,
        envvar="MOUNTSYNC_METRICS_PORT",
        help="Serve /healthz, /readyz and /metrics on this port (0: off).",
    ),
    metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", envvar="MOUNTSYNC_METRICS_HOST"),
) -> None:
    """Options shared by every producer (given before the source name)."""
    ctx.meta[METRICS_PORT] = (metrics_host, metrics_port)


def register(app: typer.Typer) -> None:
    from mountsync.producers.sources import cli_modules

    # Each module defines ``register(produce_app)``; SDK imports stay inside its functions.
    for module_name in cli_modules():
        importlib.import_module(module_name).register(produce_app)
    app.add_typer(produce_app, name="produce")
    for module_name in ROOT_COMMANDS:
        importlib.import_module(module_name).register_root(app)

    @app.command("serve")
    def serve(
        ctx: typer.Context,
        port: int = typer.Option(8080, "--port", min=1, max=65535),
        host: str = typer.Option("127.0.0.1", "--host"),
        receivers: str = typer.Option(
            "all",
            "--receivers",
            help="Push receivers to serve: all, none, or a list of gcs-push,azure-eventgrid,minio.",
        ),
        insecure_receivers: bool = typer.Option(
            False, "--insecure-receivers", help="Serve receivers that have no authentication configured (warns)."
        ),
    ) -> None:
        """HTTP: push receivers, health, metrics and the authenticated /api/v1 (OpenAPI at /api/v1/docs)."""
        from mountsync.producers.http.app import run_server
        from mountsync.producers.http.receivers import pick_receivers, unauthenticated
        from mountsync.shared.cli import settings_of
        from mountsync.shared.errors import ConfigError

        settings = settings_of(ctx)
        chosen = pick_receivers(receivers)
        open_doors = unauthenticated(chosen, settings.extra)
        if open_doors and not insecure_receivers:
            raise ConfigError(f"refusing to start: {'; '.join(open_doors)} (or pass --insecure-receivers)")
        for line in open_doors:
            log.warning("serving an unauthenticated receiver (--insecure-receivers)", receiver=line)
        run_server(settings, host=host, port=port, receivers=chosen)


def run_producer(ctx: typer.Context, build: Callable[[Any], tuple[Any, Any]]) -> None:
    """Build the runtime and source, then run the shared loop until SIGTERM/SIGINT."""
    from mountsync.producers.health import start_producer_health
    from mountsync.producers.loop import run_source
    from mountsync.producers.runtime import build_runtime
    from mountsync.shared.cli import settings_of
    from mountsync.shared.redis_check import warn_if_redis_loses_data

    settings = settings_of(ctx)
    runtime = build_runtime(settings)
    stop = threading.Event()
    health = None

    def _stop(signum: int, _frame: Any) -> None:
        log.info("stopping producer", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        source, pipeline = build(runtime)  # bad options end here, as one line, before any warning
        warn_if_redis_loses_data(runtime.redis, "producer")
        host, port = ctx.meta.get(METRICS_PORT, ("", 0))
        if port:
            health = start_producer_health(runtime, source, host, port)
        log.info("producer started", source=source.name.value)
        stats = run_source(source, pipeline, settings, stop, depth=runtime.queue.depth)
    finally:
        if health is not None:
            health.stop()
        runtime.close()
    err_console.print(f"producer stopped: {stats.batches} batches, {stats.acked} acked, "
                      f"{stats.rejected} dead-lettered, {stats.nacked} nacked")  # fmt: skip
