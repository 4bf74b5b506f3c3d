"""Progress of migration jobs: items, bytes, rate and ETA.

``JobStore.counts`` reads the rows (one transaction); ``build_progress`` turns them into a
``Progress`` (pure). Callers: ``client`` (CLI ``migrate status/list``, HTTP API) and tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from mountsync.shared.migration.jobs import ACTIVE_STATES, JobStore


@dataclass(frozen=True, slots=True)
class Progress:
    """What ``migrate status`` shows. ``bytes_done`` counts finished and skipped items plus the
    confirmed parts of running ones; ``rate_bps`` is bytes actually sent per second since the
    job started; ``eta_s`` is None until there is a rate."""

    job_id: str
    state: str
    reason: str | None
    source: str
    destination: str
    planned: bool
    items_total: int
    items_done: int
    items_skipped: int
    items_failed: int
    items_cancelled: int
    items_running: int
    items_pending: int
    bytes_total: int
    bytes_done: int
    bytes_sent: int
    rate_bps: float
    eta_s: float | None
    elapsed_s: float
    links_delivered: int
    link_batches_failed: int
    created_at: datetime | None
    finished_at: datetime | None

    @property
    def items_finished(self) -> int:
        return self.items_done + self.items_skipped + self.items_failed + self.items_cancelled

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("created_at", "finished_at"):
            value = out[name]
            out[name] = value.isoformat() if value else None
        out["rate_bps"] = round(self.rate_bps, 1)
        out["eta_s"] = None if self.eta_s is None else round(self.eta_s, 1)
        out["elapsed_s"] = round(self.elapsed_s, 3)
        return out


def job_progress(store: JobStore, job_id: str) -> Progress | None:
    counts = store.counts(job_id)
    return None if counts is None else build_progress(*counts)


def build_progress(job: dict[str, Any], items: dict[str, Any]) -> Progress:
    """Pure: rows -> ``Progress`` (rate and ETA from the sent bytes and the elapsed time)."""
    elapsed = float(job.get("elapsed") or 0.0)
    sent = int(items.get("bytes_sent", 0))
    total = int(items.get("bytes_total", 0))
    done = int(items.get("bytes_finished", 0)) + int(items.get("bytes_partial", 0))
    remaining = max(total - done - int(items.get("bytes_dropped", 0)), 0)
    rate = sent / elapsed if elapsed > 0 else 0.0
    active = job["state"] in ACTIVE_STATES
    eta = remaining / rate if (active and rate > 0) else (0.0 if not active else None)
    return Progress(
        job_id=job["job_id"],
        state=job["state"],
        reason=job.get("reason"),
        source=job["source"],
        destination=job["destination"],
        planned=bool(job.get("planned")),
        items_total=int(items.get("items_total", 0)),
        items_done=int(items.get("items_done", 0)),
        items_skipped=int(items.get("items_skipped", 0)),
        items_failed=int(items.get("items_failed", 0)),
        items_cancelled=int(items.get("items_cancelled", 0)),
        items_running=int(items.get("items_running", 0)),
        items_pending=int(items.get("items_pending", 0)),
        bytes_total=total,
        bytes_done=done,
        bytes_sent=sent,
        rate_bps=rate,
        eta_s=eta,
        elapsed_s=elapsed,
        links_delivered=int(job.get("links_delivered") or 0),
        link_batches_failed=int(job.get("batches_failed") or 0),
        created_at=job.get("created_at"),
        finished_at=job.get("finished_at"),
    )


def list_jobs(store: JobStore, *, limit: int = 50, state: str | None = None) -> list[Progress]:
    """Most recent jobs first (optionally only one state)."""
    return [build_progress(*counts) for counts in store.recent_counts(limit=limit, state=state)]


def item_failures(store: JobStore, job_id: str, limit: int = 20) -> list[dict[str, Any]]:
    """The first failed items of a job with their reasons (for ``status``)."""
    return store.failures(job_id, limit)
