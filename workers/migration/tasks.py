"""Celery tasks of migration jobs (queue ``migrations``); thin wrappers around the services.

``mountsync.submit_migration(spec)`` is the public entry point other services send by name.
Results are not stored (the project's Celery config ignores them), so the job id is known to
the sender up front: it is ``spec["job_id"]`` when given, else the id of the Celery task
message (``send_task(...).id``).
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery, Task

from mountsync.shared.errors import BadInput, RetryableError
from mountsync.shared.migration import TASK_CHUNK, TASK_DELIVER, TASK_MAINTAIN, TASK_RESUME
from mountsync.shared.queues import QUEUE_MIGRATIONS, TASK_SUBMIT_MIGRATION
from mountsync.workers.migration import service, upkeep
from mountsync.workers.migration.runtime import MigrationRuntime, current_runtime

log = structlog.get_logger("mountsync.migration")
MAINTAIN_EVERY_S = 60.0
PLAN_RETRIES = 10  # transient listing failures; the last try fails the job with the reason


def _rt() -> MigrationRuntime:
    """The runtime the worker's lifecycle hooks opened in this process."""
    return current_runtime()


def _backoff(task: Task) -> float:
    return float(min(2 ** (task.request.retries or 0), 60))


def submit_migration(self: Task, spec: Any) -> str | dict[str, str]:
    last_try = (self.request.retries or 0) >= PLAN_RETRIES
    try:
        return service.submit(_rt(), spec, self.request.id, last_try=last_try)
    except BadInput as exc:
        return {"error": str(exc)}  # recorded as a failed job; retrying cannot help
    except RetryableError as exc:
        raise self.retry(exc=exc, countdown=_backoff(self), max_retries=PLAN_RETRIES) from exc


def upload_chunk(self: Task, job_id: str, chunk: int) -> dict[str, Any]:
    try:
        return service.run_chunk(_rt(), job_id, int(chunk))
    except RetryableError as exc:
        raise self.retry(exc=exc, countdown=_backoff(self), max_retries=20) from exc


def deliver_links(self: Task, job_id: str, batch: int) -> dict[str, Any]:
    try:
        result = upkeep.deliver_batch(_rt(), job_id, int(batch))
    except RetryableError as exc:
        raise self.retry(exc=exc, countdown=_backoff(self), max_retries=20) from exc
    if result.retry_in_s is not None:
        # The attempt count lives in PostgreSQL; Celery's own limit must not cut it short.
        raise self.retry(countdown=result.retry_in_s, max_retries=None)
    return {"job_id": job_id, "batch": batch, "state": result.state}


def maintain(self: Task) -> dict[str, int]:
    return upkeep.maintain(_rt())


def resume(self: Task, job_id: str) -> dict[str, Any]:
    return upkeep.resume(_rt(), job_id)


def register_tasks(app: Celery) -> None:
    """Register the migration tasks and the periodic sweep on ``app``."""
    common = {"bind": True, "acks_late": True, "ignore_result": True}
    app.task(name=TASK_SUBMIT_MIGRATION, **common)(submit_migration)
    app.task(name=TASK_CHUNK, **common)(upload_chunk)
    app.task(name=TASK_DELIVER, **common)(deliver_links)
    app.task(name=TASK_MAINTAIN, **common)(maintain)
    app.task(name=TASK_RESUME, **common)(resume)
    schedule = dict(app.conf.beat_schedule or {})
    schedule["migration-maintain"] = {
        "task": TASK_MAINTAIN,
        "schedule": MAINTAIN_EVERY_S,
        "options": {"queue": QUEUE_MIGRATIONS, "expires": MAINTAIN_EVERY_S - 5},
    }
    app.conf.beat_schedule = schedule
