"""Waiting on a reindex run with a live progress display (``reindex --wait``)."""

from __future__ import annotations

import time

import psycopg
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from mountsync.shared.catalog.runs import ReindexRun, get_run
from mountsync.shared.errors import MountsyncError
from mountsync.shared.output import err_console

POLL_S = 0.2
NO_WORKER_HINT_S = 10.0


class WaitTimedOut(MountsyncError):
    """The run did not finish within ``--timeout``."""


def _describe(run: ReindexRun) -> str:
    c = run.counts
    return (
        f"{run.state}: listed {c['listed']:,}  created {c['created']:,}  "
        f"updated {c['updated']:,}  deleted {c['deleted']:,}  "
        f"folders {c['folders_checked']:,} checked / {c['folders_skipped']:,} in sync"
    )


def wait_for_run(conn: psycopg.Connection, run_id: int, *, timeout: float | None, quiet: bool) -> ReindexRun:
    """Poll the run until it finishes; progress goes to stderr so ``--json`` stdout stays clean."""
    started = time.monotonic()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True, disable=quiet) as progress:
        task = progress.add_task("queued", total=None)
        while True:
            run = get_run(conn, run_id)
            if run is None:
                raise MountsyncError(f"reindex run {run_id} vanished (mount removed?)")
            waited = time.monotonic() - started
            text = _describe(run)
            if run.state == "queued" and waited > NO_WORKER_HINT_S:
                text += "  (no worker on queue 'reindex'? start one: mountsync worker)"
            progress.update(task, description=text)
            if run.done:
                return run
            if timeout is not None and waited > timeout:
                raise WaitTimedOut(
                    f"reindex run {run_id} still {run.state} after {timeout:.0f}s; "
                    "it keeps running: check it with `mountsync mount show`"
                )
            time.sleep(POLL_S)
