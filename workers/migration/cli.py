"""``mountsync migrate ...``: submit, watch, list, cancel and resume migration jobs.

Commands talk to PostgreSQL and Redis through ``mountsync.shared.migration.client`` (tasks are sent by
name); nothing here imports worker code.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer

from mountsync.shared.errors import BadInput

migrate_app = typer.Typer(help="Migration jobs: copy files into buckets, verified.", no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print one JSON document on stdout.")
OPTIONS = typer.Option(None, "--option", "-o", help="KEY=VALUE tuning, e.g. part_size=32MiB (repeatable).")
NO_WORKER_HINT_S = 10.0
FINISHED = ("completed", "completed_with_errors", "failed", "cancelled")
UNITS = {"k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
         "g": 1000**3, "gb": 1000**3, "gib": 1024**3}  # fmt: skip


def register(app: typer.Typer) -> None:
    app.add_typer(migrate_app, name="migrate")


def _client(ctx: typer.Context) -> Any:
    from mountsync.shared.cli import settings_of
    from mountsync.shared.migration.client import MigrationClient

    return MigrationClient(settings_of(ctx))


# --- submit --------------------------------------------------------------------------------
def read_items(path: str) -> list[dict[str, Any]]:
    """Items from a JSON-lines file (``-`` = stdin): one {entity_id, path, ...} per line."""
    handle = sys.stdin if path == "-" else None
    try:
        lines = handle.read().splitlines() if handle else Path(path).read_text("utf-8").splitlines()
    except OSError as exc:
        raise BadInput(f"--items {path}: {exc.strerror or exc}") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except ValueError as exc:
            raise BadInput(f"--items {path} line {number}: not JSON ({exc})") from None
        except RecursionError:
            raise BadInput(f"--items {path} line {number}: JSON nested too deeply to read") from None
    return items


def parse_value(text: str) -> Any:
    """An option value: a size like 16MiB, a JSON literal (8, true, 0.5), or a string."""
    lowered = text.strip().lower()
    for unit in sorted(UNITS, key=len, reverse=True):
        number = lowered[: -len(unit)]
        if lowered.endswith(unit) and number.replace(".", "", 1).isdigit():
            return int(float(number) * UNITS[unit])
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not a literal: the option's own check names the problem
        return text


def build_spec(
    source: str, dest: str, items: str | None, callback: str | None, callback_task: str | None,
    callback_queue: str, job_id: str | None, options: list[str], source_endpoint: str,
    dest_endpoint: str,
) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"source": source, "destination": dest}
    if job_id:
        spec["job_id"] = job_id
    if items:
        spec["items"] = read_items(items)
    if callback and callback_task:
        raise BadInput("give either --callback URL or --callback-task NAME, not both")
    if callback:
        spec["callback"] = {"url": callback}
    elif callback_task:
        spec["callback"] = {"task": callback_task, "queue": callback_queue}
    opts: dict[str, Any] = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--option {option!r}: write KEY=VALUE, like part_size=32MiB")
        opts[key.strip()] = parse_value(value)
    for side, endpoint in (("source_storage", source_endpoint), ("destination_storage", dest_endpoint)):
        if endpoint:
            opts[side] = {**opts.get(side, {}), "endpoint_url": endpoint}
    if opts:
        spec["options"] = opts
    return spec


@migrate_app.command("submit")
def submit(
    ctx: typer.Context,
    source: str = typer.Option(..., "--source", help="Source URL (file:///path or a bucket URL)."),
    dest: str = typer.Option(..., "--dest", help="Destination bucket URL, e.g. s3://bucket/prefix."),
    items: str = typer.Option(None, "--items", help="JSON-lines file of {entity_id, path} (- = stdin)."),
    callback: str = typer.Option(None, "--callback", help="URL that receives link batches (POST)."),
    callback_task: str = typer.Option(None, "--callback-task", help="Celery task that gets links."),
    callback_queue: str = typer.Option("celery", "--callback-queue", help="Queue of that task."),
    job_id: str = typer.Option(None, "--job-id", help="Choose the job id (idempotent resubmits)."),
    option: list[str] = OPTIONS,
    source_endpoint: str = typer.Option("", "--source-endpoint-url", help="S3-compatible endpoint."),
    dest_endpoint: str = typer.Option("", "--dest-endpoint-url", help="S3-compatible endpoint."),
    watch: bool = typer.Option(False, "--watch", help="Then follow progress until it ends."),
    as_json: bool = JSON,
) -> None:
    """Queue a migration job and print its id."""
    spec = build_spec(source, dest, items, callback, callback_task, callback_queue, job_id,
                      option or [], source_endpoint, dest_endpoint)  # fmt: skip
    with _client(ctx) as client:
        new_id = client.submit(spec)
        if watch:
            _watch(client, new_id, as_json=as_json)
            return
    if as_json:
        from mountsync.shared.output import emit_json

        emit_json({"job_id": new_id, "state": "submitted"})
    else:
        print(new_id)


# --- status --------------------------------------------------------------------------------
def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def human_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def summary(p: Any) -> dict[str, Any]:
    """The human view of a job's progress."""
    return {
        "job": p.job_id,
        "state": p.state + (f" ({p.reason})" if p.reason else ""),
        "source": p.source,
        "destination": p.destination,
        "items": f"{p.items_finished:,}/{p.items_total:,}" + ("" if p.planned else "+ (listing)"),
        "done / skipped / failed": f"{p.items_done:,} / {p.items_skipped:,} / {p.items_failed:,}",
        "bytes": f"{human_bytes(p.bytes_done)} / {human_bytes(p.bytes_total)}",
        "rate": f"{human_bytes(p.rate_bps)}/s",
        "eta": human_eta(p.eta_s),
        "links delivered": f"{p.links_delivered:,}",
    }


def _watch(client: Any, job_id: str, *, as_json: bool, interval: float = 0.5) -> None:
    from rich.progress import BarColumn, Progress, TextColumn

    from mountsync.shared.output import err_console

    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.fields[items]}  {task.fields[bytes]}  {task.fields[rate]}  "
                          "eta {task.fields[eta]}"))  # fmt: skip
    started = time.monotonic()
    with Progress(*columns, console=err_console, transient=True, disable=as_json) as bar:
        task = bar.add_task(job_id, total=None, items="", bytes="", rate="", eta="")
        while True:
            p = client.status(job_id)
            s = summary(p)
            if p.state == "submitted" and time.monotonic() - started > NO_WORKER_HINT_S:
                s["eta"] += "  (no worker on queue 'migrations'? start one: mountsync worker)"
            total = p.bytes_total or p.items_total or None
            done = p.bytes_done if p.bytes_total else p.items_finished
            bar.update(task, total=total, completed=done, description=f"{job_id[:12]} {p.state}",
                       items=f"items {s['items']}", bytes=s["bytes"], rate=s["rate"],
                       eta=s["eta"])  # fmt: skip
            if p.state in FINISHED:
                break
            time.sleep(interval)
    _show(client, p, as_json=as_json)
    if p.state != "completed":
        raise typer.Exit(1)


def _show(client: Any, p: Any, *, as_json: bool) -> None:
    from mountsync.shared.output import emit, emit_json

    failures = client.failures(p.job_id) if p.items_failed else []
    if as_json:
        emit_json({**p.to_json(), "failures": failures})
        return
    emit(summary(p), as_json=False, title=f"migration {p.job_id}")
    if failures:
        emit(failures, as_json=False, columns=("entity_id", "path", "reason"), title="failed items")


@migrate_app.command("status")
def status(
    ctx: typer.Context,
    job_id: str,
    watch: bool = typer.Option(False, "--watch", help="Follow with a progress bar until it ends."),
    as_json: bool = JSON,
) -> None:
    """State, items total/done/skipped/failed, bytes, rate and ETA of a job."""
    with _client(ctx) as client:
        if watch:
            _watch(client, job_id, as_json=as_json)
        else:
            _show(client, client.status(job_id), as_json=as_json)


@migrate_app.command("list")
def list_jobs(
    ctx: typer.Context,
    state: str = typer.Option(None, "--state", help="Only jobs in this state."),
    limit: int = typer.Option(50, "--limit", help="At most N jobs, newest first."),
    as_json: bool = JSON,
) -> None:
    """Recent migration jobs."""
    from mountsync.shared.output import emit

    with _client(ctx) as client:
        jobs = client.list(limit=limit, state=state)
    if as_json:
        emit([p.to_json() for p in jobs], as_json=True)
        return
    rows = [{"job": p.job_id, "state": p.state, "items": f"{p.items_finished}/{p.items_total}",
             "failed": p.items_failed, "bytes": human_bytes(p.bytes_done),
             "destination": p.destination} for p in jobs]  # fmt: skip
    emit(rows, as_json=False, columns=("job", "state", "items", "failed", "bytes", "destination"))


@migrate_app.command("cancel")
def cancel(ctx: typer.Context, job_id: str, as_json: bool = JSON) -> None:
    """Cancel a job: running items stop between parts and their uploads are aborted.

    Copies already made stay; the source is never touched."""
    with _client(ctx) as client:
        p = client.cancel(job_id)
    if as_json:
        from mountsync.shared.output import emit_json

        emit_json(p.to_json())
    else:
        print(f"job {job_id}: {p.state}")


@migrate_app.command("resume")
def resume(ctx: typer.Context, job_id: str, as_json: bool = JSON) -> None:
    """Queue a job's unfinished chunks again (after workers were lost; the sweep also does it)."""
    with _client(ctx) as client:
        p = client.resume(job_id)
    if as_json:
        from mountsync.shared.output import emit_json

        emit_json(p.to_json())
    else:
        print(f"job {job_id}: {p.state}, unfinished chunks queued again")
