"""Operator side of the mass-delete guard: per-mount thresholds, the held deletes, approving them.

Approving applies the held deletes through the one write path (``apply_changes`` with the guard
off), so ordering, folder counts and the change feed behave as for any delete; a held delete that a
newer create superseded meanwhile is gone already, and one older than the object applies nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from mountsync.shared.catalog.apply import ApplyResult, apply_changes
from mountsync.shared.catalog.delete_guard import ALERT_KIND, RESOLVE_SQL, Guard
from mountsync.shared.catalog.mounts import Mount
from mountsync.shared.events import Kind, ObjectChange, Source


def get_guard(conn: psycopg.Connection, mount_id: int) -> Guard:
    row = conn.execute("SELECT percent, minimum FROM delete_guards WHERE mount_id = %s", (mount_id,)).fetchone()
    return Guard(float(row[0]), int(row[1])) if row else Guard()


def set_guard(conn: psycopg.Connection, mount_id: int, guard: Guard) -> None:
    conn.execute(
        "INSERT INTO delete_guards (mount_id, percent, minimum) VALUES (%s, %s, %s) "
        "ON CONFLICT (mount_id) DO UPDATE SET percent = EXCLUDED.percent, minimum = EXCLUDED.minimum",
        (mount_id, guard.percent, guard.minimum),
    )
    conn.commit()


@dataclass(frozen=True, slots=True)
class HeldDelete:
    key: str
    kind: str
    version: str | None
    sequencer: str
    source: str
    held_at: str

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "version": self.version, "sequencer": self.sequencer,
                "source": self.source, "held_at": self.held_at}  # fmt: skip


def list_held(conn: psycopg.Connection, mount_id: int, limit: int = 0) -> list[HeldDelete]:
    sql = ("SELECT key, kind, version, seq, source, held_at FROM held_deletes WHERE mount_id = %s ORDER BY key"
           + (" LIMIT %s" if limit else ""))  # fmt: skip
    rows = conn.execute(sql, (mount_id, limit) if limit else (mount_id,)).fetchall()
    return [HeldDelete(r[0], r[1], r[2], r[3], r[4], r[5].isoformat()) for r in rows]


def held_count(conn: psycopg.Connection, mount_id: int) -> int:
    row = conn.execute("SELECT count(*) FROM held_deletes WHERE mount_id = %s", (mount_id,)).fetchone()
    return int(row[0]) if row else 0


def _as_change(mount: Mount, row: Any) -> ObjectChange:
    key, kind, version, seq, event_ns, source, source_id = row
    return ObjectChange(mount.provider, mount.bucket, key, Kind(kind), int(event_ns), Source(source),
                        version=version, sequencer=seq, source_id=source_id)  # fmt: skip


def approve(conn: psycopg.Connection, mount: Mount, batch: int = 5000) -> tuple[int, ApplyResult | None]:
    """Apply every held delete of ``mount`` (in batches, each one transaction); ends the episode.
    Returns how many held deletes were taken and the last batch's result."""
    taken, last = 0, None
    while True:
        with conn.transaction():
            rows = conn.execute(
                "DELETE FROM held_deletes WHERE (mount_id, key) IN (SELECT mount_id, key FROM held_deletes "
                "WHERE mount_id = %s ORDER BY key LIMIT %s FOR UPDATE) "
                "RETURNING key, kind, version, seq, event_ns, source, source_id",
                (mount.id, batch),
            ).fetchall()
            if rows:
                last = apply_changes(conn, [_as_change(mount, r) for r in rows], guard=False)
                taken += len(rows)
            else:
                conn.execute(RESOLVE_SQL, ("approved", [mount.id]))
        if not rows:
            conn.commit()
            return taken, last


def open_alert_id(conn: psycopg.Connection, mount_id: int) -> int | None:
    row = conn.execute(
        "SELECT id FROM alignment_alerts WHERE mount_id = %s AND kind = %s AND status = 'open'",
        (mount_id, ALERT_KIND),
    ).fetchone()
    return int(row[0]) if row else None
