"""The Girder connector's catalog I/O: its key -> item map, and the datasets of its mount.

The map (``girder_items``, revision ``0008_girder_items``) is what makes redelivery a no-op. It
is written after Girder answered; a run killed in between leaves an item the map does not know,
and the next run finds it again instead of making a second one: Girder's import reuses an item
of the same name in the same folder, and a delete of an unmapped key looks the item up by path.
Girder ids are 24-hex ObjectIds, so the map keeps them as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg

from mountsync.workers.connectors.girder_plan import DatasetState, Mapped, folder_kind, relative_key


def load_map(conn: psycopg.Connection, connector: str, mount: str, keys: Sequence[str]) -> dict[str, Mapped]:
    rows = conn.execute(
        """SELECT key, item_id, folder_id, etag, version FROM girder_items
           WHERE connector = %s AND mount = %s AND key = ANY(%s)""",
        (connector, mount, list(keys)),
    ).fetchall()
    return {row[0]: Mapped(*row) for row in rows}


def save_map(conn: psycopg.Connection, connector: str, mount: str, rows: Iterable[tuple[Mapped, int]]) -> None:
    """Upsert (row, cursor) pairs: the item now reflects the object as of that cursor."""
    values = [(connector, mount, m.key, m.item_id, m.folder_id, m.etag, m.version, cursor) for m, cursor in rows]
    if not values:
        return
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO girder_items (connector, mount, key, item_id, folder_id, etag, version, cursor)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
               ON CONFLICT (connector, mount, key) DO UPDATE SET item_id = excluded.item_id,
                   folder_id = excluded.folder_id, etag = excluded.etag, version = excluded.version,
                   cursor = excluded.cursor""",
            values,
        )


def forget_keys(conn: psycopg.Connection, connector: str, mount: str, keys: Sequence[str]) -> None:
    if keys:
        conn.execute(
            "DELETE FROM girder_items WHERE connector = %s AND mount = %s AND key = ANY(%s)",
            (connector, mount, list(keys)),
        )


def count_items(conn: psycopg.Connection, connector: str) -> int:
    row = conn.execute("SELECT count(*) FROM girder_items WHERE connector = %s", (connector,)).fetchone()
    return int(row[0]) if row else 0


def drop_connector(conn: psycopg.Connection, connector: str) -> None:
    conn.execute("DELETE FROM girder_items WHERE connector = %s", (connector,))


DATASETS_SQL = """
SELECT d.folder, d.type, d.quarantined,
       (d.annotations <> '[]'::jsonb OR d.last_annotated IS NOT NULL) AS annotated,
       a.id, a.kind
FROM datasets d
JOIN mounts m ON m.id = d.mount_id
LEFT JOIN alignment_alerts a ON a.dataset_id = d.id AND a.status = 'open'
WHERE m.name = %s
ORDER BY d.folder, d.id
"""


def dataset_states(conn: psycopg.Connection, mount: str, root: str) -> dict[str, DatasetState]:
    """One state per folder holding datasets, keyed by the folder's path below ``root``.

    A folder is annotated or quarantined when any of its datasets is; the alert shown is the
    first open one. Datasets marked absent are kept: a folder emptied by deletes is still the
    annotated dataset it was.
    """
    grouped: dict[str, list[tuple[str, bool, bool, int | None, str | None]]] = {}
    for folder, kind, quarantined, annotated, alert_id, alert_kind in conn.execute(DATASETS_SQL, (mount,)):
        path = f"{folder}/" if folder else ""
        rel = "" if path == root else relative_key(path, root)
        if rel is None:
            continue
        rel_folder = rel.rstrip("/")
        grouped.setdefault(rel_folder, []).append((kind, quarantined, annotated, alert_id, alert_kind))
    states: dict[str, DatasetState] = {}
    for rel_folder, rows in grouped.items():
        kind = folder_kind(r[0] for r in rows)
        if kind is None:
            continue
        alerts = [(r[3], r[4]) for r in rows if r[3] is not None]
        alert_id, alert_kind = alerts[0] if alerts else (None, None)
        states[rel_folder] = DatasetState(
            folder=rel_folder,
            kind=kind,
            annotated=any(r[2] for r in rows),
            quarantined=any(r[1] for r in rows),
            alert_id=alert_id,
            alert_kind=alert_kind,
        )
    return states
