"""Datasets, pinned frame manifests, alerts and quarantine in PostgreSQL (psycopg 3).

Every function works on a connection handed in; the caller owns the transaction. Folder checks
serialize on a transaction-level advisory lock per (mount, folder), so two workers checking the
same folder never interleave their reads and writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from mountsync.workers.alignment.classify import Classification, Frame
from mountsync.workers.alignment.datasets import DatasetSpec

_LOCK_NS = 731850402


@dataclass(frozen=True)
class Dataset:
    id: int
    mount_id: int
    type: str
    path: str
    folder: str
    name: str
    order_policy: str
    frame_count: int
    folder_objects: int
    present: bool
    annotations: tuple[str, ...]
    sidecars: tuple[str, ...]
    pinned_at: datetime | None
    pinned_by: str | None
    pinned_frames: int
    last_annotated: int | None
    quarantined: bool
    quarantined_at: datetime | None
    checked_at: datetime | None

    @property
    def pinned(self) -> bool:
        return self.pinned_at is not None


@dataclass(frozen=True)
class Alert:
    id: int
    dataset_id: int | None  # None for mount-level alerts (mass-delete)
    mount_id: int
    mount: str
    path: str
    dataset_type: str
    kind: str
    kinds: tuple[str, ...]
    breaking: bool
    status: str
    first_shifted_index: int | None
    frames_moved: int
    annotated_frames_moved: int | None
    last_annotated: int | None
    quarantined: bool
    details: dict[str, Any]
    checks: int
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    closed_by: str | None


def _dataset(row: dict[str, Any]) -> Dataset:
    row = dict(row)
    row["annotations"] = tuple(row["annotations"] or ())
    row["sidecars"] = tuple(row["sidecars"] or ())
    for extra in ("created_at", "updated_at"):
        row.pop(extra, None)
    return Dataset(**row)


def _alert(row: dict[str, Any]) -> Alert:
    row = dict(row)
    row["kinds"] = tuple(row["kinds"] or ())
    return Alert(**row)


def lock_folder(conn: psycopg.Connection, mount_id: int, folder: str) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCK_NS, f"{mount_id}|{folder}"))


def live_frames(conn: psycopg.Connection, mount_id: int, folder: str) -> list[Frame]:
    """The folder's live direct children as frames (unordered)."""
    rows = conn.execute(
        "SELECT key, etag, size, version FROM objects WHERE mount_id = %s AND folder = %s AND NOT deleted",
        (mount_id, folder),
    ).fetchall()
    return [Frame(key=r[0], etag=r[1], size=r[2], version=r[3]) for r in rows]


def live_objects_at(conn: psycopg.Connection, mount_id: int, keys: Sequence[str]) -> list[Frame]:
    rows = conn.execute(
        "SELECT key, etag, size, version FROM objects WHERE mount_id = %s AND key = ANY(%s) AND NOT deleted",
        (mount_id, list(keys)),
    ).fetchall()
    return [Frame(key=r[0], etag=r[1], size=r[2], version=r[3]) for r in rows]


def folder_quiet_for(conn: psycopg.Connection, mount_id: int, folder: str) -> float | None:
    """Seconds since the catalog last changed the folder (None: no bookkeeping row)."""
    row = conn.execute(
        "SELECT extract(epoch FROM now() - updated_at) FROM folders WHERE mount_id = %s AND path = %s",
        (mount_id, folder),
    ).fetchone()
    return None if row is None else float(row[0])


def folder_live_objects(conn: psycopg.Connection, mount_id: int, folder: str) -> int:
    """How many live objects the catalog counts in the folder (kept by every apply, O(1))."""
    row = conn.execute(
        "SELECT live_objects FROM folders WHERE mount_id = %s AND path = %s", (mount_id, folder)
    ).fetchone()
    return int(row[0]) if row else 0


def set_folder_objects(conn: psycopg.Connection, mount_id: int, folder: str, count: int) -> None:
    conn.execute(
        "UPDATE datasets SET folder_objects = %s WHERE mount_id = %s AND folder = %s",
        (count, mount_id, folder),
    )


def folder_exists(conn: psycopg.Connection, mount_id: int, folder: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM objects WHERE mount_id = %s AND folder = %s LIMIT 1", (mount_id, folder)
    ).fetchone()
    return row is not None


_DATASET_COLS = """id, mount_id, type, path, folder, name, order_policy, frame_count, folder_objects, present,
    annotations, sidecars, pinned_at, pinned_by, pinned_frames, last_annotated, quarantined,
    quarantined_at, checked_at"""


def datasets_in_folder(conn: psycopg.Connection, mount_id: int, folder: str) -> list[Dataset]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_DATASET_COLS} FROM datasets WHERE mount_id = %s AND folder = %s ORDER BY id",
            (mount_id, folder),
        ).fetchall()
    return [_dataset(r) for r in rows]


def datasets_at(conn: psycopg.Connection, mount_id: int, path: str) -> list[Dataset]:
    """Datasets whose path is ``path`` (an image folder, or a video key)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_DATASET_COLS} FROM datasets WHERE mount_id = %s AND path = %s ORDER BY type",
            (mount_id, path),
        ).fetchall()
    return [_dataset(r) for r in rows]


def list_datasets(conn: psycopg.Connection, mount_id: int) -> list[Dataset]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            f"SELECT {_DATASET_COLS} FROM datasets WHERE mount_id = %s ORDER BY path, type",
            (mount_id,),
        ).fetchall()
    return [_dataset(r) for r in rows]


def upsert_dataset(conn: psycopg.Connection, mount_id: int, spec: DatasetSpec, order: str, frame_count: int) -> Dataset:
    """Create the dataset or refresh what the folder shows now (linked files, count, presence)."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"""
            INSERT INTO datasets (mount_id, type, path, folder, name, order_policy, frame_count,
                                  annotations, sidecars, checked_at)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
            ON CONFLICT (mount_id, type, path) DO UPDATE SET
                frame_count = EXCLUDED.frame_count, present = true,
                annotations = EXCLUDED.annotations, sidecars = EXCLUDED.sidecars,
                checked_at = now(), updated_at = now()
            RETURNING {_DATASET_COLS}
            """,
            (mount_id, spec.type, spec.path, spec.folder, spec.name, order, frame_count,
             Jsonb(list(spec.annotations)), Jsonb(list(spec.sidecars))),
        ).fetchone()  # fmt: skip
    assert row is not None
    return _dataset(row)


def mark_absent(conn: psycopg.Connection, dataset_id: int) -> None:
    conn.execute(
        "UPDATE datasets SET present = false, frame_count = 0, checked_at = now(), updated_at = now() WHERE id = %s",
        (dataset_id,),
    )


def delete_dataset(conn: psycopg.Connection, dataset_id: int) -> None:
    conn.execute("DELETE FROM datasets WHERE id = %s", (dataset_id,))


def pinned_frames(conn: psycopg.Connection, dataset_id: int) -> list[Frame]:
    rows = conn.execute(
        "SELECT key, etag, size, version FROM dataset_frames WHERE dataset_id = %s ORDER BY idx",
        (dataset_id,),
    ).fetchall()
    return [Frame(key=r[0], etag=r[1], size=r[2], version=r[3]) for r in rows]


def _copy_frames(conn: psycopg.Connection, dataset_id: int, start: int, frames: Iterable[Frame]) -> None:
    with (
        conn.cursor() as cur,
        cur.copy("COPY dataset_frames (dataset_id, idx, key, etag, version, size) FROM STDIN") as copy,
    ):
        for offset, f in enumerate(frames):
            copy.write_row((dataset_id, start + offset, f.key, f.etag, f.version, f.size))


def write_manifest(
    conn: psycopg.Connection,
    dataset_id: int,
    frames: Sequence[Frame],
    *,
    last_annotated: int | None,
    pinned_by: str,
    order: str,
) -> None:
    """Replace the pinned manifest; lift the quarantine (the pin is the new reference)."""
    conn.execute("DELETE FROM dataset_frames WHERE dataset_id = %s", (dataset_id,))
    _copy_frames(conn, dataset_id, 0, frames)
    conn.execute(
        """
        UPDATE datasets SET pinned_at = now(), pinned_by = %s, pinned_frames = %s,
            last_annotated = %s, order_policy = %s, quarantined = false, quarantined_at = NULL,
            updated_at = now()
        WHERE id = %s
        """,
        (pinned_by, len(frames), last_annotated, order, dataset_id),
    )


def pinned_keys_among(conn: psycopg.Connection, dataset_id: int, keys: Sequence[str]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM dataset_frames WHERE dataset_id = %s AND key = ANY(%s)",
        (dataset_id, list(keys)),
    ).fetchone()
    return int(row[0]) if row else 0


def last_pinned_key(conn: psycopg.Connection, dataset_id: int) -> str | None:
    row = conn.execute(
        "SELECT key FROM dataset_frames WHERE dataset_id = %s ORDER BY idx DESC LIMIT 1", (dataset_id,)
    ).fetchone()
    return None if row is None else str(row[0])


def set_frame_count(conn: psycopg.Connection, dataset_id: int, count: int) -> None:
    conn.execute(
        "UPDATE datasets SET frame_count = %s, checked_at = now(), updated_at = now() WHERE id = %s",
        (count, dataset_id),
    )


def extend_manifest(conn: psycopg.Connection, dataset_id: int, start: int, frames: Sequence[Frame]) -> None:
    """Append frames at ``start`` (appends move no pinned index)."""
    if not frames:
        return
    _copy_frames(conn, dataset_id, start, frames)
    conn.execute(
        "UPDATE datasets SET pinned_frames = %s, updated_at = now() WHERE id = %s",
        (start + len(frames), dataset_id),
    )


def set_quarantine(conn: psycopg.Connection, dataset_id: int, on: bool) -> None:
    conn.execute(
        """
        UPDATE datasets SET quarantined = %s,
            quarantined_at = CASE WHEN %s THEN coalesce(quarantined_at, now()) END,
            updated_at = now()
        WHERE id = %s
        """,
        (on, on, dataset_id),
    )


_ALERT_SELECT = """
SELECT a.id, a.dataset_id, a.mount_id, m.name AS mount, a.path, coalesce(d.type, 'mount') AS dataset_type,
       a.kind, a.kinds, a.breaking, a.status, a.first_shifted_index, a.frames_moved,
       a.annotated_frames_moved, a.last_annotated, a.quarantined, a.details, a.checks,
       a.created_at, a.updated_at, a.closed_at, a.closed_by
FROM alignment_alerts a JOIN mounts m ON m.id = a.mount_id LEFT JOIN datasets d ON d.id = a.dataset_id
"""


def get_alert(conn: psycopg.Connection, alert_id: int, *, for_update: bool = False) -> Alert | None:
    lock = " FOR UPDATE OF a" if for_update else ""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"{_ALERT_SELECT} WHERE a.id = %s{lock}", (alert_id,)).fetchone()
    return _alert(row) if row else None


def open_alert(conn: psycopg.Connection, dataset_id: int) -> Alert | None:
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"{_ALERT_SELECT} WHERE a.dataset_id = %s AND a.status = 'open'", (dataset_id,)).fetchone()
    return _alert(row) if row else None


def list_alerts(
    conn: psycopg.Connection, mount_id: int | None, *, include_closed: bool, limit: int = 1000
) -> list[Alert]:
    where, params = [], []
    if mount_id is not None:
        where.append("a.mount_id = %s")
        params.append(mount_id)
    if not include_closed:
        where.append("a.status = 'open'")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"{_ALERT_SELECT}{clause} ORDER BY a.id DESC LIMIT %s", (*params, limit)).fetchall()
    return [_alert(r) for r in rows]


def _alert_values(c: Classification) -> tuple[Any, ...]:
    kind = c.kind.value if c.kind else "unchanged"
    return (kind, [k.value for k in c.kinds], c.breaking, c.first_shifted_index,
            c.frames_moved, c.annotated_frames_moved, Jsonb(c.details()))  # fmt: skip


def insert_alert(conn: psycopg.Connection, ds: Dataset, c: Classification, *, quarantined: bool) -> int:
    row = conn.execute(
        """
        INSERT INTO alignment_alerts (kind, kinds, breaking, first_shifted_index, frames_moved,
            annotated_frames_moved, details, dataset_id, mount_id, path, last_annotated,
            quarantined)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (*_alert_values(c), ds.id, ds.mount_id, ds.path, ds.last_annotated, quarantined),
    ).fetchone()
    assert row is not None
    return int(row[0])


def update_alert(conn: psycopg.Connection, alert_id: int, c: Classification, *, quarantined: bool) -> None:
    conn.execute(
        """
        UPDATE alignment_alerts SET kind = %s, kinds = %s, breaking = %s,
            first_shifted_index = %s, frames_moved = %s, annotated_frames_moved = %s,
            details = %s, quarantined = %s, checks = checks + 1, updated_at = now()
        WHERE id = %s
        """,
        (*_alert_values(c), quarantined, alert_id),
    )


def close_alerts(conn: psycopg.Connection, dataset_id: int, status: str, by: str) -> list[int]:
    rows = conn.execute(
        """
        UPDATE alignment_alerts SET status = %s, closed_at = now(), closed_by = %s,
            updated_at = now()
        WHERE dataset_id = %s AND status = 'open' RETURNING id
        """,
        (status, by, dataset_id),
    ).fetchall()
    return [int(r[0]) for r in rows]


def mark_folder_checked(conn: psycopg.Connection, mount_id: int, folder: str) -> None:
    conn.execute(
        """
        INSERT INTO alignment_folders (mount_id, folder, checked_at) VALUES (%s, %s, now())
        ON CONFLICT (mount_id, folder) DO UPDATE SET checked_at = now()
        """,
        (mount_id, folder),
    )


def folders_needing_check(
    conn: psycopg.Connection, *, margin_s: float, horizon_s: float, limit: int
) -> list[tuple[int, str]]:
    """Folders changed recently and not checked well after their last change (the safety net)."""
    rows = conn.execute(
        """
        SELECT f.mount_id, f.path FROM folders f
        LEFT JOIN alignment_folders a ON a.mount_id = f.mount_id AND a.folder = f.path
        WHERE f.updated_at > now() - make_interval(secs => %s)
          AND (a.checked_at IS NULL OR a.checked_at < f.updated_at + make_interval(secs => %s))
        ORDER BY f.updated_at LIMIT %s
        """,
        (horizon_s, margin_s, limit),
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]
