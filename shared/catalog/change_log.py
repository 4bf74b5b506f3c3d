"""The durable change log: every change that altered the catalog, in cursor order, none skipped.

Written by ``apply_changes`` inside its transaction (``append_change_log``), read by the HTTP
feed (``GET /api/v1/changes``), by sinks, and published to the Redis stream ``mountsync:feed``.

Why a reader never skips a cursor: cursors come from a sequence, and a lower cursor could commit
after a higher one if two apply transactions overlapped. ``append_change_log`` therefore takes one
transaction-level advisory lock before it draws cursors, and holds it to commit. PostgreSQL marks
a transaction committed (visible) before it releases its locks, so the next appender can draw
cursors only after every lower cursor is visible. Apply is batched (thousands of changes per
transaction) and the lock covers only the final insert and the commit, so this costs little.

The Redis stream stays as a low-latency notification for readers that already use it (the demo,
XREAD BLOCK consumers). It is published from this log after commit (``drain_feed``), at least
once, and capped (``MOUNTSYNC_FEED_MAXLEN``): a reader that must not lose anything reads the log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from mountsync.shared.lua import LuaScript

# pg_advisory_xact_lock key shared by every appender (apply's per-mount locks use 731850401).
APPEND_LOCK = 731850403
PAGE_LIMIT_MAX = 10_000

APPEND_SQL = """
INSERT INTO change_log (mount, mount_id, dest_folder, folder, key, kind, size, etag, version,
                        sequencer, event_time)
SELECT m.name, a.mount_id, m.dest_folder, a.folder, a.key, a.change, a.size, a.etag, a.version,
       a.seq, CASE WHEN a.event_ns > 0 THEN to_timestamp(a.event_ns / 1e9) END
FROM applied_log a JOIN mounts m ON m.id = a.mount_id
ORDER BY a.mount_id, a.key
"""

# ``quarantined`` is the dataset's state when read (quarantine follows apply by a check).
READ_SQL = """
SELECT c.cursor, c.mount, c.dest_folder, c.key, c.kind, c.size, c.etag, c.version, c.sequencer,
       c.event_time, c.applied_at,
       EXISTS (SELECT 1 FROM datasets d
               WHERE d.mount_id = c.mount_id AND d.folder = c.folder AND d.quarantined
                 AND (d.path = c.folder OR d.path = c.key)) AS quarantined
FROM change_log c
WHERE c.cursor > %(after)s AND (%(mount)s::text IS NULL OR c.mount = %(mount)s::text)
ORDER BY c.cursor
LIMIT %(limit)s
"""


# The same page rendered by PostgreSQL as one JSON array (the HTTP feed sends it as it is:
# no per-row Python work), with the page's last cursor and size.
READ_JSON_SQL = f"""
SELECT coalesce(json_agg(json_build_object(
           'cursor', p.cursor, 'mount', p.mount, 'dest_folder', p.dest_folder, 'key', p.key,
           'kind', p.kind, 'size', p.size, 'etag', p.etag, 'version', p.version,
           'sequencer', p.sequencer, 'event_time', p.event_time, 'applied_at', p.applied_at,
           'quarantined', p.quarantined) ORDER BY p.cursor), '[]')::text,
       max(p.cursor), count(*)
FROM ({READ_SQL}) p
"""


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    """One change-log row as readers see it (the field names of CONTRACT.md's change feed)."""

    cursor: int
    mount: str
    dest_folder: str
    key: str
    kind: str
    size: int | None
    etag: str | None
    version: str | None
    sequencer: str
    event_time: datetime | None
    applied_at: datetime
    quarantined: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "mount": self.mount,
            "dest_folder": self.dest_folder,
            "key": self.key,
            "kind": self.kind,
            "size": self.size,
            "etag": self.etag,
            "version": self.version,
            "sequencer": self.sequencer,
            "event_time": self.event_time.isoformat() if self.event_time else None,
            "applied_at": self.applied_at.isoformat(),
            "quarantined": self.quarantined,
        }


@dataclass(frozen=True, slots=True)
class LogBounds:
    """``pruned_through``: cursors at or below it are gone (older readers get 410);
    ``head``: the highest cursor drawn so far (0 for an empty log)."""

    pruned_through: int
    head: int


def append_change_log(conn: psycopg.Connection) -> None:
    """Append the staged ``applied_log`` rows; call inside the apply transaction, last."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
    conn.execute(APPEND_SQL)


def read_changes(conn: psycopg.Connection, after: int, *, mount: str | None = None,
                 limit: int = 1000) -> list[ChangeEntry]:  # fmt: skip
    """Entries with a cursor above ``after``, in cursor order (at most ``limit``)."""
    rows = conn.execute(READ_SQL, {"after": after, "mount": mount, "limit": limit}).fetchall()
    return [ChangeEntry(*row) for row in rows]


def read_changes_json(conn: psycopg.Connection, after: int, *, mount: str | None = None,
                      limit: int = 1000) -> tuple[str, int | None, int]:  # fmt: skip
    """``read_changes`` as a JSON array text, with the last cursor (None when empty) and the count."""
    row = conn.execute(READ_JSON_SQL, {"after": after, "mount": mount, "limit": limit}).fetchone()
    assert row is not None
    return str(row[0]), row[1], int(row[2])


def log_bounds(conn: psycopg.Connection) -> LogBounds:
    row = conn.execute(
        """
        SELECT coalesce((SELECT pruned_through FROM change_log_state), 0),
               (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM change_log_cursor)
        """
    ).fetchone()
    assert row is not None
    return LogBounds(pruned_through=int(row[0]), head=int(row[1]))


def prune_changes(conn: psycopg.Connection, retention_s: float) -> int:
    """Delete entries applied longer than ``retention_s`` ago; returns how many went."""
    with conn.transaction():
        row = conn.execute(
            "SELECT max(cursor) FROM change_log WHERE applied_at < now() - make_interval(secs => %s)",
            (retention_s,),
        ).fetchone()
        through = row[0] if row else None
        if through is None:
            return 0
        deleted = conn.execute("DELETE FROM change_log WHERE cursor <= %s", (through,)).rowcount
        _ensure_state(conn)
        conn.execute("UPDATE change_log_state SET pruned_through = greatest(pruned_through, %s)", (through,))
    return int(deleted)


def _ensure_state(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO change_log_state DEFAULT VALUES ON CONFLICT DO NOTHING")


def drain_feed(conn: psycopg.Connection, redis: Any, stream: str, maxlen: int) -> int:
    """Publish log entries not yet on the Redis stream (at least once); returns how many went.

    One drainer at a time (the state row is locked); a failed publish rolls the position back, so
    the next drain (next apply, ``reconcile_all_task``) publishes them again. PostgreSQL renders a
    page as one JSON text and one Lua script XADDs it entry by entry: packing an XADD per entry in
    Python cost more than the whole apply (profile of issue 18: two thirds of a worker's time).

    ``maxlen`` 0 means no stream (``MOUNTSYNC_FEED_MAXLEN=0``): nothing is published and the
    position moves past what is logged, so turning the stream on again later publishes only what
    is applied from then on, not the backlog of the retention window.
    """
    if maxlen == 0:
        with conn.transaction():
            _ensure_state(conn)
            conn.execute(_SKIP_SQL)
        return 0
    total = 0
    while True:
        with conn.transaction():
            _ensure_state(conn)
            state = conn.execute("SELECT stream_through FROM change_log_state FOR UPDATE").fetchone()
            through = int(state[0]) if state else 0
            page = conn.execute(_PAGE_SQL, (through, _PAGE)).fetchone()
            if page is None or not page[0]:
                return total
            count, last, entries = int(page[0]), int(page[1]), str(page[2])
            _PUBLISH_LUA(redis, [stream], [maxlen, entries])  # raises -> rollback
            conn.execute("UPDATE change_log_state SET stream_through = %s", (last,))
        total += count


_SKIP_SQL = """
UPDATE change_log_state
SET stream_through = greatest(stream_through, (SELECT coalesce(max(cursor), 0) FROM change_log))
"""
_STREAM_FIELDS = ("cursor", "mount", "dest_folder", "folder", "key", "kind", "size", "etag", "version", "sequencer")
_PAGE = 5000
# One page of entries as a JSON array of string arrays in _STREAM_FIELDS order ('' for NULL). Each
# entry is a text[] that json_agg renders: json_build_array looked up how to render each of its ten
# arguments on every row, which cost PostgreSQL 6.2-6.7 us an entry against 2.8-3.8 (issue 18).
_PAGE_SQL = """
SELECT count(*), max(cursor),
       json_agg(ARRAY[cursor::text, mount, dest_folder, folder, key, kind, coalesce(size::text, ''),
                      coalesce(etag, ''), coalesce(version, ''), sequencer] ORDER BY cursor)::text
FROM (SELECT * FROM change_log WHERE cursor > %s ORDER BY cursor LIMIT %s) page
"""
# XADD each entry of ARGV[2] (the page), then cap the stream at ~ARGV[1] once: the script runs
# atomically, so no reader sees it longer, and one XTRIM a page costs Redis less than a MAXLEN on
# every XADD (4.2 against 4.5-5.0 us an entry). Each XADD names its fields and the entry's values
# one by one, as literal arguments: filling a field table and unpacking it into every call cost
# Redis a fifth more (2,000-entry pages, 60 interleaved runs: median 9.8 against 7.8 us an entry,
# best 5.4 against 4.6). In the load benchmark Lua scripts took 15.9 of Redis's 20 us a change.
_XADD_ARGS = ", ".join(f"'{name}', e[{i}]" for i, name in enumerate(_STREAM_FIELDS, 1))
_PUBLISH_LUA = LuaScript(f"""
local entries = cjson.decode(ARGV[2])
local call, stream = redis.call, KEYS[1]
for i = 1, #entries do
  local e = entries[i]
  call('XADD', stream, '*', {_XADD_ARGS})
end
call('XTRIM', stream, 'MAXLEN', '~', ARGV[1])
return #entries
""")
