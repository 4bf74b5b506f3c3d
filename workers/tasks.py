"""Thin Celery tasks: decode arguments, call a service, return a small JSON result."""

from __future__ import annotations

import json
from typing import Any

import structlog
from celery import Celery, Task

from mountsync.shared.catalog import runs
from mountsync.shared.catalog.change_log import drain_feed, prune_changes
from mountsync.shared.catalog.deadletters import DeadLetters
from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.errors import InvalidEvent, MountNotFound, RetryableError
from mountsync.shared.events import ObjectChange
from mountsync.shared.queues import (
    FEED_STREAM,
    QUEUE_REINDEX,
    TASK_APPLY,
    TASK_PRUNE_CHANGES,
    TASK_RECONCILE_ALL,
    TASK_REINDEX,
    send,
)
from mountsync.shared.storage import open_storage
from mountsync.workers.context import WorkerContext, current
from mountsync.workers.deliveries import finished, too_many_deliveries
from mountsync.workers.reindex import ReindexSummary, run_reindex
from mountsync.workers.service import apply_batch

log = structlog.get_logger("mountsync.tasks")
PROGRESS_EVERY_S = 0.5


def decode_batch(ctx: WorkerContext, batch: list[Any], task_id: str | None) -> list[ObjectChange]:
    """Decode wire changes; undecodable ones are dead-lettered, never dropped silently."""
    changes: list[ObjectChange] = []
    for item in batch:
        try:
            changes.append(ObjectChange.from_wire(item))
        except InvalidEvent as exc:
            DeadLetters(ctx.pool).record(
                source="changes-queue",
                message_id=task_id,
                reason=str(exc),
                payload=json.dumps(item, default=str).encode(),
            )
    return changes


def apply_changes_task(self: Task, batch: list[Any]) -> dict[str, int]:
    ctx = current()
    if too_many_deliveries(ctx, self, [batch]):
        return {"dead_lettered": len(batch)}
    changes = decode_batch(ctx, batch, self.request.id)
    structlog.contextvars.bind_contextvars(task_id=self.request.id)
    try:
        result = apply_batch(ctx, changes)
    except RetryableError as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, 60), max_retries=20) from exc
    finally:
        structlog.contextvars.unbind_contextvars("task_id")
    log.info(
        "applied",
        task_id=self.request.id,
        received=result.received,
        applied=len(result.applied),
        stale=result.stale,
        dropped=result.dropped,
        source_ids=sorted({c.source_id for c in changes if c.source_id})[:20],
    )
    finished(ctx, self)
    return {
        "received": result.received,
        "applied": len(result.applied),
        "stale": result.stale,
        "dropped": result.dropped,
    }


def reindex_mount_task(
    self: Task, name: str, prefix: str = "", run_id: int | None = None, trigger: str = "manual"
) -> dict[str, Any]:
    ctx = current()
    if too_many_deliveries(ctx, self, [name, prefix, run_id, trigger]):
        return {"dead_lettered": True}
    with ctx.pool.connection() as conn:
        try:
            mount = Mounts(conn).get(name)
        except MountNotFound as exc:
            log.error("reindex of an unknown mount", mount=name, error=str(exc))
            if run_id:
                runs.update_run(conn, run_id, {}, state="failed", error=str(exc))
            conn.commit()
            finished(ctx, self)
            return {"error": str(exc)}
        run_id = run_id or runs.create_run(conn, mount.id, prefix, trigger)
        runs.start_run(conn, run_id)
    summary = _run_with_progress(ctx, mount, prefix, run_id)
    finished(ctx, self)
    return {"run": run_id, **summary}


def _run_with_progress(ctx: WorkerContext, mount: Any, prefix: str, run_id: int) -> dict[str, Any]:
    last = [0.0]

    def progress(summary: ReindexSummary) -> None:
        now = ctx.clock.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            with ctx.pool.connection() as conn:
                runs.update_run(conn, run_id, summary.as_dict())

    try:
        storage = open_storage(mount.storage_url, mount.options)
        summary = run_reindex(ctx, mount, storage, prefix, progress)
    except Exception as exc:
        with ctx.pool.connection() as conn:
            runs.update_run(conn, run_id, {}, state="failed", error=f"{type(exc).__name__}: {exc}")
        log.error("reindex failed", mount=mount.name, run=run_id, error=str(exc))
        raise
    with ctx.pool.connection() as conn:
        runs.update_run(conn, run_id, summary.as_dict(), state="succeeded")
    log.info("reindex finished", mount=mount.name, run=run_id, **summary.as_dict())
    return summary.as_dict()


def reconcile_all_task(self: Task) -> dict[str, Any]:
    """Beat's safety net: queue a reindex for every mount whose interval has passed, and publish
    change-log entries a killed worker left unpublished on the Redis stream (the next apply would too)."""
    ctx = current()
    with ctx.pool.connection() as conn:
        drain_feed(conn, ctx.redis, ctx.key(FEED_STREAM), ctx.settings.feed_maxlen)
        due = runs.due_mounts(conn, ctx.settings.reindex_interval_s)
        queued = []
        for mount_id, name in due:
            run_id = runs.create_run(conn, mount_id, "", "schedule")
            conn.commit()  # the worker that takes the task must see the run row
            send(ctx.app, TASK_REINDEX, name, "", run_id, "schedule", queue=QUEUE_REINDEX)
            queued.append(name)
    return {"queued": queued}


def prune_changes_task(self: Task) -> dict[str, Any]:
    """Delete change-log entries older than ``MOUNTSYNC_CHANGES_RETENTION`` (readers behind get 410)."""
    ctx = current()
    with ctx.pool.connection() as conn:
        pruned = prune_changes(conn, ctx.settings.changes_retention_s)
    if pruned:
        log.info("change log pruned", entries=pruned, retention_s=ctx.settings.changes_retention_s)
    return {"pruned": pruned}


def register_tasks(app: Celery) -> None:
    common = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}
    app.task(name=TASK_APPLY, **common)(apply_changes_task)
    app.task(name=TASK_REINDEX, **common)(reindex_mount_task)
    app.task(name=TASK_RECONCILE_ALL, **common)(reconcile_all_task)
    app.task(name=TASK_PRUNE_CHANGES, **common)(prune_changes_task)
