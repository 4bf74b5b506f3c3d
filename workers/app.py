"""The Celery application: ``celery -A mountsync.workers.app worker``. Settings are read here, at the process edge."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

from mountsync.shared.config import load_settings
from mountsync.shared.logs import configure_logging
from mountsync.shared.queues import TASK_PRUNE_CHANGES, TASK_RECONCILE_ALL, make_client
from mountsync.workers import context
from mountsync.workers.post_apply import PostApplyHooks

settings = load_settings(os.environ)
configure_logging(settings)

app: Celery = make_client(settings)
app.conf.beat_schedule = {
    "reconcile-mounts": {
        "task": TASK_RECONCILE_ALL,
        # Checks every minute which mounts are due; each mount's own interval decides.
        "schedule": 60.0,
        "options": {"queue": "reindex", "expires": 55},
    },
    "prune-changes": {
        "task": TASK_PRUNE_CHANGES,
        # Retention is days; hourly keeps the log within an hour of it.
        "schedule": 3600.0,
        "options": {"queue": "reindex", "expires": 3500},
    },
}


def _register_all(celery_app: Celery) -> None:
    from mountsync.workers import tasks
    from mountsync.workers.alignment import tasks as alignment_tasks
    from mountsync.workers.migration import tasks as migration_tasks
    from mountsync.workers.sinks import tasks as sink_tasks

    for module in (tasks, alignment_tasks, migration_tasks, sink_tasks):
        module.register_tasks(celery_app)


_register_all(app)


def post_apply_hooks() -> PostApplyHooks:
    """What every committed batch is followed by, in this order: one line per hook."""
    from mountsync.workers.alignment.hooks import after_apply, announce_opened_alerts
    from mountsync.workers.sinks.tasks import nudge_sinks

    hooks = PostApplyHooks()
    hooks.register(after_apply)  # debounced dataset checks of the folders a batch touched
    hooks.register(announce_opened_alerts)  # the guard's mass-delete alerts to sinks and webhook
    hooks.register(nudge_sinks)  # ask the sinks of the changed mounts to deliver (never raises)
    return hooks


def _open_process() -> None:
    """The per-process resources of tasks: the worker context and the migration runtime."""
    from mountsync.workers.migration import runtime as migration_runtime

    context.open_context(settings, app, post_apply_hooks())
    migration_runtime.open_runtime(settings, app)


@signals.worker_process_init.connect
def _open_child(**_: Any) -> None:
    _open_process()


@signals.worker_process_shutdown.connect
def _close_child(**_: Any) -> None:
    from mountsync.workers.migration import runtime as migration_runtime

    migration_runtime.close_runtime()
    context.close_context()


@signals.worker_init.connect
def _open_solo(sender: Any = None, **_: Any) -> None:
    # Solo and threads pools run tasks in the main process: open the context there too.
    pool = getattr(getattr(sender, "pool_cls", None), "__module__", "")
    if "prefork" not in str(pool):
        _open_process()


@signals.worker_init.connect
@signals.beat_init.connect
def _check_redis(**_: Any) -> None:
    import redis

    from mountsync.shared.redis_check import warn_if_redis_loses_data

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        warn_if_redis_loses_data(client, "worker")
    finally:
        client.close()


@signals.worker_init.connect
def _serve_metrics(**_: Any) -> None:
    from mountsync.workers import metrics_server

    metrics_server.start(os.environ)


@signals.worker_process_shutdown.connect
def _child_metrics_gone(pid: int | None = None, **_: Any) -> None:
    from mountsync.workers import metrics_server

    metrics_server.child_exited(os.environ, pid or os.getpid())


@signals.worker_ready.connect
def _start_recovery(sender: Any = None, **_: Any) -> None:
    """Heartbeat on held tasks (fast redelivery after a kill) and the embedded sweeps (no beat needed)."""
    import redis

    from mountsync.workers import recovery, schedule

    recovery.start_for(sender, settings.redis_url, settings.redis_prefix, settings.visibility_timeout_s)
    consumed = [q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])]
    entries = schedule.embedded_entries(
        schedule.periodic_entries(app.conf.beat_schedule or {}),
        schedule.worker_schedule_mode(settings.extra), consumed,
    )  # fmt: skip
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, socket_connect_timeout=5)
    _embedded.append(
        schedule.EmbeddedScheduler(
            client, settings.redis_prefix, entries, lambda e: schedule.send_entry(app, e)
        ).start()
    )


_embedded: list[Any] = []


@signals.worker_shutdown.connect
def _stop_recovery(**_: Any) -> None:
    from mountsync.workers import recovery

    recovery.stop_all()
    while _embedded:
        _embedded.pop().stop()


@signals.worker_shutdown.connect
def _remove_metric_files(**_: Any) -> None:
    from mountsync.workers import metrics_server

    metrics_server.cleanup(os.environ)
