"""Link delivery, and the periodic sweep: abort orphaned uploads, re-queue stalled work.

Called by ``tasks`` (deliver_links, maintain, resume). Reads and records through the stores of
the runtime: ``Lifecycle`` (link batches), ``ItemStore`` (open and stalled chunks), ``PartStore``
(orphaned uploads); ``service.settle_job`` ends a job once its last batch is delivered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from mountsync.shared.errors import ObjectNotFound
from mountsync.shared.migration import TASK_CHUNK, TASK_DELIVER
from mountsync.shared.migration import metrics as m
from mountsync.shared.migration.spec import parse_spec
from mountsync.shared.storage import open_storage
from mountsync.shared.storage.base import UploadSession
from mountsync.workers.migration.links import build_payload, deliver
from mountsync.workers.migration.retry import Backoff
from mountsync.workers.migration.runtime import MigrationRuntime
from mountsync.workers.migration.service import settle_job

log = structlog.get_logger("mountsync.migration")
STALLED_BATCH_S = 600.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """``state`` of the batch after this attempt; ``retry_in_s`` when it should run again."""

    state: str
    retry_in_s: float | None = None
    reason: str | None = None


def deliver_batch(rt: MigrationRuntime, job_id: str, batch: int) -> Delivery:
    job = rt.jobs.job(job_id)
    current = rt.lifecycle.batch_state(job_id, batch)
    if job is None or current is None:
        return Delivery("unknown")
    if current["state"] != "pending":
        return Delivery(current["state"])
    spec = parse_spec(job["spec"])
    if spec.callback is None:
        rt.lifecycle.record_attempt(job_id, batch, "delivered", "no callback")
        settle_job(rt, job_id)
        return Delivery("delivered")
    links = rt.lifecycle.batch_links(job_id, batch)
    attempt = deliver(spec.callback, build_payload(job_id, batch, links), app=rt.app)
    attempts = int(current["attempts"]) + 1
    out_of_tries = attempts >= spec.options.callback_attempts
    state = attempt.state
    if state == "retry" and out_of_tries:
        state = "failed"
    m.LINK_BATCHES.labels(state).inc()
    if state == "retry":
        rt.lifecycle.record_attempt(job_id, batch, "pending", attempt.reason)
        backoff = Backoff(spec.options.retry_base_s, spec.options.retry_max_s)
        wait = max(backoff.delay(attempts), attempt.retry_after_s or 0.0)
        return Delivery("pending", min(wait, spec.options.retry_max_s), attempt.reason)
    reason = attempt.reason
    if state == "failed" and out_of_tries and attempt.state == "retry":
        reason = f"gave up after {attempts} attempts: {attempt.reason}"
    rt.lifecycle.record_attempt(job_id, batch, state, reason)
    if state == "failed":
        log.error("link batch not delivered", job_id=job_id, batch=batch, reason=reason)
    settle_job(rt, job_id)
    return Delivery(state, None, reason)


def maintain(rt: MigrationRuntime) -> dict[str, int]:
    """One sweep: abort orphaned uploads, re-queue chunks and link batches nobody works on."""
    aborted = abort_orphans(rt)
    chunks = rt.items.stalled_chunks(float(rt.settings.visibility_timeout_s))
    for job_id, chunk in chunks:
        rt.send(TASK_CHUNK, job_id, chunk)
    batches = rt.lifecycle.stalled_batches(STALLED_BATCH_S)
    for job_id, batch in batches:
        rt.send(TASK_DELIVER, job_id, batch)
    return {"orphans_aborted": aborted, "chunks_requeued": len(chunks),
            "batches_requeued": len(batches)}  # fmt: skip


def abort_orphans(rt: MigrationRuntime, limit: int = 100) -> int:
    aborted = 0
    for orphan in rt.parts.orphans(limit):
        spec = parse_spec(orphan.spec)
        dest = open_storage(spec.destination, spec.options.destination_storage)
        session = UploadSession(orphan.dest_key, orphan.upload_id, orphan.part_size)
        try:
            dest.abort_upload(session)
        except ObjectNotFound:
            pass  # gone already (expired or aborted before)
        except Exception as exc:
            log.warning("orphan upload abort failed", job_id=orphan.job_id, key=orphan.dest_key,
                        error=str(exc))  # fmt: skip
            continue
        rt.parts.forget_upload(orphan.job_id, orphan.seq)
        m.ORPHANS_ABORTED.inc()
        aborted += 1
    return aborted


def resume(rt: MigrationRuntime, job_id: str) -> dict[str, Any]:
    """Queue every open chunk and undelivered link batch of a job again (operator action)."""
    chunks = rt.items.open_chunks(job_id)
    for chunk in chunks:
        rt.send(TASK_CHUNK, job_id, chunk)
    batches = [b for j, b in rt.lifecycle.stalled_batches(0.0) if j == job_id]
    for batch in batches:
        rt.send(TASK_DELIVER, job_id, batch)
    settle_job(rt, job_id)
    return {"job_id": job_id, "chunks": chunks, "batches": batches}
