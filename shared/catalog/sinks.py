"""What every sink looks like from outside: state, cursor and lag (``sink list``, ``GET /api/v1/sinks``).

Read-only and in ``shared`` so that the HTTP API (in ``producers``) and the CLI and metrics (in
``workers``) show the same rows. Lag is counted against the change log's head: ``lag_entries`` =
head cursor - the sink's cursor, ``lag_seconds`` = age of the oldest entry it has not delivered.
Never shows a secret: ``target`` is reduced to scheme, host and port; options hold none.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

STATUS_SQL = """
WITH head AS (SELECT coalesce(max(cursor), 0) AS c FROM change_log),
     ev AS (SELECT coalesce(max(id), 0) AS c FROM sink_events)
SELECT s.id, s.name, s.kind, s.target, s.mounts, s.events, s.state, s.state_reason, s.cursor, s.events_cursor,
       CASE WHEN 'changes' = ANY(s.events) THEN greatest(head.c - s.cursor, 0) ELSE 0 END,
       CASE WHEN 'changes' = ANY(s.events) THEN coalesce(extract(epoch FROM now() - (
           SELECT applied_at FROM change_log c WHERE c.cursor > s.cursor ORDER BY c.cursor LIMIT 1)), 0)
            ELSE 0 END,
       CASE WHEN s.events <> '{changes}' THEN greatest(ev.c - s.events_cursor, 0) ELSE 0 END,
       s.next_attempt_at IS NULL OR s.next_attempt_at <= now(),
       s.delivered, s.delivered_at, s.attempts, s.failing_since, s.next_attempt_at, s.last_error, s.options
FROM sinks s, head, ev
WHERE %(kind)s::text IS NULL OR s.kind = %(kind)s
ORDER BY s.name
"""
FIELDS = ("id", "name", "kind", "target", "mounts", "events", "state", "state_reason", "cursor", "events_cursor",
          "lag_entries", "lag_seconds", "events_behind", "due", "delivered", "delivered_at", "attempts",
          "failing_since", "next_attempt_at", "last_error", "options")  # fmt: skip


def safe_target(url: str) -> str:
    """Scheme, host and port of a receiver, for output and logs (paths and queries may hold tokens)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def sink_status(conn: Any, kind: str | None = None) -> list[dict[str, Any]]:
    """Every sink (of ``kind``) with its state, cursors and lag, in name order."""
    rows = [dict(zip(FIELDS, r, strict=True)) for r in conn.execute(STATUS_SQL, {"kind": kind}).fetchall()]
    for row in rows:
        row["target"] = safe_target(row["target"])
        row["lag_entries"], row["events_behind"] = int(row["lag_entries"]), int(row["events_behind"])
        row["lag_seconds"] = round(float(row["lag_seconds"]), 3)
    return rows
