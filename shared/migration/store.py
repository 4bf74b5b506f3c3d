"""Migration state in PostgreSQL: jobs, items, parts, link batches, verified copies.

Every method is one short transaction on a pooled connection, so threads of one transfer may
share a ``MigrationStore``. Items are claimed with a lease (``FOR UPDATE SKIP LOCKED``): two
deliveries of the same chunk task split its items instead of copying them twice, and the items
of a worker that died are claimed again once its lease has run out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from mountsync.shared.catalog.db import transaction
from mountsync.shared.migration.plan import ChunkCutter, PlannedItem, collided
from mountsync.shared.migration.spec import MigrationSpec

ACTIVE_STATES = ("submitted", "planning", "running")
FINAL_STATES = ("completed", "completed_with_errors", "failed", "cancelled")
ITEM_TERMINAL = ("done", "skipped", "failed", "cancelled")
# A worker that dies this often on one item (OOM, segfault) makes it fail instead of looping.
MAX_CLAIMS = 10


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One claimed item as the transfer needs it."""

    job_id: str
    seq: int
    chunk: int
    entity_id: str
    path: str
    dest_key: str
    size: int | None
    want_sha256: str | None
    want_md5: str | None
    upload_id: str | None
    part_size: int | None
    attempts: int


@dataclass(frozen=True, slots=True)
class PartRow:
    number: int
    size: int
    fingerprint: str
    etag: str | None
    done: bool
    sends: int


@dataclass(frozen=True, slots=True)
class Verified:
    size: int
    etag: str
    sha256: str
    md5: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The outcome of one item, as ``finish_items`` records it."""

    job_id: str
    seq: int
    state: str
    reason: str | None = None
    checksum: str | None = None
    etag: str | None = None
    link: str | None = None
    sent: int = 0
    verified: tuple[str, str, Verified] | None = None  # (location, key, digests)


class MigrationStore:
    """Job state; ``pool`` is a psycopg ``ConnectionPool`` (autocommit off)."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[dict[str, Any]]]:
        with transaction(self.pool) as conn, conn.cursor(row_factory=dict_row) as cur:
            yield cur

    # --- jobs -------------------------------------------------------------------------------
    def create_job(self, job_id: str, spec: MigrationSpec) -> bool:
        """Record a job (state ``submitted``); False when the id exists already (idempotent)."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO migration_jobs (job_id, state, source, destination, spec) "
                "VALUES (%s, 'submitted', %s, %s, %s) ON CONFLICT (job_id) DO NOTHING",
                (
                    job_id,
                    str(spec.source),
                    str(spec.destination),
                    json.dumps(spec.to_wire(with_items=False)),
                ),
            )
            return cur.rowcount == 1

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._tx() as cur:
            cur.execute("SELECT * FROM migration_jobs WHERE job_id = %s", (job_id,))
            return cur.fetchone()

    def job_state(self, job_id: str) -> str | None:
        with self._tx() as cur:
            cur.execute("SELECT state FROM migration_jobs WHERE job_id = %s", (job_id,))
            row = cur.fetchone()
        return None if row is None else str(row["state"])

    def set_state(self, job_id: str, state: str, *, reason: str | None = None, only_from: Iterable[str] = ()) -> bool:
        """Move a job to ``state`` (only from ``only_from`` states when given)."""
        allowed = list(only_from) or None
        final = state in FINAL_STATES
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_jobs SET state = %s, reason = COALESCE(%s, reason), "
                "updated_at = now(), "
                "started_at = CASE WHEN %s IN ('planning', 'running') "
                "THEN COALESCE(started_at, now()) ELSE started_at END, "
                "finished_at = CASE WHEN %s THEN now() ELSE finished_at END "
                "WHERE job_id = %s AND (%s::text[] IS NULL OR state = ANY(%s::text[]))",
                (state, reason, state, final, job_id, allowed, allowed),
            )
            return cur.rowcount == 1

    def mark_planned(self, job_id: str, chunks: int) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_jobs SET planned = true, chunks = %s, updated_at = now() WHERE job_id = %s",
                (chunks, job_id),
            )

    def cancel(self, job_id: str) -> str | None:
        """Cancel an active job: pending items become ``cancelled`` at once, running ones when
        their worker notices (between parts). Returns the job's state, None if unknown."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_jobs SET state = 'cancelled', reason = 'cancelled on request', "
                "updated_at = now(), finished_at = now() "
                "WHERE job_id = %s AND state = ANY(%s) RETURNING state",
                (job_id, list(ACTIVE_STATES)),
            )
            if cur.fetchone() is not None:
                cur.execute(
                    "UPDATE migration_items SET state = 'cancelled', reason = 'job cancelled', "
                    "updated_at = now() WHERE job_id = %s AND state = 'pending'",
                    (job_id,),
                )
            cur.execute("SELECT state FROM migration_jobs WHERE job_id = %s", (job_id,))
            row = cur.fetchone()
        return None if row is None else str(row["state"])

    def record_rejected(self, job_id: str, data: Any, reason: str) -> None:
        """Keep a rejected submission visible (state ``failed`` with the reason)."""

        def text(name: str) -> str:
            value = data.get(name) if isinstance(data, dict) else None
            return value if isinstance(value, str) else ""

        with self._tx() as cur:
            cur.execute(
                "INSERT INTO migration_jobs (job_id, state, source, destination, spec, reason, "
                "finished_at) VALUES (%s, 'failed', %s, %s, '{}'::jsonb, %s, now()) "
                "ON CONFLICT (job_id) DO NOTHING",
                (job_id, text("source"), text("destination"), f"bad spec: {reason}"),
            )

    def cancel_pending(self, job_id: str, reason: str) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_items SET state = 'cancelled', reason = %s, updated_at = now() "
                "WHERE job_id = %s AND state = 'pending'",
                (reason, job_id),
            )

    def chunk_count(self, job_id: str) -> int:
        with self._tx() as cur:
            cur.execute(
                "SELECT COALESCE(max(chunk) + 1, 0) AS n FROM migration_items WHERE job_id = %s",
                (job_id,),
            )
            return int(cur.fetchone()["n"])  # type: ignore[index]

    # --- items ------------------------------------------------------------------------------
    def add_items(self, job_id: str, items: list[PlannedItem], chunk_size: int, chunk_bytes: int) -> list[int]:
        """Append items not planned yet (a re-run of planning skips paths already present);
        numbering continues after the last item, and so does the last chunk until it holds
        ``chunk_size`` items or ``chunk_bytes`` bytes. An item whose destination key another
        item has is stored as failed with the reason. Returns the chunks that received items."""
        if not items:
            return []
        with self._tx() as cur:
            cur.execute("SELECT 1 FROM migration_jobs WHERE job_id = %s FOR UPDATE", (job_id,))
            cur.execute(
                "SELECT seq, chunk, size FROM migration_items WHERE job_id = %s ORDER BY seq DESC LIMIT %s",
                (job_id, chunk_size),
            )
            tail = cur.fetchall()
            seq = tail[0]["seq"] + 1 if tail else 0
            cutter = ChunkCutter(chunk_size, chunk_bytes)
            if tail:
                last = [row for row in tail if row["chunk"] == tail[0]["chunk"]]
                cutter.chunk, cutter.items = tail[0]["chunk"], len(last)
                cutter.bytes = sum(row["size"] or 0 for row in last)
            cur.execute(
                "SELECT path FROM migration_items WHERE job_id = %s AND path = ANY(%s)",
                (job_id, [i.path for i in items]),
            )
            present = {row["path"] for row in cur.fetchall()}
            fresh = [i for i in items if i.path not in present]
            cur.execute(
                "SELECT dest_key, entity_id FROM migration_items WHERE job_id = %s AND dest_key = ANY(%s)",
                (job_id, [i.dest_key for i in fresh if i.dest_key]),
            )
            taken = {row["dest_key"]: row["entity_id"] for row in cur.fetchall()}
            rows = []
            for offset, item in enumerate(fresh):
                if item.dest_key in taken:
                    item = collided(item, taken[item.dest_key])
                rows.append(_item_params(job_id, seq + offset, cutter.place(item.size), item))
            cur.executemany(
                "INSERT INTO migration_items (job_id, seq, chunk, entity_id, path, dest_key, size, "
                "want_sha256, want_md5, state, reason) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        return sorted({row[2] for row in rows})

    def claim(self, job_id: str, chunk: int, limit: int, lease_s: float) -> list[ItemRow]:
        """Lease up to ``limit`` pending (or abandoned) items of a chunk of an active job."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_items SET state = 'failed', updated_at = now(), "
                "reason = 'the worker died ' || attempts || ' times while copying this item' "
                "WHERE job_id = %s AND chunk = %s AND state = 'running' "
                "AND lease_until < now() AND attempts >= %s",
                (job_id, chunk, MAX_CLAIMS),
            )
            cur.execute(
                "UPDATE migration_items SET state = 'running', attempts = attempts + 1, "
                "lease_until = now() + make_interval(secs => %s), updated_at = now() "
                "WHERE (job_id, seq) IN (SELECT i.job_id, i.seq FROM migration_items i "
                "  JOIN migration_jobs j ON j.job_id = i.job_id "
                "  WHERE i.job_id = %s AND i.chunk = %s AND j.state IN ('planning', 'running') "
                "  AND (i.state = 'pending' OR (i.state = 'running' AND i.lease_until < now())) "
                "  ORDER BY i.seq LIMIT %s FOR UPDATE OF i SKIP LOCKED) "
                "RETURNING job_id, seq, chunk, entity_id, path, dest_key, size, want_sha256, "
                "want_md5, upload_id, part_size, attempts",
                (lease_s, job_id, chunk, limit),
            )
            rows = cur.fetchall()
        return sorted((ItemRow(**row) for row in rows), key=lambda r: r.seq)

    def open_keys(self, job_id: str, chunk: int) -> list[str]:
        """Destination keys of a chunk's items still to copy."""
        with self._tx() as cur:
            cur.execute(
                "SELECT dest_key FROM migration_items WHERE job_id = %s AND chunk = %s "
                "AND state IN ('pending', 'running') AND dest_key IS NOT NULL",
                (job_id, chunk),
            )
            return [row["dest_key"] for row in cur.fetchall()]

    def renew(self, job_id: str, seqs: Iterable[int], lease_s: float) -> str:
        """Extend the leases of running items; returns the job state (to notice a cancel)."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_items SET lease_until = now() + make_interval(secs => %s) "
                "WHERE job_id = %s AND seq = ANY(%s) AND state = 'running'",
                (lease_s, job_id, list(seqs)),
            )
            cur.execute("SELECT state FROM migration_jobs WHERE job_id = %s", (job_id,))
            row = cur.fetchone()
        return "missing" if row is None else str(row["state"])

    def set_size(self, job_id: str, seq: int, size: int) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_items SET size = %s WHERE job_id = %s AND seq = %s",
                (size, job_id, seq),
            )

    def finish_items(self, finished: Sequence[Finished]) -> None:
        """Record items' outcomes (done, skipped, failed, cancelled) and drop their leases, with
        bytes sent outside parts and the verified copies, in one transaction (a chunk task
        records whatever finished together: one commit for many small files). A done/skipped
        item keeps no upload id; a failed one keeps it for the orphan sweep. Part rows stay (how
        often each part was sent) until the job is deleted."""
        if not finished:
            return
        with self._tx() as cur:
            cur.executemany(
                "UPDATE migration_items SET state = %s, reason = %s, checksum = %s, etag = %s, "
                "link = %s, lease_until = NULL, updated_at = now(), bytes_sent = bytes_sent + %s, "
                "upload_id = CASE WHEN %s THEN upload_id ELSE NULL END "
                "WHERE job_id = %s AND seq = %s",
                [(f.state, f.reason, f.checksum, f.etag, f.link, f.sent, f.state in ("failed", "cancelled"),
                  f.job_id, f.seq) for f in finished],
            )  # fmt: skip
            verified = [f.verified for f in finished if f.verified is not None]
            if verified:
                cur.executemany(_UPSERT_VERIFIED, [(location, key, v.size, v.etag, v.sha256, v.md5)
                                                   for location, key, v in verified])  # fmt: skip

    def release(self, job_id: str, seq: int) -> None:
        """Give an item back (pending, lease dropped) so a later task continues it."""
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_items SET state = 'pending', lease_until = NULL, "
                "attempts = GREATEST(attempts - 1, 0), updated_at = now() "
                "WHERE job_id = %s AND seq = %s AND state = 'running'",
                (job_id, seq),
            )

    # --- uploads and parts ------------------------------------------------------------------
    def start_upload(self, job_id: str, seq: int, upload_id: str, part_size: int) -> None:
        """Remember a new resumable upload for the item (forgetting any earlier one's parts)."""
        with self._tx() as cur:
            cur.execute("DELETE FROM migration_parts WHERE job_id = %s AND seq = %s", (job_id, seq))
            cur.execute(
                "UPDATE migration_items SET upload_id = %s, part_size = %s, updated_at = now() "
                "WHERE job_id = %s AND seq = %s",
                (upload_id, part_size, job_id, seq),
            )

    def refresh_upload(self, item: ItemRow) -> ItemRow:
        """``item`` with the upload id and part size currently recorded for it."""
        with self._tx() as cur:
            cur.execute(
                "SELECT upload_id, part_size FROM migration_items WHERE job_id = %s AND seq = %s",
                (item.job_id, item.seq),
            )
            row = cur.fetchone()
        if row is None:
            return item
        return replace(item, upload_id=row["upload_id"], part_size=row["part_size"])

    def forget_upload(self, job_id: str, seq: int) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM migration_parts WHERE job_id = %s AND seq = %s", (job_id, seq))
            cur.execute(
                "UPDATE migration_items SET upload_id = NULL, part_size = NULL WHERE job_id = %s AND seq = %s",
                (job_id, seq),
            )

    def part_sending(self, job_id: str, seq: int, upload_id: str, number: int, size: int, fingerprint: str) -> None:
        """Count a send of a part before it goes out (so re-sends are visible)."""
        with self._tx() as cur:
            cur.execute(
                "INSERT INTO migration_parts (job_id, seq, number, upload_id, size, fingerprint, sends) "
                "VALUES (%s, %s, %s, %s, %s, %s, 1) ON CONFLICT (job_id, seq, number) DO UPDATE "
                "SET sends = migration_parts.sends + 1, upload_id = EXCLUDED.upload_id, "
                "size = EXCLUDED.size, fingerprint = EXCLUDED.fingerprint, done = false, "
                "updated_at = now()",
                (job_id, seq, number, upload_id, size, fingerprint),
            )

    def part_done(self, job_id: str, seq: int, number: int, etag: str) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_parts SET done = true, etag = %s, updated_at = now() "
                "WHERE job_id = %s AND seq = %s AND number = %s RETURNING size",
                (etag, job_id, seq, number),
            )
            row = cur.fetchone()
            if row is not None:
                cur.execute(
                    "UPDATE migration_items SET bytes_sent = bytes_sent + %s, updated_at = now() "
                    "WHERE job_id = %s AND seq = %s",
                    (row["size"], job_id, seq),
                )

    def parts(self, job_id: str, seq: int, upload_id: str) -> list[PartRow]:
        with self._tx() as cur:
            cur.execute(
                "SELECT number, size, fingerprint, etag, done, sends FROM migration_parts "
                "WHERE job_id = %s AND seq = %s AND upload_id = %s ORDER BY number",
                (job_id, seq, upload_id),
            )
            return [PartRow(**row) for row in cur.fetchall()]

    # --- verified copies --------------------------------------------------------------------
    def verified(self, location: str, key: str) -> Verified | None:
        with self._tx() as cur:
            cur.execute(
                "SELECT size, etag, sha256, md5 FROM migration_verified WHERE location = %s AND key = %s",
                (location, key),
            )
            row = cur.fetchone()
        return None if row is None else Verified(**row)

    def record_verified(self, location: str, key: str, v: Verified) -> None:
        with self._tx() as cur:
            cur.execute(_UPSERT_VERIFIED, (location, key, v.size, v.etag, v.sha256, v.md5))


_UPSERT_VERIFIED = (
    "INSERT INTO migration_verified (location, key, size, etag, sha256, md5) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (location, key) DO UPDATE SET "
    "size = EXCLUDED.size, etag = EXCLUDED.etag, sha256 = EXCLUDED.sha256, "
    "md5 = EXCLUDED.md5, verified_at = now()"
)


def _item_params(job_id: str, seq: int, chunk: int, i: PlannedItem) -> tuple[Any, ...]:
    state = "failed" if i.reason else "pending"
    return (
        job_id, seq, chunk, i.entity_id, i.path, i.dest_key, i.size, i.sha256, i.md5, state,
        i.reason,
    )  # fmt: skip
