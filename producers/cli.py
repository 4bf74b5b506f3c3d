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

ROOT_COMMANDS = ("mountsync.producers.gcs_setup", "mountsync.producers.deadletters.cli")

produce_app = typer.Typer(help="Run one producer (an event source feeding the changes queue).",
                          no_args_is_help=True)  # fmt: skip
METRICS_PORT = "mountsync.metrics_port"


@produce_app.callback()
def produce_options(
    ctx: typer.Context,
    metrics_port: int = typer.Option(
        0,
        "--metrics-port",
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
        port: int = typer.Option(8080, "--port"),
        host: str = typer.Option("127.0.0.1", "--host"),
        threads: int = typer.Option(8, "--threads"),
    ) -> None:
        """HTTP: Pub/Sub push, Event Grid webhook, health, metrics and the JSON API."""
        from mountsync.producers.serve import run_server
        from mountsync.shared.cli import settings_of

        run_server(settings_of(ctx), host=host, port=port, threads=threads)


def run_producer(ctx: typer.Context, build: Callable[[Any], tuple[Any, Any]]) -> None:
    """Build the runtime and source, then run the shared loop until SIGTERM/SIGINT."""
    from mountsync.producers.health import start_producer_health
    from mountsync.producers.loop import run_source
    from mountsync.producers.runtime import build_runtime
    from mountsync.shared.cli import settings_of
    from mountsync.shared.redis_check import warn_if_redis_loses_data

    settings = settings_of(ctx)
    runtime = build_runtime(settings)
    warn_if_redis_loses_data(runtime.redis, "producer")
    stop = threading.Event()
    health = None

    def _stop(signum: int, _frame: Any) -> None:
        log.info("stopping producer", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        source, pipeline = build(runtime)
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
