"""``mountsync worker | beat | flower``: the Celery processes, configured from the environment."""

from __future__ import annotations

import os
import sys

import typer

from shared.queues import ALL_QUEUES


def _celery(*args: str) -> None:
    # exec keeps signals (SIGTERM -> warm shutdown) going straight to Celery.
    os.execvp(sys.executable, [sys.executable, "-m", "celery", "-A", "workers.app", *args])


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        queues: str = typer.Option(
            ",".join(ALL_QUEUES), "-Q", "--queues", help="Queues to consume."
        ),
        concurrency: int = typer.Option(0, "-c", "--concurrency", help="Processes (0 = cores)."),
        pool: str = typer.Option("prefork", "--pool", help="prefork, threads or solo."),
        loglevel: str = typer.Option("INFO", "--loglevel"),
        hostname: str = typer.Option("", "--hostname", help="Worker name (default: queues@host)."),
    ) -> None:
        """Run a Celery worker (late acks, prefetch 1, task events on)."""
        unknown = sorted(set(queues.split(",")) - set(ALL_QUEUES))
        if unknown:
            raise typer.BadParameter(
                f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}"
            )
        args = ["worker", "-Q", queues, "-E", "--pool", pool, "--loglevel", loglevel,
                "--without-mingle", "--without-gossip"]  # fmt: skip
        if concurrency:
            args += ["-c", str(concurrency)]
        args += ["-n", hostname or f"{queues.replace(',', '+')}@%h"]
        _celery(*args)

    @app.command("beat")
    def beat(loglevel: str = typer.Option("INFO", "--loglevel")) -> None:
        """Run the scheduler (periodic reconcile of every mount). Run exactly one."""
        schedule = os.path.join(os.environ.get("MOUNTSYNC_STATE_DIR", "."), "celerybeat-schedule")
        _celery("beat", "--loglevel", loglevel, "-s", schedule)

    @app.command("flower")
    def flower(
        port: int = typer.Option(5555, "--port"),
        address: str = typer.Option("127.0.0.1", "--address"),
    ) -> None:
        """Run Flower, the ops UI (auth from FLOWER_BASIC_AUTH or FLOWER_AUTH/OAuth env)."""
        _celery("flower", f"--address={address}", f"--port={port}")

    for module_name in ("workers.alignment.cli", "workers.migration.cli"):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        module.register(app)
