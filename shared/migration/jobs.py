"""The job store: migration job rows (create, state, cancel) and the counts progress reads.

This is the part of the migration state other services need (the CLI and the HTTP API through
``client``, the worker through its runtime). Items, parts, verified copies and link batches
have their own stores in ``mountsync.workers.migration`` (``items``, ``parts``, ``verified``,
``lifecycle``): only workers write them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from mountsync.shared.migration.pgstore import PooledStore
from mountsync.shared.migration.spec import MigrationSpec

ACTIVE_STATES = ("submitted", "planning", "running")
FINAL_STATES = ("completed", "completed_with_errors", "failed", "cancelled")
JOB_STATES = ACTIVE_STATES + FINAL_STATES

_JOB_SQL = """
SELECT j.*, EXTRACT(EPOCH FROM (COALESCE(j.finished_at, now()) - COALESCE(j.started_at, now())))
         AS elapsed,
       (SELECT COALESCE(sum(links), 0) FROM migration_link_batches b
         WHERE b.job_id = j.job_id AND b.state = 'delivered') AS links_delivered,
       (SELECT count(*) FROM migration_link_batches b
         WHERE b.job_id = j.job_id AND b.state = 'failed') AS batches_failed
FROM migration_jobs j WHERE j.job_id = %s
"""

_ITEM_COUNTS_SQL = """
SELECT
  count(*)                                             AS items_total,
  count(*) FILTER (WHERE state = 'done')               AS items_done,
  count(*) FILTER (WHERE state = 'skipped')            AS items_skipped,
  count(*) FILTER (WHERE state = 'failed')             AS items_failed,
  count(*) FILTER (WHERE state = 'cancelled')          AS items_cancelled,
  count(*) FILTER (WHERE state = 'running')            AS items_running,
  count(*) FILTER (WHERE state = 'pending')            AS items_pending,
  COALESCE(sum(size), 0)                               AS bytes_total,
  COALESCE(sum(size) FILTER (WHERE state IN ('done', 'skipped')), 0) AS bytes_finished,
  COALESCE(sum(size) FILTER (WHERE state IN ('failed', 'cancelled')), 0) AS bytes_dropped,
  COALESCE(sum(bytes_sent), 0)                         AS bytes_sent,
  COALESCE(sum(bytes_sent) FILTER (WHERE state IN ('running', 'pending')), 0) AS bytes_partial,
  count(*) FILTER (WHERE link_batch IS NOT NULL)       AS batched
FROM migration_items WHERE job_id = %s
"""

JobCounts = tuple[dict[str, Any], dict[str, Any]]  # (job row with link totals, item counts)


class JobStore(PooledStore):
    """Job rows of ``migration_jobs``, and the read-only counts behind ``migrate status``."""

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

    def fail(self, job_id: str, reason: str, *, only_from: Iterable[str]) -> None:
        """Fail a job and cancel its pending items with the same reason (planning failed)."""
        if self.set_state(job_id, "failed", reason=reason, only_from=only_from):
            with self._tx() as cur:
                cur.execute(
                    "UPDATE migration_items SET state = 'cancelled', reason = %s, updated_at = now() "
                    "WHERE job_id = %s AND state = 'pending'",
                    (reason, job_id),
                )

    # --- what progress reads ------------------------------------------------------------------
    def counts(self, job_id: str) -> JobCounts | None:
        """The job row (with elapsed seconds and link totals) and its item counts, or None."""
        with self._tx() as cur:
            return _counts(cur, job_id)

    def recent_counts(self, *, limit: int, state: str | None) -> list[JobCounts]:
        """``counts`` of the most recent jobs (optionally of one state), in one transaction."""
        with self._tx() as cur:
            cur.execute(
                "SELECT job_id FROM migration_jobs WHERE (%s::text IS NULL OR state = %s) "
                "ORDER BY created_at DESC, job_id LIMIT %s",
                (state, state, limit),
            )
            ids = [row["job_id"] for row in cur.fetchall()]
            found = (_counts(cur, job_id) for job_id in ids)
            return [counts for counts in found if counts is not None]

    def failures(self, job_id: str, limit: int) -> list[dict[str, Any]]:
        """The first failed items of a job with their reasons."""
        with self._tx() as cur:
            cur.execute(
                "SELECT entity_id, path, reason FROM migration_items WHERE job_id = %s "
                "AND state = 'failed' ORDER BY seq LIMIT %s",
                (job_id, limit),
            )
            return list(cur.fetchall())


def _counts(cur: Any, job_id: str) -> JobCounts | None:
    cur.execute(_JOB_SQL, (job_id,))
    job = cur.fetchone()
    if job is None:
        return None
    cur.execute(_ITEM_COUNTS_SQL, (job_id,))
    return job, cur.fetchone() or {}
