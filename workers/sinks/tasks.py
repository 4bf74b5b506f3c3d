"""Celery tasks of the ``sinks`` queue, the post-apply nudge, and the lag metrics.

- ``mountsync.sinks.deliver(sink_id)``: one delivery run (``delivery.run_delivery``); asks for
  another run when it stopped with work left, or after a failure's backoff.
- ``mountsync.sinks.sweep()`` (beat, every 30 s): sends ``deliver`` for every active sink that is
  behind, and refreshes the lag gauges. It is the safety net for lost nudges and killed workers:
  a dead deliverer's lease expires within 30 s and a ``deliver`` that found it taken asks again
  for when it expires, so delivery resumes within about a minute of a SIGKILL.
- ``nudge_sinks``: a post-apply hook. It sends ``deliver`` for the sinks of the mounts a batch
  changed, at most one pending per sink (a Redis key with a short TTL), and never raises: a
  slow or broken sink must not slow or fail apply.
"""

from __future__ import annotations

import os
from typing import Any

import structlog
from celery import Celery, Task
from prometheus_client import Counter, Gauge

from mountsync.shared.catalog.apply import ApplyResult
from mountsync.shared.catalog.sinks import sink_status
from mountsync.shared.queues import QUEUE_SINKS, TASK_SINK_DELIVER, TASK_SINK_SWEEP, send
from mountsync.workers.context import WorkerContext, current
from mountsync.workers.sinks import store
from mountsync.workers.sinks.delivery import RunReport, run_delivery, visible_head
from mountsync.workers.sinks.receivers import open_receiver

log = structlog.get_logger("mountsync.sinks")

SWEEP_EVERY_S = 30.0
NUDGE_TTL_S = 30
LAG_ENTRIES = Gauge("mountsync_sink_lag_entries", "Change-log entries a sink is behind the head", ["sink"],
                    multiprocess_mode="livemax")  # fmt: skip
LAG_SECONDS = Gauge("mountsync_sink_lag_seconds", "Age of the oldest change a sink has not delivered", ["sink"],
                    multiprocess_mode="livemax")  # fmt: skip
SINK_ACTIVE = Gauge("mountsync_sink_active", "1 while a sink delivers, 0 while paused or disabled", ["sink"],
                    multiprocess_mode="livemax")  # fmt: skip
DELIVERED = Counter("mountsync_sink_delivered_total", "Entries and events a sink's receiver accepted", ["sink"])
FAILURES = Counter("mountsync_sink_failures_total", "Delivery attempts the receiver did not accept", ["sink"])


def nudge_key(ctx: WorkerContext, sink_id: int) -> str:
    return ctx.key(f"mountsync:sink:nudged:{sink_id}")


def scheduled_key(ctx: WorkerContext, sink_id: int) -> str:
    return ctx.key(f"mountsync:sink:scheduled:{sink_id}")


def request_delivery(ctx: WorkerContext, sink_id: int, countdown: float = 0.0) -> bool:
    """Send ``deliver``, now or in ``countdown`` s, unless one is already pending; True when sent.

    A run for now and a run for later are deduplicated apart: a later one (at a lease's expiry,
    after a backoff) pending under the same key would swallow requests for now, and what a
    holder's end-of-run check found would wait for it (about 30 s) instead of going out at once.
    """
    if countdown > 0:  # the mark expires as the run falls due, so that run may ask for the next
        pending, ttl_ms = scheduled_key(ctx, sink_id), max(int(countdown * 1000), 1)
    else:  # the run clears this mark as it starts
        pending, ttl_ms = nudge_key(ctx, sink_id), NUDGE_TTL_S * 1000
    if not ctx.redis.set(pending, "1", nx=True, px=ttl_ms):
        return False
    send(ctx.app, TASK_SINK_DELIVER, sink_id, queue=QUEUE_SINKS, countdown=countdown)
    return True


def nudge_sinks(ctx: WorkerContext, result: ApplyResult) -> None:
    """Post-apply hook: ask the sinks of the changed mounts to deliver (best effort)."""
    if not result.applied:
        return
    mounts = sorted({c.mount_name for c in result.applied})
    try:
        with ctx.pool.connection() as conn:
            rows = conn.execute(
                "SELECT id FROM sinks WHERE state = 'active' AND 'changes' = ANY(events) "
                "AND (mounts = '{}' OR mounts && %s::text[])",
                (mounts,),
            ).fetchall()
        for (sink_id,) in rows:
            request_delivery(ctx, int(sink_id))
    except Exception as exc:  # the sweep delivers what a failed nudge did not ask for
        log.warning("sink nudge failed; the sweep will deliver", error=f"{type(exc).__name__}: {exc}")


def nudge_event_sinks(ctx: WorkerContext, topic: str) -> None:
    """After an alert or migration event: ask the sinks subscribed to ``topic`` to deliver."""
    try:
        with ctx.pool.connection() as conn:
            rows = conn.execute("SELECT id FROM sinks WHERE state = 'active' AND %s = ANY(events)", (topic,)).fetchall()
        for (sink_id,) in rows:
            request_delivery(ctx, int(sink_id))
    except Exception as exc:
        log.warning("sink nudge failed; the sweep will deliver", error=f"{type(exc).__name__}: {exc}")


def deliver_task(self: Task, sink_id: int) -> dict[str, Any]:
    ctx = current()
    ctx.redis.delete(nudge_key(ctx, sink_id))
    report = run_delivery(
        ctx.pool, ctx.redis, ctx.settings.redis_prefix, sink_id,
        lambda sink: open_receiver(sink, ctx.settings, os.environ),
        retry_for_s=ctx.settings.sink_retry_for_s,
    )  # fmt: skip
    follow_up(ctx, sink_id, report)
    return report.as_dict()


def follow_up(ctx: WorkerContext, sink_id: int, report: RunReport) -> None:
    """After a run: count it, and ask for the next one when there is work left or a retry is due."""
    if report.delivered:
        DELIVERED.labels(report.sink).inc(report.delivered)
    if report.failed:
        FAILURES.labels(report.sink).inc()
    if report.busy:
        # Another deliverer holds the lease, or a killed one did: ask again when it expires (a
        # live holder renews it, and its own end-of-run check delivers what came meanwhile).
        request_delivery(ctx, sink_id, countdown=report.retry_in_s + 1.0)
        return
    if report.skipped in ("paused", "disabled", "removed"):
        return
    if report.more:
        request_delivery(ctx, sink_id)
    elif report.retry_in_s:
        # Short waits as a countdown; long ones are picked up by the sweep when due.
        if report.retry_in_s <= SWEEP_EVERY_S:
            request_delivery(ctx, sink_id, countdown=report.retry_in_s)
    elif not report.failed:
        _again_if_behind(ctx, sink_id)


def _again_if_behind(ctx: WorkerContext, sink_id: int) -> None:
    """Entries committed between the last read and the lease release: deliver them too."""
    with ctx.pool.connection() as conn:
        sink = store.get_sink_by_id(conn, sink_id)
        behind = sink is not None and (
            ("changes" in sink.events and visible_head(conn) > sink.cursor)
            or (any(t != "changes" for t in sink.events) and store.events_head(conn) > sink.events_cursor)
        )
    if behind:
        request_delivery(ctx, sink_id)


def sweep_task(self: Task) -> dict[str, Any]:
    ctx = current()
    sent = []
    with ctx.pool.connection() as conn:
        lags = sink_status(conn)
    for row in lags:
        LAG_ENTRIES.labels(row["name"]).set(row["lag_entries"])
        LAG_SECONDS.labels(row["name"]).set(row["lag_seconds"])
        SINK_ACTIVE.labels(row["name"]).set(1 if row["state"] == "active" else 0)
        behind = row["lag_entries"] or row["events_behind"]
        if row["state"] == "active" and row["due"] and behind and request_delivery(ctx, row["id"]):
            sent.append(row["name"])
    return {"sinks": len(lags), "sent": sent}


def register_tasks(app: Celery) -> None:
    """Register the sink tasks and the sweep in the beat schedule (routing: ``shared.queues``)."""
    common = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}
    app.task(name=TASK_SINK_DELIVER, **common)(deliver_task)
    app.task(name=TASK_SINK_SWEEP, **common)(sweep_task)
    schedule = dict(app.conf.beat_schedule or {})
    schedule.setdefault("sinks-sweep", {
        "task": TASK_SINK_SWEEP, "schedule": SWEEP_EVERY_S,
        "options": {"queue": QUEUE_SINKS, "expires": SWEEP_EVERY_S - 5},
    })  # fmt: skip
    app.conf.beat_schedule = schedule
