"""The catalog rows of sinks: subscriptions, their cursors and delivery state, sink events, alerts.

A sink's cursor moves only in ``advance`` (called after the receiver accepted a batch), so the
catalog never claims a delivery that did not happen. Every function takes a connection and
leaves transaction control to the caller (the CLI's autocommit connection, a task's pool).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

from mountsync.shared.errors import BadInput, NotFound

KINDS = ("webhook", "label-studio", "girder")
TOPICS = ("changes", "alerts", "migrations")
EVENT_APPEND_LOCK = 731850416  # serializes sink_events appends (a reader never skips an id)
_COLUMNS = (
    "id, name, kind, target, mounts, events, options, secret, cursor, events_cursor, state, "
    "state_reason, attempts, failing_since, next_attempt_at, last_error, delivered, delivered_at"
)


class SinkNotFound(NotFound):
    """No sink with that name."""


class SinkExists(BadInput):
    """A sink with that name exists already."""


@dataclass(frozen=True)
class Sink:
    id: int
    name: str
    kind: str
    target: str
    mounts: tuple[str, ...]
    events: tuple[str, ...]
    options: dict[str, Any]
    secret: bytes | None = field(repr=False)
    cursor: int
    events_cursor: int
    state: str
    state_reason: str | None
    attempts: int
    failing_since: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    delivered: int
    delivered_at: datetime | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Sink:
        values = list(row)
        values[4], values[5] = tuple(values[4]), tuple(values[5])
        values[7] = bytes(values[7]) if values[7] is not None else None
        return cls(*values)


@dataclass(frozen=True)
class SinkEvent:
    id: int
    topic: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime


def validate_events(raw: str) -> tuple[str, ...]:
    """``changes,alerts`` -> ("changes", "alerts"); an unknown topic is one line naming it."""
    topics = tuple(dict.fromkeys(t.strip() for t in raw.split(",") if t.strip()))
    unknown = [t for t in topics if t not in TOPICS]
    if unknown or not topics:
        raise BadInput(f"--events {raw!r}: give a comma-separated list of {', '.join(TOPICS)}")
    return topics


def add_sink(
    conn: psycopg.Connection,
    *,
    name: str,
    kind: str,
    target: str,
    mounts: Sequence[str],
    events: Sequence[str],
    options: dict[str, Any],
    secret: bytes | None,
    cursor: int,
    events_cursor: int,
) -> Sink:
    """Insert a sink that starts after ``cursor`` (the log's head: it sees changes from now on)."""
    try:
        row = conn.execute(
            f"""INSERT INTO sinks (name, kind, target, mounts, events, options, secret, cursor, events_cursor)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
            (name, kind, target, list(mounts), list(events), json.dumps(options), secret, cursor, events_cursor),
        ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise SinkExists(f"a sink named {name!r} exists already; remove it first or pick another name") from None
    assert row is not None
    return Sink.from_row(row)


def get_sink(conn: psycopg.Connection, name: str) -> Sink:
    row = conn.execute(f"SELECT {_COLUMNS} FROM sinks WHERE name = %s", (name,)).fetchone()
    if row is None:
        raise SinkNotFound(f"no sink named {name!r} (see `mountsync sink list`)")
    return Sink.from_row(row)


def get_sink_by_id(conn: psycopg.Connection, sink_id: int) -> Sink | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM sinks WHERE id = %s", (sink_id,)).fetchone()
    return Sink.from_row(row) if row else None


def list_sinks(conn: psycopg.Connection, kind: str | None = None) -> list[Sink]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM sinks WHERE %(kind)s::text IS NULL OR kind = %(kind)s ORDER BY name",
        {"kind": kind},
    ).fetchall()
    return [Sink.from_row(r) for r in rows]


def remove_sink(conn: psycopg.Connection, name: str) -> None:
    if conn.execute("DELETE FROM sinks WHERE name = %s", (name,)).rowcount == 0:
        raise SinkNotFound(f"no sink named {name!r} (see `mountsync sink list`)")


def advance(conn: psycopg.Connection, sink_id: int, *, cursor: int | None = None, events_cursor: int | None = None,
            delivered: int = 0) -> None:  # fmt: skip
    """Record an accepted delivery: move the cursor(s) forward (never back) and clear failures."""
    conn.execute(
        """UPDATE sinks SET cursor = greatest(cursor, coalesce(%s, cursor)),
               events_cursor = greatest(events_cursor, coalesce(%s, events_cursor)),
               delivered = delivered + %s, delivered_at = now(),
               attempts = 0, failing_since = NULL, next_attempt_at = NULL, last_error = NULL
           WHERE id = %s""",
        (cursor, events_cursor, delivered, sink_id),
    )


def record_failure(conn: psycopg.Connection, sink_id: int, error: str, retry_in_s: float) -> None:
    """A failed attempt: count it, remember when failing began and when to try again."""
    conn.execute(
        """UPDATE sinks SET attempts = attempts + 1, failing_since = coalesce(failing_since, now()),
               next_attempt_at = now() + make_interval(secs => %s), last_error = %s
           WHERE id = %s""",
        (retry_in_s, error[:500], sink_id),
    )


def set_state(conn: psycopg.Connection, sink_id: int, state: str, reason: str | None) -> None:
    """Pause, disable or resume; resuming clears the failure record so delivery starts at once."""
    if state == "active":
        conn.execute(
            """UPDATE sinks SET state = 'active', state_reason = NULL, attempts = 0, failing_since = NULL,
                   next_attempt_at = NULL WHERE id = %s""",
            (sink_id,),
        )
    else:
        conn.execute("UPDATE sinks SET state = %s, state_reason = %s WHERE id = %s", (state, reason, sink_id))


def replay_from(conn: psycopg.Connection, sink_id: int, cursor: int) -> None:
    """Set the cursor back (or forward) on purpose: the next delivery starts after ``cursor``."""
    conn.execute("UPDATE sinks SET cursor = %s, next_attempt_at = NULL, attempts = 0 WHERE id = %s",
                 (cursor, sink_id))  # fmt: skip


def append_event(conn: psycopg.Connection, topic: str, kind: str, payload: dict[str, Any]) -> None:
    """Add an alert or migration event for the sinks subscribed to ``topic`` (in the caller's transaction)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (EVENT_APPEND_LOCK,))
        conn.execute(
            "INSERT INTO sink_events (topic, kind, payload) VALUES (%s, %s, %s)",
            (topic, kind, json.dumps(payload, default=str)),
        )


def read_events(conn: psycopg.Connection, after: int, topics: Sequence[str], limit: int) -> list[SinkEvent]:
    rows = conn.execute(
        "SELECT id, topic, kind, payload, created_at FROM sink_events WHERE id > %s AND topic = ANY(%s) "
        "ORDER BY id LIMIT %s",
        (after, list(topics), limit),
    ).fetchall()
    return [SinkEvent(*r) for r in rows]


def events_head(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(id), 0) FROM sink_events").fetchone()
    return int(row[0]) if row else 0


def raise_alert(
    conn: psycopg.Connection, sink: str, kind: str, details: dict[str, Any], mount: str | None = None,
    key: str | None = None,
) -> bool:  # fmt: skip
    """Open an alert (once while open) and queue it as an ``alerts`` event; True when it is new."""
    row = conn.execute(
        """INSERT INTO sink_alerts (sink, kind, mount, key, details) VALUES (%s, %s, %s, %s, %s)
           ON CONFLICT DO NOTHING RETURNING id, created_at""",
        (sink, kind, mount, key, json.dumps(details, default=str)),
    ).fetchone()
    if row is None:
        return False
    append_event(conn, "alerts", kind, {"id": f"sink-{row[0]}", "sink": sink, "kind": kind, "mount": mount,
                                        "key": key, "details": details, "created_at": row[1]})  # fmt: skip
    return True


def list_alerts(conn: psycopg.Connection, sink: str | None = None) -> list[dict[str, Any]]:
    rows = conn.execute(
        """SELECT id, sink, kind, mount, key, details, status, created_at FROM sink_alerts
           WHERE %(sink)s::text IS NULL OR sink = %(sink)s ORDER BY id""",
        {"sink": sink},
    ).fetchall()
    names = ("id", "sink", "kind", "mount", "key", "details", "status", "created_at")
    return [dict(zip(names, r, strict=True)) for r in rows]
