"""Reindex run records: queued by the CLI or beat, progressed by the worker, polled by ``--wait``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

FIELDS = (
    "listed",
    "created",
    "updated",
    "deleted",
    "unchanged",
    "folders_checked",
    "folders_skipped",
)


@dataclass(frozen=True, slots=True)
class ReindexRun:
    id: int
    mount_id: int
    prefix: str
    trigger: str
    state: str
    counts: dict[str, int]
    error: str | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")

    @property
    def seconds(self) -> float:
        if not self.started_at:
            return 0.0
        end = self.finished_at or datetime.now(self.started_at.tzinfo)
        return (end - self.started_at).total_seconds()

    def describe(self) -> dict[str, Any]:
        return {
            "run": self.id,
            "state": self.state,
            "prefix": self.prefix,
            "trigger": self.trigger,
            **self.counts,
            "seconds": round(self.seconds, 3),
            "error": self.error,
        }


def create_run(conn: psycopg.Connection, mount_id: int, prefix: str, trigger: str) -> int:
    row = conn.execute(
        "INSERT INTO reindex_runs (mount_id, prefix, trigger) VALUES (%s, %s, %s) RETURNING id",
        (mount_id, prefix, trigger),
    ).fetchone()
    assert row is not None
    return int(row[0])


def start_run(conn: psycopg.Connection, run_id: int) -> None:
    conn.execute(
        "UPDATE reindex_runs SET state = 'running', started_at = now(), error = NULL WHERE id = %s",
        (run_id,),
    )


def update_run(
    conn: psycopg.Connection,
    run_id: int,
    counts: dict[str, Any],
    state: str | None = None,
    error: str | None = None,
) -> None:
    values = [int(counts.get(f, 0)) for f in FIELDS]
    sets = ", ".join(f"{f} = %s" for f in FIELDS)
    finished = ", finished_at = now()" if state in ("succeeded", "failed") else ""
    conn.execute(
        f"UPDATE reindex_runs SET {sets}, state = coalesce(%s, state), error = %s{finished} WHERE id = %s",
        (*values, state, error, run_id),
    )


def get_run(conn: psycopg.Connection, run_id: int) -> ReindexRun | None:
    row = conn.execute(
        f"SELECT id, mount_id, prefix, trigger, state, {', '.join(FIELDS)}, error, queued_at, "
        "started_at, finished_at FROM reindex_runs WHERE id = %s",
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    n = len(FIELDS)
    return ReindexRun(
        id=row[0],
        mount_id=row[1],
        prefix=row[2],
        trigger=row[3],
        state=row[4],
        counts=dict(zip(FIELDS, (int(v) for v in row[5 : 5 + n]), strict=True)),
        error=row[5 + n],
        queued_at=row[6 + n],
        started_at=row[7 + n],
        finished_at=row[8 + n],
    )


def last_run(conn: psycopg.Connection, mount_id: int) -> ReindexRun | None:
    """The mount's most recent reindex run, whatever its state (None: never reindexed)."""
    row = conn.execute(
        "SELECT id FROM reindex_runs WHERE mount_id = %s ORDER BY id DESC LIMIT 1", (mount_id,)
    ).fetchone()
    return get_run(conn, row[0]) if row else None


def due_mounts(conn: psycopg.Connection, default_interval_s: int) -> list[tuple[int, str]]:
    """Mounts whose last reindex (of the whole mount) started longer ago than their interval."""
    rows = conn.execute(
        """
        SELECT m.id, m.name FROM mounts m
        WHERE NOT EXISTS (
            SELECT 1 FROM reindex_runs r
            WHERE r.mount_id = m.id AND r.prefix = ''
              AND ((r.state IN ('queued', 'running') AND r.queued_at > now() - interval '6 hours')
                   OR r.queued_at > now() - make_interval(secs => coalesce(m.reindex_interval_s, %s))))
        ORDER BY m.id
        """,
        (default_interval_s,),
    ).fetchall()
    return [(int(r[0]), str(r[1])) for r in rows]
