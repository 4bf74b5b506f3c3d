"""``mountsync datasets | frames | pin | alerts``: the alignment guard from the command line.

These read and write the catalog directly (``shared/`` code plus this package's services);
nothing here needs a running worker. ``pin`` and ``alerts ack`` run the same service functions
the Celery tasks run.
"""

from __future__ import annotations

from typing import Any

import typer

from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.cli import connect_catalog, settings_of
from mountsync.shared.errors import BadInput
from mountsync.shared.output import console, emit, emit_json
from mountsync.workers.alignment import service, store
from mountsync.workers.alignment.config import AlignmentConfig
from mountsync.workers.alignment.mountio import StorageIO
from mountsync.workers.alignment.notify import describe_alert
from mountsync.workers.sinks.events import publish_closed_alerts

JSON = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def describe_dataset(ds: store.Dataset, open_alerts: int) -> dict[str, Any]:
    return {
        "dataset": ds.path, "folder": ds.folder, "type": ds.type, "name": ds.name,
        "frames": ds.frame_count, "present": ds.present, "pinned": ds.pinned,
        "pinned_frames": ds.pinned_frames, "pinned_at": _iso(ds.pinned_at),
        "pinned_by": ds.pinned_by, "last_annotated": ds.last_annotated,
        "quarantined": ds.quarantined, "quarantined_at": _iso(ds.quarantined_at),
        "open_alerts": open_alerts, "order": ds.order_policy,
        "annotations": list(ds.annotations), "sidecars": list(ds.sidecars),
        "checked_at": _iso(ds.checked_at),
    }  # fmt: skip


def _affected(alert: dict[str, Any]) -> str:
    if alert["first_shifted_index"] is None:
        return "none"
    text = f"from #{alert['first_shifted_index']}: {alert['frames_moved']}"
    if alert["annotated_frames_moved"] is not None:
        text += f" ({alert['annotated_frames_moved']} annotated)"
    return text


def datasets_command(ctx: typer.Context, name: str, as_json: bool = JSON) -> None:
    """Datasets of a mount: type, frame count, pinned, quarantined, open alerts."""
    with connect_catalog(settings_of(ctx)) as conn:
        mount = Mounts(conn).get(name)
        rows = store.list_datasets(conn, mount.id)
        counts = dict(conn.execute(
            "SELECT dataset_id, count(*) FROM alignment_alerts "
            "WHERE mount_id = %s AND status = 'open' GROUP BY dataset_id", (mount.id,),
        ).fetchall())  # fmt: skip
    data = [describe_dataset(ds, int(counts.get(ds.id, 0))) for ds in rows]
    emit(data, as_json=as_json, columns=("dataset", "type", "frames", "pinned", "last_annotated",
                                         "quarantined", "open_alerts", "order"))  # fmt: skip


def frames_command(ctx: typer.Context, name: str, folder: str, as_json: bool = JSON) -> None:
    """A dataset's ordered frames; the pinned manifest (and versions) while it is quarantined."""
    settings = settings_of(ctx)
    config = AlignmentConfig.from_settings(settings)
    with connect_catalog(settings) as conn:
        mount = Mounts(conn).get(name)
        view = service.frames_view(conn, config, mount, folder, StorageIO(mount))
    frames = service.describe_frames(view)
    if as_json:
        emit_json({"mount": name, "dataset": view.path, "type": view.type, "source": view.source,
                   "quarantined": view.quarantined, "order": view.order, "frames": frames})  # fmt: skip
        return
    columns = ["index", "key", "etag", "version"] + (["live"] if view.source == "pinned" else [])
    title = f"{name}:{view.path or '/'} ({view.type}, {view.order} order"
    title += ", QUARANTINED: pinned manifest)" if view.quarantined else ")"
    emit(frames, as_json=False, columns=columns, title=title)


def _index(raw: str | None) -> int | None:
    # Parsed here so a bad value is one line and exit 2 like every other input error.
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadInput(f"--last-annotated {raw!r}: give a frame index (0 or more)") from None


def pin_command(
    ctx: typer.Context,
    name: str,
    folder: str,
    last_annotated: str | None = typer.Option(
        None, "--last-annotated", metavar="N", help="Index (0-based) of the last annotated frame."
    ),
    order: str | None = typer.Option(None, "--order", help="Frame order: dive, lexicographic or manifest."),
    as_json: bool = JSON,
) -> None:
    """Pin (or re-pin) a dataset's frame manifest; ends its quarantine and closes its alerts."""
    settings = settings_of(ctx)
    config = AlignmentConfig.from_settings(settings)
    with connect_catalog(settings) as conn:
        mount = Mounts(conn).get(name)
        result = service.pin_dataset(conn, config, mount, folder, StorageIO(mount),
                                     last_annotated=_index(last_annotated), order=order,
                                     by="cli")  # fmt: skip
        publish_closed_alerts(conn, result.closed_alerts)
    data = {**describe_dataset(result.dataset, 0), "mount": name,
            "versions_pinned": result.versions, "closed_alerts": result.closed_alerts}  # fmt: skip
    if as_json:
        emit_json(data)
        return
    ds = result.dataset
    parts = [f"pinned {name}:{ds.path or '/'}: {result.frames} frames"]
    if ds.last_annotated is not None:
        parts.append(f"annotated up to #{ds.last_annotated}")
    if result.versions:
        parts.append(f"{result.versions} object versions")
    if result.closed_alerts:
        parts.append(f"closed alerts {', '.join(map(str, result.closed_alerts))}")
    console.print(", ".join(parts))


def _list_alerts(ctx: typer.Context, name: str | None, show_all: bool, as_json: bool) -> None:
    with connect_catalog(settings_of(ctx)) as conn:
        mount_id = Mounts(conn).get(name).id if name else None
        alerts = [describe_alert(a) for a in store.list_alerts(conn, mount_id,
                                                               include_closed=show_all)]  # fmt: skip
    if as_json:
        emit_json(alerts)
        return
    rows = [{**a, "affected": _affected(a), "kinds": ",".join(a["kinds"])} for a in alerts]
    emit(rows, as_json=False, columns=("id", "mount", "dataset", "kinds", "affected", "breaking",
                                       "quarantined", "status", "created_at"))  # fmt: skip


def _ack(ctx: typer.Context, raw_id: str, as_json: bool) -> None:
    try:
        alert_id = int(raw_id)
    except ValueError:
        raise BadInput(f"alert id {raw_id!r} is not a number; `mountsync alerts` lists them") from None
    settings = settings_of(ctx)
    config = AlignmentConfig.from_settings(settings)
    with connect_catalog(settings) as conn:
        alert, pin = service.ack_alert(conn, config, alert_id, StorageIO, by="cli")
        publish_closed_alerts(conn, [alert_id])
    data = {**describe_alert(alert), "repinned_frames": pin.frames,
            "last_annotated": pin.dataset.last_annotated}  # fmt: skip
    if as_json:
        emit_json(data)
    else:
        console.print(f"alert {alert_id} acknowledged: {alert.mount}:{alert.path or '/'} re-pinned "
                      f"with {pin.frames} frames, quarantine lifted")  # fmt: skip


def alerts_command(
    ctx: typer.Context,
    target: str | None = typer.Argument(None, help="A mount NAME, or `ack`."),
    alert_id: str | None = typer.Argument(None, help="With `ack`: the alert ID."),
    show_all: bool = typer.Option(False, "--all", help="Include acked and resolved alerts."),
    as_json: bool = JSON,
) -> None:
    """Alignment alerts (`alerts [NAME] [--all]`), or acknowledge one (`alerts ack ID`)."""
    if target == "ack" and alert_id is not None:
        _ack(ctx, alert_id, as_json)
        return
    if alert_id is not None:
        raise BadInput(f"unexpected argument {alert_id!r}; use `alerts [NAME]` or `alerts ack ID`")
    if target == "ack":
        with connect_catalog(settings_of(ctx)) as conn:
            if not any(m.name == "ack" for m in Mounts(conn).list()):
                raise BadInput("`alerts ack` needs the alert ID: mountsync alerts ack ID")
    _list_alerts(ctx, target, show_all, as_json)


def register(app: typer.Typer) -> None:
    """Add the top-level alignment commands to the ``mountsync`` CLI."""
    app.command("datasets")(datasets_command)
    app.command("frames")(frames_command)
    app.command("pin")(pin_command)
    app.command("alerts")(alerts_command)
