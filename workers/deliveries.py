"""Poison guard for tasks: Redis has no delivery limit, so deliveries are counted per task id.

A task whose worker is killed on every attempt (OOM, a crash in a C extension) would otherwise be
redelivered forever (``task_reject_on_worker_lost``); past ``max_deliveries`` it is dead-lettered.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from celery import Task

from mountsync.shared.catalog.deadletters import DeadLetters
from mountsync.workers.context import WorkerContext

log = structlog.get_logger("mountsync.tasks")


def _key(ctx: WorkerContext, task: Task) -> str:
    # Per retry: a task retrying through a long outage (self.retry keeps the id) is not poison;
    # only redeliveries of the same attempt (worker lost) count toward the limit.
    return ctx.key(f"mountsync:deliveries:{task.request.id}:{task.request.retries or 0}")


def too_many_deliveries(ctx: WorkerContext, task: Task, args: Any) -> bool:
    """Count this delivery; past the limit record the task as a dead letter and say so."""
    pipe = ctx.redis.pipeline()
    pipe.incr(_key(ctx, task))
    pipe.expire(_key(ctx, task), ctx.settings.visibility_timeout_s * 4)
    count = int(pipe.execute()[0])
    if count <= ctx.settings.max_deliveries:
        return False
    DeadLetters(ctx.pool).record(
        source=f"task:{task.name}",
        message_id=task.request.id,
        reason=f"delivered {count} times without finishing (worker killed each time?)",
        payload=json.dumps(args, default=str).encode(),
    )
    log.error("task dead-lettered after repeated deliveries", task=task.name, deliveries=count)
    return True


def finished(ctx: WorkerContext, task: Task) -> None:
    """The task completed: forget its delivery count."""
    ctx.redis.delete(_key(ctx, task))
