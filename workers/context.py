"""Per-process resources for tasks, opened in worker lifecycle hooks (never at import, never across fork)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

from celery import Celery
from psycopg_pool import ConnectionPool

from mountsync.shared.config import Settings


class Clock(Protocol):
    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    def now_ns(self) -> int: ...


class SystemClock:
    """Wall and monotonic time from the OS."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def now_ns(self) -> int:
        return time.time_ns()


@dataclass
class WorkerContext:
    settings: Settings
    pool: ConnectionPool
    redis: Any
    app: Celery
    clock: Clock

    def key(self, name: str) -> str:
        """A Redis key under this deployment's prefix."""
        return f"{self.settings.redis_prefix}{name}"

    def close(self) -> None:
        self.pool.close()
        self.redis.close()


_current: WorkerContext | None = None


def open_context(settings: Settings, app: Celery) -> WorkerContext:
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
