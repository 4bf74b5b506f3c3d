"""The one write path: every catalog change is an ``ObjectChange`` applied here.

A batch is applied set-based in one transaction:
1. changes are de-duplicated per key in Python (keeping the newest by the ordering rule) and
   COPY'd into a temporary stage table;
2. the batch takes a transaction-level advisory lock per mount it touches (sorted, so two workers
   never deadlock), which makes the "previous state" read and the upsert one consistent step;
3. staged changes are routed to the mounts they belong to, with each row's previous state, into
   a second temp table; changes for unmounted buckets are counted as drops; the
   mass-delete guard (``delete_guard.py``) takes out the deletes it holds;
4. one statement upserts ``objects`` under the ordering guard, updates per-folder counts and
   fingerprints from the before/after states, and stages the changes that altered an object (a
   newer observation of the same content is not news) with their catalog kind: ``created`` (no
   live row before), ``updated`` (new content for a live key: an overwrite), ``deleted``,
   ``metadata`` (same content);
5. those are appended to the durable change log (``change_log.py``) under one global
   transaction lock, so cursors commit in cursor order;
6. after commit the log is published to the Redis stream (``drain_feed``); what a killed worker
   left unpublished goes out with the next apply or the periodic reconcile.

Ordering guard (rule 3 of the design): a change replaces the stored state only if it is newer:
``seq > stored.seq`` when both sequencers are known, else ``event_ns > stored.event_ns``. Equal
means duplicate and changes nothing, so redelivery is harmless. Deletes keep the row as a
tombstone carrying the delete's sequencer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg

from mountsync.shared.catalog.change_log import append_change_log, drain_feed
from mountsync.shared.catalog.delete_guard import guard_batch
from mountsync.shared.catalog.mounts import MOUNT_LOCK
from mountsync.shared.events import ENUM_TEXT, Kind, ObjectChange, Provider

__all__ = ["AppliedChange", "ApplyResult", "apply_changes", "drain_feed", "fingerprint_hash"]

STAGE_DDL = """
SET LOCAL jit = off;
CREATE TEMP TABLE IF NOT EXISTS stage_changes (
    provider text, bucket text, key text COLLATE "C", folder text COLLATE "C", kind text,
    size bigint, etag text, version text, seq text COLLATE "C", event_ns bigint,
    source text, source_id text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS routed_changes (
    mount_id integer, mount_name text, key text COLLATE "C", folder text COLLATE "C", kind text,
    removes boolean, size bigint, etag text, version text, seq text COLLATE "C", event_ns bigint,
    source text, source_id text, was_live boolean, old_size bigint, old_etag text, old_version text
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS applied_log (
    mount_id integer, folder text COLLATE "C", key text COLLATE "C", change text,
    size bigint, etag text, version text, seq text, event_ns bigint
) ON COMMIT DELETE ROWS
"""

STAGE_COLUMNS = "provider, bucket, key, folder, kind, size, etag, version, seq, event_ns, source, source_id"

# 64-bit hash of a live object's identity and content token, identical to ``fingerprint_hash``.
_FP = "('x' || left(md5({k} || '|' || coalesce({s}::text, '') || '|' || coalesce({e}, '')), 16))::bit(64)::bigint"

# Fan each staged change out to the mounts it belongs to, with the row's state before the batch.
ROUTE_SQL = """
INSERT INTO routed_changes
SELECT m.id, m.name, s.key, s.folder, s.kind, s.kind IN ('deleted', 'archived'), s.size, s.etag,
       s.version, s.seq, s.event_ns, s.source, s.source_id,
       coalesce(NOT o.deleted, false), o.size, o.etag, o.version
FROM stage_changes s
JOIN mounts m ON m.provider = s.provider AND m.bucket = s.bucket AND starts_with(s.key, m.prefix)
LEFT JOIN objects o ON o.mount_id = m.id AND o.key = s.key
"""

# Refresh planner statistics of ``objects`` when it has grown far past what the planner last
# saw (a fresh catalog filling fast): with stale numbers PostgreSQL looks previous states up by
# ``mount_id`` alone and filters the whole mount for every batch. Autovacuum catches up only
# after a minute or more; one worker at a time analyzes, the others go on. Only the columns apply
# and folder lookups join on (the row count is refreshed whatever the columns): a third of a full
# ANALYZE's CPU (40-50 ms against 125-140 at 100k rows); autovacuum's ANALYZE does the rest.
ANALYZE_SQL = "ANALYZE objects (mount_id, key, folder)"
STALE_STATS_SQL = """
SELECT c.reltuples < 0 OR s.n_live_tup > 2 * greatest(c.reltuples, 0) + 1000
FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.oid = 'objects'::regclass
"""

# The temp tables have no statistics, and guessing their size the planner may join the batch to
# itself in nested loops (quadratic in the batch). What follows routing joins whole staged tables
# to each other or to ``mounts``, where hash joins win at any size, so nested loops are switched
# off for the rest of the transaction: ANALYZE of the routed rows gave the same plans at ~4 ms
# (~2 us a change) inside the mount lock. Routing and the guard still look rows up by index.
NO_NESTED_LOOPS = "SET LOCAL enable_nestloop = off"

DROP_SQL = """
WITH unrouted AS (
    SELECT s.provider, s.bucket, count(*) AS n, max(s.key) AS last_key
    FROM stage_changes s
    WHERE NOT EXISTS (SELECT 1 FROM mounts m WHERE m.provider = s.provider
                      AND m.bucket = s.bucket AND starts_with(s.key, m.prefix))
    GROUP BY s.provider, s.bucket
), counted AS (
    INSERT INTO drops AS d (reason, provider, bucket, count, last_key)
    SELECT 'unmounted', provider, bucket, n, last_key FROM unrouted
    ON CONFLICT (reason, provider, bucket) DO UPDATE SET
        count = d.count + EXCLUDED.count, last_key = EXCLUDED.last_key, last_at = now()
)
SELECT coalesce(sum(n), 0) FROM unrouted
"""

APPLY_SQL = f"""
WITH up AS (
    INSERT INTO objects AS t
        (mount_id, key, folder, size, etag, version, seq, event_ns, deleted, source, source_id)
    SELECT mount_id, key, folder,
           CASE WHEN removes THEN NULL ELSE size END,
           CASE WHEN removes THEN NULL ELSE etag END,
           version, seq, event_ns, removes, source, source_id
    FROM routed_changes ORDER BY mount_id, key
    ON CONFLICT (mount_id, key) DO UPDATE SET
        size = CASE WHEN EXCLUDED.deleted THEN NULL ELSE coalesce(EXCLUDED.size, t.size) END,
        etag = CASE WHEN EXCLUDED.deleted THEN NULL ELSE coalesce(EXCLUDED.etag, t.etag) END,
        version = coalesce(EXCLUDED.version, CASE WHEN EXCLUDED.deleted THEN NULL ELSE t.version END),
        seq = EXCLUDED.seq, event_ns = EXCLUDED.event_ns, deleted = EXCLUDED.deleted,
        source = EXCLUDED.source, source_id = EXCLUDED.source_id, updated_at = now()
    WHERE CASE WHEN EXCLUDED.seq <> '' AND t.seq <> '' THEN EXCLUDED.seq > t.seq
               ELSE EXCLUDED.event_ns > t.event_ns END
    RETURNING t.mount_id, t.key, t.folder, t.deleted, t.size, t.etag, t.version
),
res AS (
    -- Only changes that altered what the object is (or explicit metadata events) go on: a newer
    -- observation of the same content advances the ordering state but is not news.
    SELECT up.*, r.mount_name, r.kind, r.seq, r.event_ns, r.source_id,
           r.was_live, r.old_size, r.old_etag, r.old_version,
           CASE WHEN up.deleted THEN 'deleted'
                WHEN NOT r.was_live THEN 'created'
                WHEN up.size IS DISTINCT FROM r.old_size OR up.etag IS DISTINCT FROM r.old_etag
                     OR up.version IS DISTINCT FROM r.old_version THEN 'updated'
                ELSE 'metadata' END AS change
    FROM up JOIN routed_changes r ON r.mount_id = up.mount_id AND r.key = up.key
    WHERE r.kind = 'metadata' OR r.was_live = up.deleted
       OR (NOT up.deleted AND (up.size IS DISTINCT FROM r.old_size
                               OR up.etag IS DISTINCT FROM r.old_etag
                               OR up.version IS DISTINCT FROM r.old_version))
),
folder_delta AS (
    INSERT INTO folders AS f (mount_id, path, live_objects, live_bytes, fingerprint)
    SELECT mount_id, folder,
           sum((NOT deleted)::int - was_live::int),
           sum(CASE WHEN deleted THEN 0 ELSE coalesce(size, 0) END
               - CASE WHEN was_live THEN coalesce(old_size, 0) ELSE 0 END),
           bit_xor(CASE WHEN deleted THEN 0 ELSE {_FP.format(k="key", s="size", e="etag")} END
                   # CASE WHEN was_live
                          THEN {_FP.format(k="key", s="old_size", e="old_etag")} ELSE 0 END)
    FROM res GROUP BY mount_id, folder
    ON CONFLICT (mount_id, path) DO UPDATE SET
        live_objects = f.live_objects + EXCLUDED.live_objects,
        live_bytes = f.live_bytes + EXCLUDED.live_bytes,
        fingerprint = f.fingerprint # EXCLUDED.fingerprint,
        updated_at = now()
),
logged AS (
    INSERT INTO applied_log
    SELECT mount_id, folder, key, change, size, etag, version, seq, event_ns FROM res
)
SELECT mount_id, mount_name, key, folder, kind, size, etag, version, seq, source_id,
       was_live, old_etag, old_version, change
FROM res
"""


class AppliedChange(NamedTuple):
    """A change that altered the catalog, with what the row was before (for alignment checks).

    A named tuple: a batch returns thousands, and a frozen dataclass's ``__init__`` cost ~6x more
    per row (issue 18's profile: a sixth of a worker's time went to building these)."""

    mount_id: int
    mount_name: str
    key: str
    folder: str
    kind: Kind
    size: int | None
    etag: str | None
    version: str | None
    sequencer: str
    source_id: str | None
    was_live: bool
    prev_etag: str | None
    prev_version: str | None
    # The catalog's view, as the change log records it: created, updated, deleted or metadata.
    change: str = ""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """``stale`` counts routed changes that altered nothing: duplicates, older, or same content.
    ``held`` counts deletes the mass-delete guard held, per mount id; ``alerts`` are the
    ``mass-delete`` alerts this batch opened (for the webhook)."""

    received: int
    applied: list[AppliedChange]
    stale: int
    dropped: int
    held: dict[int, int] = field(default_factory=dict)
    alerts: list[int] = field(default_factory=list)


def is_newer(a: ObjectChange, b: ObjectChange) -> bool:
    """The catalog's ordering rule, for choosing the newest change to one key within a batch."""
    if a.sequencer and b.sequencer:
        return a.sequencer > b.sequencer
    return a.event_ns > b.event_ns


def newest_per_key(changes: Iterable[ObjectChange]) -> list[ObjectChange]:
    newest: dict[tuple[Provider, str, str], ObjectChange] = {}
    for change in changes:
        ident = (change.provider, change.bucket, change.key)
        current = newest.get(ident)
        if current is None or is_newer(change, current):
            newest[ident] = change
    return list(newest.values())


def fingerprint_hash(key: str, size: int | None, etag: str | None) -> int:
    """Signed 64-bit hash of (key, size, etag); the same value SQL computes in ``APPLY_SQL``."""
    text = f"{key}|{'' if size is None else size}|{etag or ''}"
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "big", signed=True)


_TEXT = ENUM_TEXT  # an enum member's text by dict lookup: ``member.value`` costs ~7x more, three times per change


def _stage_row(c: ObjectChange) -> tuple[Any, ...]:
    text = _TEXT
    return (
        text[c.provider],
        c.bucket,
        c.key,
        c.folder,
        text[c.kind],
        c.size,
        c.etag,
        c.version,
        c.sequencer,
        c.event_ns,
        text[c.source],
        c.source_id,
    )


def _lock_mounts(conn: psycopg.Connection, changes: Sequence[ObjectChange]) -> None:
    routes = sorted({(_TEXT[c.provider], c.bucket) for c in changes})
    providers = [p for p, _ in routes]
    buckets = [b for _, b in routes]
    conn.execute(
        """
        SELECT pg_advisory_xact_lock(%s, m.id)
        FROM (SELECT DISTINCT id FROM mounts
              WHERE (provider, bucket) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
              ORDER BY id) m
        """,
        (MOUNT_LOCK, providers, buckets),
    )


def _refresh_stats_if_stale(conn: psycopg.Connection) -> None:
    stale = conn.execute(STALE_STATS_SQL).fetchone()
    if stale and stale[0]:
        got = conn.execute("SELECT pg_try_advisory_xact_lock(731850402)").fetchone()
        if got and got[0]:
            conn.execute(ANALYZE_SQL)


def apply_changes(conn: psycopg.Connection, changes: Sequence[ObjectChange], *, guard: bool = True) -> ApplyResult:
    """Apply a batch in one transaction on ``conn`` (not autocommit); idempotent and ordered.
    ``guard=False`` only for deletes an operator approved (``mountsync deletes approve``)."""
    batch = newest_per_key(changes)
    if not batch:
        return ApplyResult(received=0, applied=[], stale=0, dropped=0)
    with conn.transaction():
        # JIT compilation (jit = off in STAGE_DDL) costs ~0.4 s and never pays off for one batch.
        conn.execute(STAGE_DDL)
        _refresh_stats_if_stale(conn)
        with conn.cursor() as cur:
            # Staging is private to this transaction, so it comes before the mount locks: while
            # they are held every other batch for the mount waits.
            with cur.copy(f"COPY stage_changes ({STAGE_COLUMNS}) FROM STDIN") as copy:
                for change in batch:
                    copy.write_row(_stage_row(change))
            _lock_mounts(conn, batch)
            routed = cur.execute(ROUTE_SQL).rowcount
            guarded = guard_batch(cur) if guard else None
            cur.execute(NO_NESTED_LOOPS)
            dropped_row = cur.execute(DROP_SQL).fetchone()
            rows = cur.execute(APPLY_SQL).fetchall()
            if rows:
                append_change_log(conn)
    dropped = int(dropped_row[0]) if dropped_row else 0
    applied = [_applied(row) for row in rows]
    held = guarded.held if guarded else {}
    return ApplyResult(received=len(changes), applied=applied, stale=routed - len(applied) - sum(held.values()),
                       dropped=dropped, held=held, alerts=guarded.opened_alerts if guarded else [])  # fmt: skip


_KINDS = {member.value: member for member in Kind}  # a dict lookup costs a fraction of Kind(value)


def _applied(row: Any) -> AppliedChange:
    # Columns of APPLY_SQL's result in field order; only the kind needs converting.
    return AppliedChange(row[0], row[1], row[2], row[3], _KINDS[row[4]], *row[5:14])
