"""``mountsync``: the CLI root. Producers and workers add their groups through the
``mountsync.cli`` entry-point group; commands that need a worker enqueue tasks by name.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import psycopg
import typer

# typer >= 0.26 vendors click: these, not the click package's, are what its commands raise.
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from mountsync.shared.config import Settings, load_settings, redact_url
from mountsync.shared.errors import BadInput, MountsyncError
from mountsync.shared.output import console, emit, emit_json, err_console

INTERRUPTED = 130  # typer turns Ctrl-C (KeyboardInterrupt) into this exit code

app = typer.Typer(
    name="mountsync",
    help="Keep buckets and an annotation platform's catalog in step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Catalog database.", no_args_is_help=True)
mount_app = typer.Typer(help="Mounts: a bucket prefix or directory mapped to a folder.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(mount_app, name="mount")

JSON = typer.Option(False, "--json", help="Print one JSON document on stdout.")


@dataclass
class State:
    settings: Settings


def settings_of(ctx: typer.Context) -> Settings:
    state: State = ctx.find_root().obj
    return state.settings


@app.callback()
def root(ctx: typer.Context) -> None:
    from mountsync.shared.logs import configure_logging

    settings = load_settings(os.environ)
    configure_logging(settings)
    ctx.obj = State(settings=settings)


def connect_catalog(settings: Settings) -> Any:
    from mountsync.shared.catalog.db import connect

    return connect(settings.database_url)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Create the database if needed and upgrade the catalog schema (idempotent)."""
    from mountsync.shared.catalog.db import upgrade

    heads = upgrade(settings_of(ctx).database_url)
    if as_json:
        emit_json({"schema": heads})
    else:
        console.print(f"catalog schema at {', '.join(heads)}")


@mount_app.command("add")
def mount_add(
    ctx: typer.Context,
    name: str,
    url: str,
    dest_folder: str = typer.Option("", "--dest-folder", help="Destination folder on the platform."),
    writable: bool = typer.Option(False, "--writable", help="Mount may be written (migrations)."),
    endpoint_url: str = typer.Option("", "--endpoint-url", help="S3-compatible endpoint (MinIO)."),
    region: str = typer.Option("", "--region"),
    credentials: str = typer.Option("", "--credentials", help="NAME of a credential set."),
    account_url: str = typer.Option("", "--account-url", help="Azure account URL."),
    reindex_interval: int = typer.Option(0, "--reindex-interval", help="Seconds between reconciles."),
    initial_reindex: bool = typer.Option(True, "--initial-reindex/--no-initial-reindex"),
    as_json: bool = JSON,
) -> None:
    """Register a mount after proving its credentials (list; write+delete when writable)."""
    from mountsync.shared.catalog.mounts import Mounts, validate_name, validate_options
    from mountsync.shared.storage import open_storage, parse_storage_url

    settings = settings_of(ctx)
    validate_name(name)
    parsed = parse_storage_url(url)
    options = validate_options(
        {
            "endpoint_url": endpoint_url,
            "region": region,
            "credentials": credentials,
            "account_url": account_url,
        }
    )
    open_storage(parsed, options).check(writable=writable)
    with connect_catalog(settings) as conn:
        mount = Mounts(conn).add(
            name,
            url,
            dest_folder=dest_folder,
            writable=writable,
            options=options,
            reindex_interval_s=reindex_interval or None,
        )
        run_id = _queue_reindex(settings, conn, mount.name, mount.id, "", "mount-add") if initial_reindex else None
    if as_json:
        emit_json({**mount.describe(), "initial_reindex_run": run_id})
    else:
        console.print(
            f"mount {mount.name!r} added: {mount.url} -> {mount.dest_folder}"
            + (f" (initial reindex queued as run {run_id})" if run_id else "")
        )


@mount_app.command("list")
def mount_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """All mounts."""
    from mountsync.shared.catalog.mounts import Mounts

    with connect_catalog(settings_of(ctx)) as conn:
        mounts = [m.describe() for m in Mounts(conn).list()]
    emit(mounts, as_json=as_json, columns=("name", "url", "dest_folder", "writable"))


@mount_app.command("show")
def mount_show(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """One mount, with live object counts and its last reindex."""
    from mountsync.shared.catalog.mounts import Mounts
    from mountsync.shared.catalog.objects import mount_totals
    from mountsync.shared.catalog.runs import last_run

    with connect_catalog(settings_of(ctx)) as conn:
        mount = Mounts(conn).get(name)
        totals = mount_totals(conn, mount.id)
        run = last_run(conn, mount.id)
    data = {
        **mount.describe(),
        "objects": totals.objects,
        "bytes": totals.bytes,
        "folders": totals.folders,
        "last_reindex": run.describe() if run else None,
    }
    emit(data, as_json=as_json)


@mount_app.command("check")
def mount_check(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Run the credential check of an existing mount again."""
    from mountsync.shared.catalog.mounts import Mounts
    from mountsync.shared.storage import open_storage

    with connect_catalog(settings_of(ctx)) as conn:
        mount = Mounts(conn).get(name)
    open_storage(mount.storage_url, mount.options).check(writable=mount.writable)
    if as_json:
        emit_json({"mount": name, "ok": True, "writable": mount.writable})
    else:
        console.print(f"mount {name!r}: credentials OK ({'read-write' if mount.writable else 'read-only'})")


@mount_app.command("remove")
def mount_remove(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Remove a mount and its catalog rows (the bucket is not touched)."""
    from mountsync.shared.catalog.mounts import Mounts

    with connect_catalog(settings_of(ctx)) as conn:
        Mounts(conn).remove(name)
    if as_json:
        emit_json({"removed": name})
    else:
        console.print(f"mount {name!r} removed")


def _queue_reindex(settings: Settings, conn: Any, name: str, mount_id: int, prefix: str, trigger: str) -> int:
    from mountsync.shared.catalog.runs import create_run
    from mountsync.shared.queues import QUEUE_REINDEX, TASK_REINDEX, make_client, send

    run_id = create_run(conn, mount_id, prefix, trigger)
    send(make_client(settings), TASK_REINDEX, name, prefix, run_id, trigger, queue=QUEUE_REINDEX)
    return run_id


@app.command("reindex")
def reindex(
    ctx: typer.Context,
    name: str,
    prefix: str = typer.Option("", "--prefix", help="Only this folder (relative to the mount)."),
    wait: bool = typer.Option(False, "--wait", help="Show progress and print the summary."),
    timeout: float = typer.Option(0, "--timeout", help="With --wait: give up after N seconds."),
    as_json: bool = JSON,
) -> None:
    """Queue a full reindex of a mount (list, diff against the catalog, apply differences)."""
    from mountsync.shared.catalog.mounts import Mounts

    settings = settings_of(ctx)
    if any(part in ("..", ".") for part in prefix.split("/")):
        raise BadInput(f"--prefix {prefix!r}: '.' and '..' are not allowed")
    with connect_catalog(settings) as conn:
        mount = Mounts(conn).get(name)
        run_id = _queue_reindex(settings, conn, name, mount.id, prefix.strip("/"), "manual")
        if not wait:
            if as_json:
                emit_json({"run": run_id, "state": "queued"})
            else:
                console.print(f"reindex of {name!r} queued as run {run_id}")
            return
        from mountsync.shared.progress import wait_for_run

        run = wait_for_run(conn, run_id, timeout=timeout or None, quiet=as_json)
    if as_json:
        emit_json(run.describe())
    else:
        emit(run.describe(), as_json=False, title=f"reindex {name}")
    if run.state == "failed":
        raise typer.Exit(1)


@app.command("ls")
def ls(
    ctx: typer.Context,
    name: str,
    prefix: str = typer.Option("", "--prefix", help="Key prefix, relative to the mount."),
    limit: int = typer.Option(0, "--limit", help="At most N objects (0 = all)."),
    as_json: bool = JSON,
) -> None:
    """Live catalog objects of a mount: key, size, etag, version."""
    from mountsync.shared.catalog.mounts import Mounts
    from mountsync.shared.catalog.objects import live_objects

    with connect_catalog(settings_of(ctx)) as conn:
        mount = Mounts(conn).get(name)
        rows = live_objects(conn, mount.id, mount.prefix + prefix, limit)
    data = [row.describe() for row in rows]
    emit(data, as_json=as_json, columns=("key", "size", "etag", "version"))


@app.command("demo")
def demo(
    ctx: typer.Context,
    data_dir: str = typer.Option(".mountsync", "--data-dir", help="Where embedded servers and sample files live."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Stay up with Flower afterwards."),
    as_json: bool = JSON,
) -> None:
    """Mirror a sample image tree end to end: servers, worker, producer, changes, catalog."""
    from mountsync.shared.demo.run import run_demo

    summary = run_demo(settings_of(ctx), os.path.abspath(data_dir), keep_running=keep_running, quiet=as_json)
    if as_json:
        emit_json(summary)


def _load_plugins() -> None:
    for entry in entry_points(group="mountsync.cli"):
        entry.load()(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one clear line on stderr for every expected error, never a traceback."""
    from dotenv import load_dotenv

    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
    _load_plugins()
    command = typer.main.get_command(app)
    started = time.monotonic()
    try:
        code = command.main(
            args=argv if argv is not None else sys.argv[1:], prog_name="mountsync", standalone_mode=False
        )
    except NoArgsIsHelpError as exc:
        # No arguments: the help is the whole answer (rich has printed it; plain click carries it here).
        if exc.format_message().strip():
            exc.show()
        sys.exit(exc.exit_code)
    except UsageError as exc:
        # One line, as for every other mistake: what is wrong and where the help is.
        command_path = exc.ctx.command_path if exc.ctx else "mountsync"
        print(f"mountsync: error: {exc.format_message()} (see `{command_path} --help`)", file=sys.stderr)
        sys.exit(2)
    except ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except typer.Abort:  # end of input (EOF) where a command read stdin
        print("mountsync: aborted (end of input)", file=sys.stderr)
        sys.exit(1)
    except MountsyncError as exc:
        print(f"mountsync: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except psycopg.errors.UndefinedTable:
        url = redact_url(load_settings(os.environ).database_url)
        print(f"mountsync: error: the catalog has no schema at {url}; run `mountsync db upgrade`", file=sys.stderr)
        sys.exit(1)
    # With standalone_mode=False an exit code (``typer.Exit(n)``, Ctrl-C) comes back as the return value.
    code = code if isinstance(code, int) else 0
    if code == INTERRUPTED:
        err_console.print(f"mountsync: interrupted after {time.monotonic() - started:.1f}s")
    sys.exit(code)
