"""The item store: planned items, their leases, and their outcomes (``migration_items``).

Items are claimed with a lease (``FOR UPDATE SKIP LOCKED``): two deliveries of the same chunk
task split its items instead of copying them twice, and the items of a worker that died are
claimed again once its lease has run out. Callers: ``service`` (plan, claim, renew, record),
``transfer`` (``set_size``), ``upkeep`` (``open_chunks``, ``stalled_chunks``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mountsync.shared.migration.pgstore import PooledStore
from mountsync.shared.migration.plan import ChunkCutter, PlannedItem, collided

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
class Finished:
    """The outcome of one item, as ``ItemStore.finish`` records it."""

    job_id: str
    seq: int
    state: str
    reason: str | None = None
    checksum: str | None = None
    etag: str | None = None
    link: str | None = None
    sent: int = 0


class ItemStore(PooledStore):
    """``migration_items``: planning appends, chunk runs claim, renew and finish."""

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

    def chunk_count(self, job_id: str) -> int:
        with self._tx() as cur:
            cur.execute(
                "SELECT COALESCE(max(chunk) + 1, 0) AS n FROM migration_items WHERE job_id = %s",
                (job_id,),
            )
            return int(cur.fetchone()["n"])  # type: ignore[index]

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

    def open_chunks(self, job_id: str) -> list[int]:
        """Chunks of a job that still have pending or running items."""
        with self._tx() as cur:
            cur.execute(
                "SELECT DISTINCT chunk FROM migration_items WHERE job_id = %s "
                "AND state IN ('pending', 'running') ORDER BY chunk",
                (job_id,),
            )
            return [int(row["chunk"]) for row in cur.fetchall()]

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

    def finish(self, finished: Sequence[Finished], released: Sequence[tuple[str, int]] = ()) -> None:
        """Record items' outcomes (done, skipped, failed, cancelled) and drop their leases, with
        bytes sent outside parts, and give ``released`` items (job id, seq) back as pending for
        a later task, all in one transaction (a chunk task records whatever finished together:
        one commit for many small files). A done/skipped item keeps no upload id; a failed one
        keeps it for the orphan sweep. Part rows stay (how often each part was sent) until the
        job is deleted."""
        if not finished and not released:
            return
        with self._tx() as cur:
            if finished:
                cur.executemany(
                    "UPDATE migration_items SET state = %s, reason = %s, checksum = %s, etag = %s, "
                    "link = %s, lease_until = NULL, updated_at = now(), bytes_sent = bytes_sent + %s, "
                    "upload_id = CASE WHEN %s THEN upload_id ELSE NULL END "
                    "WHERE job_id = %s AND seq = %s",
                    [(f.state, f.reason, f.checksum, f.etag, f.link, f.sent, f.state in ("failed", "cancelled"),
                      f.job_id, f.seq) for f in finished],
                )  # fmt: skip
            if released:
                cur.executemany(
                    "UPDATE migration_items SET state = 'pending', lease_until = NULL, "
                    "attempts = GREATEST(attempts - 1, 0), updated_at = now() "
                    "WHERE job_id = %s AND seq = %s AND state = 'running'",
                    list(released),
                )

    def stalled_chunks(self, stale_after_s: float) -> list[tuple[str, int]]:
        """Chunks of active jobs whose work nobody is doing: an item whose worker's lease ran
        out, or pending items untouched for ``stale_after_s`` (their task was lost)."""
        with self._tx() as cur:
            cur.execute(
                "SELECT i.job_id, i.chunk FROM migration_items i "
                "JOIN migration_jobs j ON j.job_id = i.job_id "
                "WHERE j.state IN ('planning', 'running') AND i.state IN ('pending', 'running') "
                "GROUP BY i.job_id, i.chunk "
                "HAVING bool_or(i.state = 'running' AND i.lease_until < now()) "
                "OR (bool_and(i.state = 'pending') "
                "    AND max(i.updated_at) < now() - make_interval(secs => %s)) "
                "ORDER BY i.job_id, i.chunk",
                (stale_after_s,),
            )
            return [(row["job_id"], int(row["chunk"])) for row in cur.fetchall()]


def _item_params(job_id: str, seq: int, chunk: int, i: PlannedItem) -> tuple[Any, ...]:
    state = "failed" if i.reason else "pending"
    return (
        job_id, seq, chunk, i.entity_id, i.path, i.dest_key, i.size, i.sha256, i.md5, state,
        i.reason,
    )  # fmt: skip
