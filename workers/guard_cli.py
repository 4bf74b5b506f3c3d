"""``mountsync deletes list|approve`` and ``mountsync mount set --delete-guard``: the mass-delete
guard from the command line (see shared/catalog/delete_guard.py for the rule).

These read and write the catalog directly; approving applies the held deletes through the one
write path and publishes their feed entries, so no worker is needed.
"""

from __future__ import annotations

import typer

from mountsync.shared.catalog.delete_guard import parse_guard
from mountsync.shared.catalog.held import approve, get_guard, held_count, list_held, open_alert_id, set_guard
from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.cli import connect_catalog, mount_app, settings_of
from mountsync.shared.config import Settings
from mountsync.shared.output import console, emit, emit_json

JSON = typer.Option(False, "--json", help="Print one JSON document on stdout.")
deletes_app = typer.Typer(help="Deletes held by the mass-delete guard.", no_args_is_help=True)


def _publish_feed(settings: Settings) -> None:
    """Best effort: a worker's next apply (or the reconcile) drains what is left in the outbox."""
    import redis

    from mountsync.shared.catalog.apply import drain_feed
    from mountsync.shared.queues import FEED_STREAM

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=10)
    try:
        with connect_catalog(settings) as conn:
            drain_feed(conn, client, f"{settings.redis_prefix}{FEED_STREAM}", settings.feed_maxlen)
    except Exception as exc:  # Redis down: the outbox keeps the rows
        console.print(f"[yellow]feed not published yet ({type(exc).__name__}); a worker will publish it[/]")
    finally:
        client.close()


@deletes_app.command("list")
def deletes_list(
    ctx: typer.Context,
    mount: str,
    limit: int = typer.Option(0, "--limit", min=0, help="At most N (0 = all)."),
    as_json: bool = JSON,
) -> None:
    """Deletes held for a mount: key, kind, version, when held."""
    with connect_catalog(settings_of(ctx)) as conn:
        found = Mounts(conn).get(mount)
        held = [h.describe() for h in list_held(conn, found.id, limit)]
        total = held_count(conn, found.id)
        guard = get_guard(conn, found.id)
        alert = open_alert_id(conn, found.id)
    if as_json:
        emit_json({"mount": mount, "guard": guard.describe(), "held": total, "alert": alert, "deletes": held})
        return
    emit(held, as_json=False, columns=("key", "kind", "version", "source", "held_at"))
    console.print(f"{total} delete(s) held for {mount!r} (guard {guard.describe()})"
                  + (f"; alert {alert}" if alert else ""))  # fmt: skip


@deletes_app.command("approve")
def deletes_approve(ctx: typer.Context, mount: str, as_json: bool = JSON) -> None:
    """Apply every delete held for a mount (the objects leave the catalog; the feed tells the platforms)."""
    settings = settings_of(ctx)
    with connect_catalog(settings) as conn:
        found = Mounts(conn).get(mount)
        taken, _ = approve(conn, found)
    _publish_feed(settings)
    if as_json:
        emit_json({"mount": mount, "approved": taken})
    else:
        console.print(f"{taken} held delete(s) of {mount!r} applied")


def mount_set(
    ctx: typer.Context,
    name: str,
    delete_guard: str = typer.Option(
        ...,
        "--delete-guard",
        help="PERCENT:MINIMUM of live objects deleted within 10 min before deletes are held; 0 disables.",
    ),
    as_json: bool = JSON,
) -> None:
    """Change a mount's settings (the mass-delete guard)."""
    guard = parse_guard(delete_guard)
    with connect_catalog(settings_of(ctx)) as conn:
        found = Mounts(conn).get(name)
        set_guard(conn, found.id, guard)
    if as_json:
        emit_json({"mount": name, "delete_guard": guard.describe()})
    else:
        console.print(f"mount {name!r}: delete guard {guard.describe()}")


def register(app: typer.Typer) -> None:
    app.add_typer(deletes_app, name="deletes")
    mount_app.command("set")(mount_set)
