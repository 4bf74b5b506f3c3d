"""Alignment services: check a folder, pin (or re-pin) a dataset, acknowledge an alert.

Each function runs one transaction on the connection it is given and returns what happened;
side effects outside PostgreSQL (metrics, log lines, webhooks) are the caller's, after commit,
driven by the returned ``AlertEvent``s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg

from mountsync.shared.catalog.mounts import Mount, Mounts
from mountsync.shared.errors import BadInput, Conflict, NotFound
from mountsync.workers.alignment import store
from mountsync.workers.alignment.classify import Classification, Frame, classify_folder_change
from mountsync.workers.alignment.config import AlignmentConfig
from mountsync.workers.alignment.datasets import VIDEO, DatasetSpec, FolderContents, describe_folder
from mountsync.workers.alignment.fastpath import try_append
from mountsync.workers.alignment.mountio import MountIO
from mountsync.workers.alignment.sortorder import MANIFEST, get_policy, parse_frame_manifest


@dataclass(frozen=True)
class AlertEvent:
    """An alert that was opened, changed or closed by a check (for metrics, logs, webhooks)."""

    alert_id: int
    action: str  # opened | updated | resolved
    mount: str
    path: str
    kind: str
    breaking: bool
    quarantined: bool
    first_shifted_index: int | None = None
    frames_moved: int = 0
    annotated_frames_moved: int | None = None


@dataclass
class FolderCheck:
    mount: str
    folder: str
    kinds: dict[str, str] = field(default_factory=dict)  # dataset path -> primary kind
    pinned: list[str] = field(default_factory=list)  # datasets pinned on first import
    events: list[AlertEvent] = field(default_factory=list)
    recheck_in: float | None = None  # a new folder still settling: check again after this
    fast: bool = False  # decided by the append fast path


@dataclass(frozen=True)
class PinResult:
    dataset: store.Dataset
    frames: int
    versions: int
    closed_alerts: list[int]


def normalize_folder(mount: Mount, path: str) -> list[str]:
    """Catalog paths ``path`` may name: as given, or relative to the mount's prefix."""
    cleaned = path.strip().strip("/")
    candidates = [cleaned]
    prefix = mount.prefix.rstrip("/")
    if prefix and cleaned != prefix and not cleaned.startswith(f"{prefix}/"):
        candidates.append(f"{prefix}/{cleaned}" if cleaned else prefix)
    return candidates


def order_frames(
    spec: DatasetSpec, order: str, contents: FolderContents, objects: dict[str, Frame], io: MountIO
) -> list[Frame]:
    """The dataset's current frames in its frame order (a video is its own single frame)."""
    frames = [objects[k] for k in spec.media]
    if spec.type == VIDEO:
        return frames
    listed = parse_frame_manifest(io.read_text(contents.manifest)) if (order == MANIFEST and contents.manifest) else []
    policy = get_policy(order, listed)
    return sorted(frames, key=lambda f: policy.key(f.key.rpartition("/")[2]))


def _should_quarantine(config: AlignmentConfig, c: Classification) -> bool:
    if config.quarantine == "never":
        return False
    return config.quarantine == "any" or c.breaking


def _event(action: str, alert_id: int, mount: Mount, ds: store.Dataset, c: Classification,
           quarantined: bool) -> AlertEvent:  # fmt: skip
    return AlertEvent(
        alert_id=alert_id, action=action, mount=mount.name, path=ds.path,
        kind=c.kind.value if c.kind else "unchanged", breaking=c.breaking,
        quarantined=quarantined, first_shifted_index=c.first_shifted_index,
        frames_moved=c.frames_moved, annotated_frames_moved=c.annotated_frames_moved,
    )  # fmt: skip


def _resolve(conn: psycopg.Connection, mount: Mount, ds: store.Dataset,
             alert: store.Alert | None, c: Classification) -> list[AlertEvent]:  # fmt: skip
    """The folder no longer differs from the pin in a way that matters: close and un-quarantine."""
    if alert is None:
        return []
    store.close_alerts(conn, ds.id, "resolved", "check: folder matches the pinned manifest again")
    store.set_quarantine(conn, ds.id, False)
    return [_event("resolved", alert.id, mount, ds, c, False)]


def _check_pinned(
    conn: psycopg.Connection, config: AlignmentConfig, mount: Mount, ds: store.Dataset,
    current: list[Frame], io: MountIO,
) -> tuple[Classification, list[AlertEvent]]:  # fmt: skip
    pinned = store.pinned_frames(conn, ds.id)
    c = classify_folder_change(pinned, current, last_annotated=ds.last_annotated)
    alert = store.open_alert(conn, ds.id)
    if not c.changed or c.only_safe:
        events = _resolve(conn, mount, ds, alert, c)
        if c.appended:
            # Appends move no index: the platform imports them and the pin grows with them.
            start = len(pinned)
            store.extend_manifest(conn, ds.id, start, io.fill_versions(current[start:]))
            if config.alert_appends:
                events.append(_notice(conn, mount, ds, c))
        return c, events
    quarantine = ds.quarantined or _should_quarantine(config, c)
    if alert is None:
        alert_id = store.insert_alert(conn, ds, c, quarantined=quarantine)
        events = [_event("opened", alert_id, mount, ds, c, quarantine)]
    else:
        store.update_alert(conn, alert.id, c, quarantined=quarantine)
        same = (alert.kinds, alert.first_shifted_index, alert.frames_moved) == (
            tuple(k.value for k in c.kinds), c.first_shifted_index, c.frames_moved)  # fmt: skip
        events = [] if same else [_event("updated", alert.id, mount, ds, c, quarantine)]
    if quarantine and not ds.quarantined:
        store.set_quarantine(conn, ds.id, True)
    return c, events


def _notice(conn: psycopg.Connection, mount: Mount, ds: store.Dataset, c: Classification) -> AlertEvent:
    """A safe change the operator asked to hear about: recorded as an alert closed at once."""
    alert_id = store.insert_alert(conn, ds, c, quarantined=False)
    conn.execute(
        "UPDATE alignment_alerts SET status = 'resolved', closed_at = now(), closed_by = %s WHERE id = %s",
        ("check: safe change, recorded for information", alert_id),
    )
    return _event("opened", alert_id, mount, ds, c, False)


def _check_dataset(
    conn: psycopg.Connection, config: AlignmentConfig, mount: Mount, ds: store.Dataset,
    current: list[Frame], io: MountIO, result: FolderCheck, settled: bool,
) -> None:  # fmt: skip
    if ds.pinned:
        c, events = _check_pinned(conn, config, mount, ds, current, io)
        result.events.extend(events)
        if c.kind:
            result.kinds[ds.path] = c.kind.value
        return
    if current:
        result.kinds[ds.path] = "new-dataset"
    if config.autopin and current and settled:
        store.write_manifest(conn, ds.id, io.fill_versions(current), last_annotated=None,
                             pinned_by="import", order=ds.order_policy)  # fmt: skip
        result.pinned.append(ds.path)
        if config.alert_new:
            c = classify_folder_change([], current)
            result.events.append(_notice(conn, mount, ds, c))


def _settling(conn: psycopg.Connection, config: AlignmentConfig, mount: Mount, folder: str) -> float | None:
    """Seconds until the folder counts as settled for its import pin (None: settled now)."""
    if not config.autopin or config.settle_s <= 0:
        return None
    quiet = store.folder_quiet_for(conn, mount.id, folder)
    if quiet is None or quiet >= config.settle_s:
        return None
    return config.settle_s - quiet + 0.1


def check_folder(
    conn: psycopg.Connection, config: AlignmentConfig, mount: Mount, folder: str, io: MountIO,
    new_keys: Sequence[str] | None = None,
) -> FolderCheck:  # fmt: skip
    """Recognise the folder's datasets, pin new ones, classify changes to pinned ones.

    ``new_keys`` (what the hook recorded: only brand-new images arrived) allows the append fast
    path; without it, or when the fast path cannot decide, the full state-based check runs.
    """
    result = FolderCheck(mount.name, folder)
    with conn.transaction():
        store.lock_folder(conn, mount.id, folder)
        if new_keys and try_append(conn, mount, folder, new_keys, io, config.types) is not None:
            result.kinds[folder], result.fast = "append", True
            return result
        known = {(d.type, d.path): d for d in store.datasets_in_folder(conn, mount.id, folder)}
        wait = _settling(conn, config, mount, folder)
        if wait is not None and not any(d.pinned for d in known.values()):
            result.recheck_in = wait  # still uploading: nothing pinned here to protect yet
            return result
        count = store.folder_live_objects(conn, mount.id, folder)  # before the listing: see fastpath
        _check_all(conn, config, mount, folder, io, known, result, settled=wait is None)
        store.set_folder_objects(conn, mount.id, folder, count)
        if wait is not None and any(k == "new-dataset" for k in result.kinds.values()):
            result.recheck_in = wait
        store.mark_folder_checked(conn, mount.id, folder)
    return result


def _check_all(
    conn: psycopg.Connection, config: AlignmentConfig, mount: Mount, folder: str, io: MountIO,
    known: dict[tuple[str, str], store.Dataset], result: FolderCheck, settled: bool,
) -> None:  # fmt: skip
    objects = {f.key: f for f in store.live_frames(conn, mount.id, folder)}
    contents = describe_folder(folder, objects, config.types)
    for spec in contents.datasets:
        row = known.pop((spec.type, spec.path), None)
        order = row.order_policy if row else config.default_order
        current = order_frames(spec, order, contents, objects, io)
        ds = store.upsert_dataset(conn, mount.id, spec, order, len(current))
        _check_dataset(conn, config, mount, ds, current, io, result, settled)
    for ds in known.values():  # datasets whose media are all gone
        if not ds.pinned:
            store.delete_dataset(conn, ds.id)
            continue
        store.mark_absent(conn, ds.id)
        _check_dataset(conn, config, mount, ds, [], io, result, settled)


def _spec_at(
    conn: psycopg.Connection, config: AlignmentConfig, mount: Mount, folder: str, path: str
) -> tuple[DatasetSpec | None, FolderContents, dict[str, Frame]]:
    objects = {f.key: f for f in store.live_frames(conn, mount.id, folder)}
    contents = describe_folder(folder, objects, config.types)
    spec = next((s for s in contents.datasets if s.path == path), None)
    return spec, contents, objects


def locate_dataset(conn: psycopg.Connection, config: AlignmentConfig, mount: Mount,
                   path: str) -> tuple[str, str]:  # fmt: skip
    """(path, folder) of the dataset a user named: an image folder or a video key."""
    for candidate in normalize_folder(mount, path):
        for folder in (candidate, candidate.rpartition("/")[0]):
            spec, _, _ = _spec_at(conn, config, mount, folder, candidate)
            if spec is not None:
                return candidate, folder
        rows = store.datasets_at(conn, mount.id, candidate)
        if rows:
            return candidate, rows[0].folder
    raise NotFound(
        f"no dataset at {path!r} in mount {mount.name!r}: name a folder with images directly "
        f"in it, or a video's key (`mountsync datasets {mount.name}` lists them)"
    )


def _last_annotated(explicit: int | None, kept: int | None, count: int, path: str) -> int | None:
    if explicit is None:
        # Kept from the previous pin; clamped when frames went away (an ack of a removal).
        return None if kept is None or count == 0 else min(kept, count - 1)
    if explicit >= count:
        raise BadInput(
            f"--last-annotated {explicit} is past the last frame: {path!r} has {count} frames"
            + (f" (indices 0 to {count - 1})" if count else "")
        )
    return explicit


def pin_dataset(
    conn: psycopg.Connection, config: AlignmentConfig, mount: Mount, path: str, io: MountIO,
    *, last_annotated: int | None = None, order: str | None = None, by: str = "cli",
) -> PinResult:  # fmt: skip
    """Pin (or re-pin) the dataset's current frames; closes its open alerts as acknowledged."""
    if last_annotated is not None and last_annotated < 0:
        raise BadInput(f"--last-annotated {last_annotated}: give a frame index, 0 or more")
    if order is not None:
        get_policy(order)  # BadInput naming the choices
    with conn.transaction():
        path, folder = locate_dataset(conn, config, mount, path)
        store.lock_folder(conn, mount.id, folder)
        spec, contents, objects = _spec_at(conn, config, mount, folder, path)
        rows = store.datasets_at(conn, mount.id, path)
        row = rows[0] if rows else None
        chosen = order or (row.order_policy if row else config.default_order)
        current = order_frames(spec, chosen, contents, objects, io) if spec else []
        if spec is not None:
            row = store.upsert_dataset(conn, mount.id, spec, chosen, len(current))
        if row is None:
            raise BadInput(f"no dataset at {path!r} in mount {mount.name!r} any more")
        keep = _last_annotated(last_annotated, row.last_annotated, len(current), path)
        frames = io.fill_versions(current)
        store.write_manifest(conn, row.id, frames, last_annotated=keep, pinned_by=by, order=chosen)
        closed = store.close_alerts(conn, row.id, "acked", f"re-pinned by {by}")
        fresh = next(d for d in store.datasets_at(conn, mount.id, path) if d.id == row.id)
    versions = sum(1 for f in frames if f.version)
    return PinResult(fresh, len(frames), versions, closed)


def ack_alert(
    conn: psycopg.Connection, config: AlignmentConfig, alert_id: int,
    io_for: Callable[[Mount], MountIO], *, by: str = "cli",
) -> tuple[store.Alert, PinResult]:  # fmt: skip
    """Acknowledge an open alert: accept the folder as it is now (re-pin), end the quarantine."""
    with conn.transaction():
        alert = store.get_alert(conn, alert_id)
        if alert is None:
            raise NotFound(f"no alert with id {alert_id}; `mountsync alerts --all` lists them")
        if alert.status != "open":
            raise Conflict(f"alert {alert_id} is already {alert.status}")
        if alert.kind == "mass-delete":
            raise Conflict(f"alert {alert_id} is a mass delete: `mountsync deletes approve {alert.mount}` applies them")
        mount = Mounts(conn).get_by_id(alert.mount_id)
    result = pin_dataset(conn, config, mount, alert.path, io_for(mount), by=f"ack ({by})")
    closed = store.get_alert(conn, alert_id)
    assert closed is not None
    return closed, result


@dataclass(frozen=True)
class FramesView:
    path: str
    type: str
    source: str  # "pinned" (quarantined) or "live"
    quarantined: bool
    order: str
    frames: list[Frame]
    live: dict[str, Frame]


def frames_view(conn: psycopg.Connection, config: AlignmentConfig, mount: Mount, path: str, io: MountIO,
                *, live: bool = False) -> FramesView:  # fmt: skip
    """What the platform should use: the pinned manifest while quarantined, else live frames.
    ``live=True`` gives the folder's current order even while quarantined (to compare the two)."""
    with conn.transaction():
        path, folder = locate_dataset(conn, config, mount, path)
        spec, contents, objects = _spec_at(conn, config, mount, folder, path)
        rows = store.datasets_at(conn, mount.id, path)
        row = rows[0] if rows else None
        order = row.order_policy if row else config.default_order
        kind = row.type if row else (spec.type if spec else "")
        if row is not None and row.quarantined and not live:
            pinned = store.pinned_frames(conn, row.id)
            return FramesView(path, kind, "pinned", True, order, pinned, objects)
        current = order_frames(spec, order, contents, objects, io) if spec else []
    return FramesView(path, kind, "live", bool(row and row.quarantined), order, current, objects)


def describe_frames(view: FramesView) -> list[dict[str, object]]:
    """Frame rows for output; pinned rows say whether the live object still has that content."""
    out: list[dict[str, object]] = []
    for i, f in enumerate(view.frames):
        row: dict[str, object] = {"index": i, "key": f.key, "etag": f.etag,
                                  "version": f.version, "size": f.size}  # fmt: skip
        if view.source == "pinned":
            live = view.live.get(f.key)
            row["live"] = "same" if live and f.same_content(live) else (
                "changed" if live else "missing")  # fmt: skip
        out.append(row)
    return out
