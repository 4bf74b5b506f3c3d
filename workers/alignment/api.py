"""``/api/v1`` routes of the alignment guard: datasets, frames, pins and alerts.

They run the same service functions as ``mountsync datasets | frames | pin | alerts`` and plug
into ``serve``'s app through the ``mountsync.api`` entry-point group (``producers/`` cannot
import ``workers/``). Field names are the CLI's ``--json`` ones.
"""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, Field

from mountsync.shared.api.auth import require_write
from mountsync.shared.api.deps import catalog, settings
from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.config import Settings
from mountsync.shared.errors import BadInput, NotFound
from mountsync.workers.alignment import service, store
from mountsync.workers.alignment.cli import describe_dataset
from mountsync.workers.alignment.config import AlignmentConfig
from mountsync.workers.alignment.mountio import StorageIO
from mountsync.workers.alignment.notify import describe_alert

router = APIRouter(tags=["datasets and alerts"])
Catalog = Annotated[psycopg.Connection, Depends(catalog)]
SettingsDep = Annotated[Settings, Depends(settings)]
ALERT_STATUSES = ("open", "acked", "resolved", "all")


class PinBody(BaseModel):
    last_annotated: int | None = Field(None, ge=0, description="index (0-based) of the last annotated frame")
    order: str | None = Field(None, max_length=40, description="dive, lexicographic or manifest")


@router.get("/mounts/{mount}/datasets")
def list_datasets(mount: str, conn: Catalog) -> dict[str, Any]:
    found = Mounts(conn).get(mount)
    counts: dict[int, int] = dict(conn.execute(
        "SELECT dataset_id, count(*) FROM alignment_alerts WHERE mount_id = %s AND status = 'open' "
        "GROUP BY dataset_id", (found.id,),
    ).fetchall())  # fmt: skip
    rows = [describe_dataset(ds, int(counts.get(ds.id, 0))) for ds in store.list_datasets(conn, found.id)]
    return {"mount": mount, "datasets": rows, "next_cursor": None}


@router.get("/mounts/{mount}/datasets/{folder:path}/frames")
def frames(mount: str, folder: str, conn: Catalog, cfg: SettingsDep) -> dict[str, Any]:
    """The frames to use (the pinned manifest while quarantined, else the current order), and the
    pinned manifest with each frame's live state (``same``, ``changed``, ``missing``)."""
    found = Mounts(conn).get(mount)
    config = AlignmentConfig.from_settings(cfg)
    view = service.frames_view(conn, config, found, _folder(folder), StorageIO(found))
    if not view.type:
        raise NotFound(f"no dataset {folder!r} in mount {mount!r}")
    rows = store.datasets_at(conn, found.id, view.path)
    pinned = None
    if rows and rows[0].pinned:
        manifest = service.FramesView(view.path, view.type, "pinned", view.quarantined, view.order,
                                      store.pinned_frames(conn, rows[0].id), view.live)  # fmt: skip
        pinned = service.describe_frames(manifest)
    return {"mount": mount, "dataset": view.path, "type": view.type, "source": view.source,
            "quarantined": view.quarantined, "order": view.order,
            "frames": service.describe_frames(view), "pinned": pinned}  # fmt: skip


@router.post("/mounts/{mount}/datasets/{folder:path}/pin", dependencies=[Depends(require_write)])
def pin(mount: str, folder: str, conn: Catalog, cfg: SettingsDep,
        body: Annotated[PinBody | None, Body()] = None) -> dict[str, Any]:  # fmt: skip
    """Pin (or re-pin) the dataset's frame manifest, as ``mountsync pin``; ends its quarantine."""
    found = Mounts(conn).get(mount)
    config = AlignmentConfig.from_settings(cfg)
    body = body or PinBody(last_annotated=None, order=None)
    result = service.pin_dataset(conn, config, found, _folder(folder), StorageIO(found),
                                 last_annotated=body.last_annotated, order=body.order, by="api")  # fmt: skip
    return {**describe_dataset(result.dataset, 0), "mount": mount,
            "versions_pinned": result.versions, "closed_alerts": result.closed_alerts}  # fmt: skip


@router.get("/alerts")
def list_alerts(
    conn: Catalog,
    mount: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str, Query(description="open (default), acked, resolved or all")] = "open",
) -> dict[str, Any]:
    if status not in ALERT_STATUSES:
        raise BadInput(f"status {status!r}: use one of {', '.join(ALERT_STATUSES)}")
    mount_id = Mounts(conn).get(mount).id if mount else None
    alerts = [describe_alert(a) for a in store.list_alerts(conn, mount_id, include_closed=status != "open")]
    if status not in ("open", "all"):
        alerts = [a for a in alerts if a["status"] == status]
    return {"alerts": alerts, "next_cursor": None}


@router.post("/alerts/{alert_id}/ack", dependencies=[Depends(require_write)])
def ack(alert_id: int, conn: Catalog, cfg: SettingsDep) -> dict[str, Any]:
    """Acknowledge an open alert: accept the folder as it is now (re-pin), end the quarantine."""
    alert, result = service.ack_alert(conn, AlignmentConfig.from_settings(cfg), alert_id, StorageIO, by="api")
    return {**describe_alert(alert), "repinned_frames": result.frames,
            "last_annotated": result.dataset.last_annotated}  # fmt: skip


def _folder(raw: str) -> str:
    # "/" or "." names the mount's top folder; the CLI takes "" for it, a URL path cannot.
    return "" if raw in ("/", ".", "-") else raw
