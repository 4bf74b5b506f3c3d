"""The lifecycle store: link batches and the end of a job (``migration_link_batches``, and the
final state on ``migration_jobs``).

``Lifecycle.settle`` is called by ``service`` after every chunk run and by ``upkeep`` after
every link delivery. Under a lock on the job row it cuts finished items into link batches (full
batches of ``batch_size`` while items are still running, the remainder once none are) and
decides the final state when nothing is left. ``upkeep`` reads and records batch deliveries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mountsync.shared.migration.pgstore import PooledStore

LINK_BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Settled:
    """What ``settle`` did: link batches to deliver now, and the final state if it ended."""

    batches: tuple[int, ...] = ()
    final_state: str | None = None


class Lifecycle(PooledStore):
    """Link batches and job endings; every method is one transaction."""

    def settle(self, job_id: str, batch_size: int = LINK_BATCH_SIZE) -> Settled:
        with self._tx() as cur:
            cur.execute(
                "SELECT state, planned, spec FROM migration_jobs WHERE job_id = %s FOR UPDATE",
                (job_id,),
            )
            job = cur.fetchone()
            if job is None or job["state"] not in ("planning", "running", "cancelled"):
                return Settled()
            cur.execute(
                "SELECT count(*) AS open FROM migration_items WHERE job_id = %s AND state IN ('pending', 'running')",
                (job_id,),
            )
            open_items = int(cur.fetchone()["open"])  # type: ignore[index]
            all_in = bool(job["planned"]) and open_items == 0
            batches: list[int] = []
            if job["spec"].get("callback"):
                batches = _cut_batches(cur, job_id, batch_size, full_only=not all_in)
            if not all_in or job["state"] != "running":
                return Settled(tuple(batches))
            final = _final_state(cur, job_id)
            if final is None:
                return Settled(tuple(batches))
            state, reason = final
            cur.execute(
                "UPDATE migration_jobs SET state = %s, reason = %s, finished_at = now(), "
                "updated_at = now() WHERE job_id = %s",
                (state, reason, job_id),
            )
            return Settled(tuple(batches), state)

    def batch_links(self, job_id: str, batch: int) -> list[dict[str, Any]]:
        """The links of one batch, as the callback receives them."""
        with self._tx() as cur:
            cur.execute(
                "SELECT entity_id, link, size, checksum FROM migration_items "
                "WHERE job_id = %s AND link_batch = %s ORDER BY seq",
                (job_id, batch),
            )
            return [dict(row) for row in cur.fetchall()]

    def batch_state(self, job_id: str, batch: int) -> dict[str, Any] | None:
        with self._tx() as cur:
            cur.execute(
                "SELECT state, attempts FROM migration_link_batches WHERE job_id = %s AND batch = %s",
                (job_id, batch),
            )
            return cur.fetchone()

    def record_attempt(self, job_id: str, batch: int, state: str, reason: str | None = None) -> None:
        with self._tx() as cur:
            cur.execute(
                "UPDATE migration_link_batches SET attempts = attempts + 1, state = %s, reason = %s, "
                "updated_at = now(), "
                "delivered_at = CASE WHEN %s = 'delivered' THEN now() ELSE delivered_at END "
                "WHERE job_id = %s AND batch = %s",
                (state, reason, state, job_id, batch),
            )

    def stalled_batches(self, stale_after_s: float) -> list[tuple[str, int]]:
        with self._tx() as cur:
            cur.execute(
                "SELECT job_id, batch FROM migration_link_batches WHERE state = 'pending' "
                "AND updated_at < now() - make_interval(secs => %s) ORDER BY job_id, batch",
                (stale_after_s,),
            )
            return [(row["job_id"], int(row["batch"])) for row in cur.fetchall()]


def _cut_batches(cur: Any, job_id: str, batch_size: int, *, full_only: bool) -> list[int]:
    cur.execute(
        "SELECT COALESCE(max(batch) + 1, 0) AS next FROM migration_link_batches WHERE job_id = %s",
        (job_id,),
    )
    next_batch = int(cur.fetchone()["next"])
    made: list[int] = []
    while True:
        cur.execute(
            "SELECT seq FROM migration_items WHERE job_id = %s AND link_batch IS NULL "
            "AND state IN ('done', 'skipped') ORDER BY seq LIMIT %s",
            (job_id, batch_size),
        )
        seqs = [row["seq"] for row in cur.fetchall()]
        if not seqs or (full_only and len(seqs) < batch_size):
            return made
        cur.execute(
            "INSERT INTO migration_link_batches (job_id, batch, links) VALUES (%s, %s, %s)",
            (job_id, next_batch, len(seqs)),
        )
        cur.execute(
            "UPDATE migration_items SET link_batch = %s WHERE job_id = %s AND seq = ANY(%s)",
            (next_batch, job_id, seqs),
        )
        made.append(next_batch)
        next_batch += 1


def _final_state(cur: Any, job_id: str) -> tuple[str, str | None] | None:
    """None while link batches are undelivered; else (state, reason)."""
    cur.execute(
        "SELECT count(*) FILTER (WHERE state = 'pending') AS pending, "
        "count(*) FILTER (WHERE state = 'failed') AS failed "
        "FROM migration_link_batches WHERE job_id = %s",
        (job_id,),
    )
    batches = cur.fetchone()
    if batches["pending"]:
        return None
    cur.execute(
        "SELECT count(*) FILTER (WHERE state IN ('done', 'skipped')) AS ok, "
        "count(*) FILTER (WHERE state = 'failed') AS failed FROM migration_items "
        "WHERE job_id = %s",
        (job_id,),
    )
    items = cur.fetchone()
    return final_state(int(items["ok"]), int(items["failed"]), int(batches["failed"]))


def final_state(ok: int, failed: int, batches_failed: int) -> tuple[str, str | None]:
    """Pure: ``completed`` when nothing failed, ``failed`` when nothing succeeded,
    ``completed_with_errors`` in between."""
    problems = []
    if failed:
        problems.append(f"{failed} item(s) failed")
    if batches_failed:
        problems.append(f"{batches_failed} link batch(es) could not be delivered")
    if not problems:
        return "completed", None
    if ok == 0 and failed > 0:
        return "failed", "; ".join(problems)
    return "completed_with_errors", "; ".join(problems)
