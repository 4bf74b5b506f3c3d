"""Thin Celery tasks of the alignment guard, routed to the ``alignment`` queue.

- ``mountsync.alignment.check_folder(mount_id, folder)``: debounced check (sent by the hook);
  each run checks every folder that is due, not only the one it was sent for.
- ``mountsync.alignment.pin(mount, folder, last_annotated=None, order=None)``: other services
  send this by name when a dataset becomes annotated; returns the pin summary.
- ``mountsync.alignment.notify(alert_id)``: webhook delivery with retries.
- ``mountsync.alignment.sweep()``: periodic safety net (lost tasks, missed hooks).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import structlog
from celery import Celery, Task

from mountsync.shared.catalog.mounts import Mount, Mounts
from mountsync.shared.errors import BadInput, MountNotFound, RetryableError
from mountsync.shared.queues import QUEUE_ALIGNMENT, send
from mountsync.workers.alignment import hooks, notify, service, store
from mountsync.workers.alignment.config import AlignmentConfig
from mountsync.workers.alignment.mountio import StorageIO
from mountsync.workers.context import WorkerContext, current
from mountsync.workers.deliveries import finished, too_many_deliveries

log = structlog.get_logger("mountsync.alignment")
SWEEP_EVERY_S = 30.0
MAX_PER_DRAIN = 100
ERROR_RETRY_S = 60.0


@contextmanager
def _autocommit(ctx: WorkerContext) -> Iterator[psycopg.Connection]:
    """A pooled connection where ``conn.transaction()`` is a real transaction."""
    with ctx.pool.connection() as conn:
        conn.autocommit = True
        try:
            yield conn
        finally:
            conn.autocommit = False


def _retry(task: Task, exc: Exception, max_retries: int = 10) -> Exception:
    countdown = min(2**task.request.retries, 300)
    return task.retry(exc=exc, countdown=countdown, max_retries=max_retries)  # type: ignore[no-any-return]


def check_folder_task(self: Task, mount_id: int, folder: str) -> dict[str, Any]:
    """Check every due folder (``mount_id``/``folder`` name the one that sent this task)."""
    ctx = current()
    if too_many_deliveries(ctx, self, [mount_id, folder]):
        return {"dead_lettered": True}
    config = hooks.config_for(ctx)
    claims = hooks.claim_due(ctx, MAX_PER_DRAIN)
    outcomes: dict[str, str] = {}
    if claims:
        mounts: dict[int, Mount | None] = {}
        with _autocommit(ctx) as conn:  # one connection for the whole drain
            for claim in claims:
                outcomes[f"{claim.mount_id}:{claim.folder}"] = _check_claimed(ctx, conn, config, claim, mounts)
    if len(claims) == MAX_PER_DRAIN:  # more are due: keep draining in another task
        send(ctx.app, hooks.TASK_CHECK, mount_id, folder, queue=QUEUE_ALIGNMENT)
    finished(ctx, self)
    return {"sent_for": f"{mount_id}:{folder}", "checked": outcomes}


def _mount(conn: psycopg.Connection, mounts: dict[int, Mount | None], mount_id: int) -> Mount | None:
    if mount_id not in mounts:
        try:
            mounts[mount_id] = Mounts(conn).get_by_id(mount_id)
        except MountNotFound:
            mounts[mount_id] = None
    return mounts[mount_id]


def _check_claimed(
    ctx: WorkerContext, conn: psycopg.Connection, config: AlignmentConfig, claim: hooks.Claim,
    mounts: dict[int, Mount | None],
) -> str:  # fmt: skip
    """One folder's check; failures reschedule that folder (a full check) and never stop the drain."""
    started = time.perf_counter()
    try:
        mount = _mount(conn, mounts, claim.mount_id)
        if mount is None:
            return _count("mount-removed")
        result = service.check_folder(conn, config, mount, claim.folder, StorageIO(mount), claim.new_keys)
    except (RetryableError, psycopg.OperationalError) as exc:
        log.warning("folder check failed; rescheduled", mount_id=claim.mount_id, folder=claim.folder,
                    error=str(exc))  # fmt: skip
        hooks.schedule_checks(ctx, [(claim.mount_id, claim.folder)], max(config.debounce_s, 1.0))
        return _count("retry")
    except Exception as exc:  # e.g. an unreadable manifest file: say so, try again later
        log.error("folder check failed; retried in a minute", mount_id=claim.mount_id,
                  folder=claim.folder, error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        hooks.schedule_checks(ctx, [(claim.mount_id, claim.folder)], ERROR_RETRY_S)
        return _count("error")
    finally:
        hooks.release(ctx, claim)
    notify.CHECK_SECONDS.observe(time.perf_counter() - started)
    alert_ids = notify.report(result.events)
    if alert_ids:
        hooks.announce_alerts(ctx, alert_ids)
    if result.recheck_in:
        hooks.schedule_checks(ctx, [(claim.mount_id, claim.folder)], result.recheck_in)
    if result.fast:
        hooks.mark_streaming(ctx, claim.mount_id, claim.folder, config.stream_debounce_s)
    if result.events:
        return _count("alert")
    return _count("settling" if result.recheck_in else "fast" if result.fast else "ok")


def _count(outcome: str) -> str:
    notify.CHECKS.labels(outcome).inc()
    return outcome


def pin_task(
    self: Task, mount: str, folder: str, last_annotated: int | None = None, order: str | None = None
) -> dict[str, Any]:
    ctx = current()
    config = hooks.config_for(ctx)
    try:
        with _autocommit(ctx) as conn:
            found = Mounts(conn).get(mount)
            result = service.pin_dataset(
                conn, config, found, folder, StorageIO(found),
                last_annotated=last_annotated, order=order, by="task",
            )  # fmt: skip
    except BadInput as exc:
        log.error("pin refused", mount=mount, folder=folder, error=str(exc))
        return {"error": str(exc)}
    except (RetryableError, psycopg.OperationalError) as exc:
        raise _retry(self, exc) from exc
    log.info("dataset pinned", mount=mount, dataset=result.dataset.path, frames=result.frames,
             last_annotated=result.dataset.last_annotated, by="task")  # fmt: skip
    return {"mount": mount, "dataset": result.dataset.path, "frames": result.frames,
            "versions": result.versions, "last_annotated": result.dataset.last_annotated,
            "closed_alerts": result.closed_alerts}  # fmt: skip


def notify_task(self: Task, alert_id: int) -> dict[str, Any]:
    ctx = current()
    url = hooks.config_for(ctx).webhook_url
    if not url:
        return {"skipped": "no webhook configured"}
    with _autocommit(ctx) as conn:
        alert = store.get_alert(conn, alert_id)
    if alert is None:
        return {"skipped": "alert gone"}
    try:
        status = notify.post_webhook(url, notify.describe_alert(alert))
    except RetryableError as exc:
        raise _retry(self, exc, max_retries=8) from exc
    return {"alert": alert_id, "status": status}


def sweep_task(self: Task) -> dict[str, Any]:
    ctx = current()
    config = hooks.config_for(ctx)
    lost = hooks.resend_lost(ctx, config.debounce_s)
    with _autocommit(ctx) as conn:
        missed = store.folders_needing_check(conn, margin_s=10.0, horizon_s=3600.0, limit=5000)
    scheduled = hooks.schedule_checks(ctx, missed, config.debounce_s) if missed else 0
    if lost or scheduled:
        log.warning("alignment sweep re-sent checks", lost=lost, missed=scheduled)
    return {"lost": lost, "missed": scheduled}


def register_tasks(app: Celery) -> None:
    """Register the alignment tasks and the sweep in the beat schedule.

    Routing to the ``alignment`` queue comes from ``mountsync.shared.queues`` (``mountsync.alignment.*``).
    """
    common = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}
    app.task(name=hooks.TASK_CHECK, **common)(check_folder_task)
    app.task(name=hooks.TASK_PIN, **common)(pin_task)
    app.task(name=hooks.TASK_NOTIFY, **common)(notify_task)
    app.task(name=hooks.TASK_SWEEP, **common)(sweep_task)
    schedule = dict(app.conf.beat_schedule or {})
    schedule.setdefault("alignment-sweep", {
        "task": hooks.TASK_SWEEP, "schedule": SWEEP_EVERY_S,
        "options": {"queue": QUEUE_ALIGNMENT, "expires": SWEEP_EVERY_S - 5},
    })  # fmt: skip
    app.conf.beat_schedule = schedule
