"""Per-process resources for tasks, opened in worker lifecycle hooks (never at import, never across fork)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from psycopg_pool import ConnectionPool

from mountsync.shared.clock import Clock, SystemClock
from mountsync.shared.config import Settings
from mountsync.workers.post_apply import PostApplyHooks


@dataclass
class WorkerContext:
    settings: Settings
    pool: ConnectionPool
    redis: Any
    app: Celery
    clock: Clock
    post_apply: PostApplyHooks = field(default_factory=PostApplyHooks)  # run after each committed batch

    def key(self, name: str) -> str:
        """A Redis key under this deployment's prefix."""
        return f"{self.settings.redis_prefix}{name}"

    def close(self) -> None:
        self.pool.close()
        self.redis.close()


_current: WorkerContext | None = None


def open_context(settings: Settings, app: Celery, post_apply: PostApplyHooks | None = None) -> WorkerContext:
    import redis

    from mountsync.shared.catalog.db import open_pool

    global _current
    if _current is not None:
        _current.close()
    _current = WorkerContext(
        settings=settings,
        pool=open_pool(settings.database_url, min_size=1, max_size=4, name="worker"),
        redis=redis.Redis.from_url(settings.redis_url),
        app=app,
        clock=SystemClock(),
        post_apply=post_apply or PostApplyHooks(),
    )
    return _current


def current() -> WorkerContext:
    if _current is None:
        raise RuntimeError("worker context is not open (worker_process_init did not run)")
    return _current


def close_context() -> None:
    global _current
    if _current is not None:
        _current.close()
        _current = None
