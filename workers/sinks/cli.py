"""``mountsync webhook | connect | sink``: subscriptions, connectors and their cursors.

These write the catalog directly and nudge delivery by task name; the deliveries themselves run
in workers (queue ``sinks``). A webhook secret is printed once, by ``webhook add``, and stored
only encrypted (``secrets.py``); a connector's token stays in the environment variable it names.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import typer

from mountsync.shared.catalog.change_log import log_bounds
from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.catalog.sinks import safe_target, sink_status
from mountsync.shared.cli import connect_catalog, settings_of
from mountsync.shared.config import Settings
from mountsync.shared.errors import BadInput, DeliveryFailed, PlatformRecordMissing
from mountsync.shared.output import console, emit, emit_json
from mountsync.shared.queues import QUEUE_SINKS, TASK_SINK_DELIVER, make_client, send
from mountsync.workers.sinks import store
from mountsync.workers.sinks.label_studio_plan import LS_SCHEMES
from mountsync.workers.sinks.secrets import SecretBox, generate_secret, validate_secret
from mountsync.workers.sinks.webhook import WebhookReceiver

JSON = typer.Option(False, "--json", help="Print one JSON document on stdout.")
webhook_app = typer.Typer(help="Standard Webhooks subscriptions to changes, alerts and migrations.",
                          no_args_is_help=True)  # fmt: skip
connect_app = typer.Typer(help="Connectors: an annotation platform follows a mount.", no_args_is_help=True)
sink_app = typer.Typer(help="Sinks (webhooks, connectors): lag, pause, resume, replay.", no_args_is_help=True)


def _nudge(settings: Settings, sink_id: int) -> None:
    send(make_client(settings), TASK_SINK_DELIVER, sink_id, queue=QUEUE_SINKS)


def _check_mounts(conn: Any, mounts: list[str]) -> None:
    known = {m.name for m in Mounts(conn).list()}
    missing = [m for m in mounts if m not in known]
    if missing:
        raise BadInput(f"--mount {missing[0]}: no such mount (see `mountsync mount list`)")


def describe(sink: store.Sink) -> dict[str, Any]:
    """A sink just added (lag 0), with the fields of ``sink list --json`` (never its secret)."""
    return {
        "name": sink.name, "kind": sink.kind, "target": safe_target(sink.target), "mounts": list(sink.mounts),
        "events": list(sink.events), "state": sink.state, "cursor": sink.cursor,
        "events_cursor": sink.events_cursor, "lag_entries": 0, "lag_seconds": 0.0, "options": sink.options,
    }  # fmt: skip


def sink_rows(conn: Any, kind: str | None = None) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k not in ("id", "due")} for row in sink_status(conn, kind)]


@webhook_app.command("add")
def webhook_add(
    ctx: typer.Context,
    name: str,
    url: str,
    mount: list[str] = typer.Option([], "--mount", help="Only this mount's changes (repeatable)."),  # noqa: B008
    events: str = typer.Option("changes", "--events", help="changes, alerts, migrations (comma-separated)."),
    secret: str | None = typer.Option(None, "--secret", help="whsec_... (default: generated, printed once)."),
    as_json: bool = JSON,
) -> None:
    """Subscribe URL to signed deliveries from now on; prints the secret once when generated."""
    settings = settings_of(ctx)
    if not url.startswith(("http://", "https://")):
        raise BadInput(f"URL {safe_target(url)!r}: give an http:// or https:// address")
    topics = store.validate_events(events)
    plain = validate_secret(secret) if secret else generate_secret()
    sealed = SecretBox.from_extra(settings.extra).seal(plain)
    with connect_catalog(settings) as conn:
        _check_mounts(conn, mount)
        sink = store.add_sink(conn, name=name, kind="webhook", target=url, mounts=mount, events=topics,
                              options={}, secret=sealed, cursor=log_bounds(conn).head,
                              events_cursor=store.events_head(conn))  # fmt: skip
    data = describe(sink)
    if secret is None:
        data["secret"] = plain  # shown this once; the catalog keeps only the encrypted form
    if as_json:
        emit_json(data)
        return
    console.print(f"webhook {name} -> {safe_target(url)} ({', '.join(topics)}) from cursor {sink.cursor}")
    if secret is None:
        console.print(f"secret (shown once, store it with the receiver): {plain}")


@webhook_app.command("list")
def webhook_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Webhook subscriptions, their state and lag."""
    with connect_catalog(settings_of(ctx)) as conn:
        rows = sink_rows(conn, "webhook")
    emit(rows, as_json=as_json, columns=("name", "target", "mounts", "events", "state", "cursor", "lag_entries"))


@webhook_app.command("remove")
def webhook_remove(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Remove a subscription (nothing more is delivered to it)."""
    with connect_catalog(settings_of(ctx)) as conn:
        if store.get_sink(conn, name).kind != "webhook":
            raise BadInput(f"{name} is not a webhook; `mountsync sink list` shows what it is")
        store.remove_sink(conn, name)
    emit_json({"removed": name}) if as_json else console.print(f"webhook {name} removed")


@webhook_app.command("test")
def webhook_test(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Send one signed ``mountsync.test`` message now; exit 1 when the receiver does not accept it."""
    settings = settings_of(ctx)
    with connect_catalog(settings) as conn:
        sink = store.get_sink(conn, name)
    if sink.kind != "webhook" or sink.secret is None:
        raise BadInput(f"{name} is not a webhook; `mountsync sink list` shows what it is")
    receiver = WebhookReceiver(sink.name, sink.target, SecretBox.from_extra(settings.extra).open(sink.secret))
    message_id = f"test-{uuid.uuid4().hex}"
    try:
        status = receiver.post(message_id, {"type": "mountsync.test", "data": {"sink": name}})
    except DeliveryFailed as exc:
        raise DeliveryFailedExit(str(exc)) from None
    finally:
        receiver.close()
    data = {"name": name, "webhook_id": message_id, "status": status}
    emit_json(data) if as_json else console.print(f"webhook {name} accepted the test message ({status})")


class DeliveryFailedExit(BadInput):
    """The receiver refused or did not answer: a service problem, exit 1."""

    exit_code = 1


@connect_app.command("label-studio")
def connect_label_studio(
    ctx: typer.Context,
    name: str,
    mount: str = typer.Option(..., "--mount", help="The mount whose objects become tasks."),
    url: str = typer.Option(..., "--url", help="Label Studio's address, e.g. http://localhost:8080."),
    project: int = typer.Option(..., "--project", help="The project id."),
    token_env: str = typer.Option(..., "--token-env", help="Variable holding a personal access token."),
    prefix: str = typer.Option("", "--prefix", help="Only keys under this prefix."),
    data_field: str = typer.Option("image", "--data-field", help="The task data field ($image in the config)."),
    as_json: bool = JSON,
) -> None:
    """Keep a Label Studio project's tasks in step with a mount (workers need the same token variable)."""
    from mountsync.workers.connectors.label_studio_client import LabelStudioClient

    settings = settings_of(ctx)
    with connect_catalog(settings) as conn:
        found = Mounts(conn).get(mount)
        if found.provider.value not in LS_SCHEMES:
            raise BadInput(f"--mount {mount}: Label Studio reads s3, gs or azure buckets, not {found.provider.value}")
    client = LabelStudioClient.from_env(url, token_env, os.environ)
    try:
        client.project_title(project)  # proves the URL, the token and the project before anything is stored
    except PlatformRecordMissing:
        raise BadInput(f"--project {project}: Label Studio at {safe_target(url)} has no such project") from None
    finally:
        client.close()
    options = {"project": project, "token_env": token_env, "prefix": prefix, "data_field": data_field}
    sink = _add_connector(settings, name, "label-studio", url, mount, options)
    if as_json:
        emit_json(describe(sink))
    else:
        console.print(f"Label Studio project {project} follows {mount} as sink {name}")


@connect_app.command("girder")
def connect_girder(
    ctx: typer.Context,
    name: str,
    mount: str = typer.Option(..., "--mount", help="The mount whose objects become Girder items."),
    url: str = typer.Option(..., "--url", help="Girder's address, e.g. http://localhost:8010 (or …/api/v1)."),
    folder: str = typer.Option(..., "--folder", help="The id of the Girder folder that mirrors the mount."),
    api_key_env: str = typer.Option(..., "--api-key-env", help="Variable holding a Girder API key (an admin's)."),
    assetstore: str | None = typer.Option(
        None, "--assetstore", help="S3 assetstore id (default: the one on the bucket)."
    ),
    prefix: str = typer.Option("", "--prefix", help="Only keys under this prefix (mirrored relative to it)."),
    as_json: bool = JSON,
) -> None:
    """Keep a Girder (DIVE) folder tree in step with a mount (workers need the same key variable)."""
    from mountsync.workers.connectors.girder_client import GirderClient
    from mountsync.workers.connectors.girder_setup import check_target

    settings = settings_of(ctx)
    with connect_catalog(settings) as conn:
        found = Mounts(conn).get(mount)
    if found.provider.value != "s3":
        raise BadInput(
            f"--mount {mount}: Girder references objects through an S3 assetstore, not {found.provider.value}"
        )
    client = GirderClient.from_env(url, api_key_env, os.environ)
    try:
        store_ = check_target(client, folder, found.bucket, assetstore)
    finally:
        client.close()
    options = {"folder": folder, "assetstore": store_.id, "api_key_env": api_key_env, "prefix": prefix}
    sink = _add_connector(settings, name, "girder", url, mount, options)
    if as_json:
        emit_json(describe(sink))
    else:
        console.print(f"Girder folder {folder} follows {mount} as sink {name} (assetstore {store_.name})")


def _add_connector(settings: Any, name: str, kind: str, url: str, mount: str, options: dict[str, Any]) -> Any:
    """Record a connector sink and nudge it. It starts at the oldest entry the log still keeps, so
    the platform gets every object the log describes."""
    with connect_catalog(settings) as conn:
        start = log_bounds(conn).pruned_through
        sink = store.add_sink(conn, name=name, kind=kind, target=url, mounts=[mount],
                              events=("changes", "alerts"), options=options, secret=None, cursor=start,
                              events_cursor=store.events_head(conn))  # fmt: skip
    _nudge(settings, sink.id)
    return sink


@sink_app.command("list")
def sink_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Every sink with its state, cursor and lag (entries and seconds behind the head)."""
    with connect_catalog(settings_of(ctx)) as conn:
        rows = sink_rows(conn)
    emit(rows, as_json=as_json, columns=("name", "kind", "target", "state", "cursor", "lag_entries", "lag_seconds",
                                         "delivered", "last_error"))  # fmt: skip


def _cursor(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(f"--from {raw!r}: give a change-log cursor (a number, 0 or more)") from None
    if value < 0:
        raise BadInput(f"--from {raw!r}: give a change-log cursor (a number, 0 or more)")
    return value


@sink_app.command("replay")
def sink_replay(
    ctx: typer.Context,
    name: str,
    from_cursor: str = typer.Option(..., "--from", metavar="CURSOR", help="Deliver entries after this cursor."),
    as_json: bool = JSON,
) -> None:
    """Deliver again every entry after CURSOR (receivers deduplicate on webhook-id)."""
    settings = settings_of(ctx)
    cursor = _cursor(from_cursor)
    with connect_catalog(settings) as conn:
        sink = store.get_sink(conn, name)
        bounds = log_bounds(conn)
        if cursor < bounds.pruned_through:
            raise BadInput(f"--from {cursor}: entries up to {bounds.pruned_through} are past the retention")
        if cursor > bounds.head:
            raise BadInput(f"--from {cursor}: the log's head is {bounds.head}")
        store.replay_from(conn, sink.id, cursor)
    _nudge(settings, sink.id)
    emit_json({"name": name, "cursor": cursor}) if as_json else console.print(f"{name} replays after {cursor}")


def _set_state(ctx: typer.Context, name: str, state: str, as_json: bool) -> None:
    settings = settings_of(ctx)
    with connect_catalog(settings) as conn:
        sink = store.get_sink(conn, name)
        store.set_state(conn, sink.id, state, "paused by an operator" if state == "paused" else None)
    if state == "active":
        _nudge(settings, sink.id)
    emit_json({"name": name, "state": state}) if as_json else console.print(f"{name} is {state}")


@sink_app.command("pause")
def sink_pause(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Stop delivering (the cursor stays; changes wait in the log)."""
    _set_state(ctx, name, "paused", as_json)


@sink_app.command("resume")
def sink_resume(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Deliver again from the cursor, at once (clears the failure record)."""
    _set_state(ctx, name, "active", as_json)


@sink_app.command("alerts")
def sink_alerts(ctx: typer.Context, name: str | None = typer.Argument(None), as_json: bool = JSON) -> None:
    """Alerts raised by sinks: paused or disabled sinks, annotated tasks whose object was deleted."""
    with connect_catalog(settings_of(ctx)) as conn:
        rows = store.list_alerts(conn, name)
    emit(rows, as_json=as_json, columns=("id", "sink", "kind", "mount", "key", "status", "created_at"))


def register(app: typer.Typer) -> None:
    app.add_typer(webhook_app, name="webhook")
    app.add_typer(connect_app, name="connect")
    app.add_typer(sink_app, name="sink")
