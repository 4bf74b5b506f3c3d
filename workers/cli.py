"""``mountsync worker | beat | flower``: the Celery processes, configured from the environment."""

from __future__ import annotations

import os
import sys

import typer

from mountsync.shared.queues import ALL_QUEUES

POOLS = ("prefork", "threads", "solo")


def _celery(*args: str) -> None:
    # exec keeps signals (SIGTERM -> warm shutdown) going straight to Celery.
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "mountsync.workers.app", *args])


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        queues: str = typer.Option(",".join(ALL_QUEUES), "-Q", "--queues", help="Queues to consume."),
        concurrency: int = typer.Option(0, "-c", "--concurrency", min=0, help="Processes (0 = cores)."),
        pool: str = typer.Option("prefork", "--pool", help="prefork, threads or solo."),
        loglevel: str = typer.Option("INFO", "--loglevel"),
        hostname: str = typer.Option("", "--hostname", help="Worker name (default: queues@host)."),
        metrics_port: int = typer.Option(
            0, "--metrics-port", min=0, max=65535, envvar="MOUNTSYNC_METRICS_PORT", help="Serve /metrics here (0: off)."
        ),
        metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", envvar="MOUNTSYNC_METRICS_HOST"),
    ) -> None:
        """Run a Celery worker (late acks, prefetch 1, task events on)."""
        from mountsync.workers.schedule import worker_schedule_mode

        worker_schedule_mode(os.environ)  # a bad MOUNTSYNC_WORKER_SCHEDULE is one line, exit 2
        if pool not in POOLS:
            raise typer.BadParameter(f"{pool!r} is not one of {', '.join(POOLS)}", param_hint="'--pool'")
        unknown = sorted(set(queues.split(",")) - set(ALL_QUEUES))
        if unknown:
            raise typer.BadParameter(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}")
        args = ["worker", "-Q", queues, "-E", "--pool", pool, "--loglevel", loglevel,
                "--without-mingle", "--without-gossip"]  # fmt: skip
        if concurrency:
            args += ["-c", str(concurrency)]
        args += ["-n", hostname or f"{queues.replace(',', '+')}@%h"]
        if metrics_port:
            from mountsync.workers.metrics_server import prepare

            prepare(os.environ, metrics_host, metrics_port)
        _celery(*args)

    @app.command("beat")
    def beat(loglevel: str = typer.Option("INFO", "--loglevel")) -> None:
        """Run the scheduler (periodic reconcile of every mount). Any number may run: each entry is
        queued once per interval (a slot claimed in Redis, see workers/schedule.py)."""
        schedule = os.path.join(os.environ.get("MOUNTSYNC_STATE_DIR", "."), "celerybeat-schedule")
        _celery("beat", "--loglevel", loglevel, "-s", schedule, "-S", "mountsync.workers.schedule:SlotScheduler")

    @app.command("flower")
    def flower(
        port: int = typer.Option(5555, "--port", min=1, max=65535),
        address: str = typer.Option("127.0.0.1", "--address"),
        persistent: bool = typer.Option(
            False, "--persistent", help="Keep seen tasks across restarts (in MOUNTSYNC_STATE_DIR)."
        ),
        max_tasks: int = typer.Option(20000, "--max-tasks", min=1, help="Tasks kept in memory."),
        url_prefix: str = typer.Option("", "--url-prefix", help="When served under a path."),
        read_only: bool = typer.Option(False, "--read-only", help="Disable revoke/shutdown/apply."),
    ) -> None:
        """Run Flower, the ops UI (auth from FLOWER_BASIC_AUTH or FLOWER_AUTH/OAuth env)."""
        from mountsync.workers.flower import flower_args

        args = flower_args(os.environ, address=address, port=port, persistent=persistent,
                           max_tasks=max_tasks, url_prefix=url_prefix, read_only=read_only)  # fmt: skip
        celery = [sys.executable, "-m", "celery", "-A", "mountsync.workers.flower_app"]
        os.execvp(sys.executable, [*celery, "flower", *args])

    from mountsync.workers import guard_cli
    from mountsync.workers.alignment import cli as alignment_cli
    from mountsync.workers.migration import cli as migration_cli
    from mountsync.workers.sinks import cli as sinks_cli

    alignment_cli.register(app)
    migration_cli.register(app)
    sinks_cli.register(app)
    guard_cli.register(app)
