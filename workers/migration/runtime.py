"""Per-process resources of the migration tasks: one pool, the stores on it, the Celery app.

Opened by the worker lifecycle hooks in ``mountsync.workers.app`` (``worker_process_init`` in a
prefork child, ``worker_init`` for the solo and threads pools) next to the worker context, and
closed at ``worker_process_shutdown``: never at import, never across a fork, never lazily inside
a task. The tasks (``tasks``) take the open runtime and hand it to ``service`` and ``upkeep``.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg_pool import ConnectionPool

from mountsync.shared.config import Settings
from mountsync.shared.migration.jobs import JobStore
from mountsync.shared.queues import QUEUE_MIGRATIONS, send
from mountsync.workers.migration.items import ItemStore
from mountsync.workers.migration.lifecycle import Lifecycle
from mountsync.workers.migration.parts import PartStore
from mountsync.workers.migration.verified import VerificationCache

# The item threads of a chunk and their part threads share the pool (one short transaction per
# call). min_size 0: a worker that never runs a migration task holds no connection for it.
POOL_MAX_SIZE = 10


@dataclass
class MigrationRuntime:
    """The stores of one process (one per role, all on ``pool``), the Celery app and a clock."""

    settings: Settings
    pool: ConnectionPool
    app: Any
    jobs: JobStore
    items: ItemStore
    parts: PartStore
    verified: VerificationCache
    lifecycle: Lifecycle
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def on_pool(cls, settings: Settings, pool: ConnectionPool, app: Any) -> MigrationRuntime:
        """A runtime whose stores share ``pool`` (the caller owns the pool)."""
        return cls(settings, pool, app, JobStore(pool), ItemStore(pool), PartStore(pool),
                   VerificationCache(pool), Lifecycle(pool))  # fmt: skip

    @property
    def lease_s(self) -> float:
        return float(self.settings.extra.get("MOUNTSYNC_MIGRATION_LEASE", "120"))

    @property
    def chunk_budget_s(self) -> float:
        """How long one chunk task works before handing the rest to a continuation task."""
        limit = float(self.settings.task_time_limit_s)
        return max(limit * 0.5, limit - 120)

    def send(self, task: str, *args: Any) -> str:
        return send(self.app, task, *args, queue=QUEUE_MIGRATIONS)


_current: MigrationRuntime | None = None


def open_runtime(settings: Settings, app: Any) -> MigrationRuntime:
    """Open this process's runtime (a worker lifecycle hook calls this after the fork)."""
    from mountsync.shared.catalog.db import open_pool

    global _current
    close_runtime()
    pool = open_pool(settings.database_url, min_size=0, max_size=POOL_MAX_SIZE, name="migration")
    _current = MigrationRuntime.on_pool(settings, pool, app)
    return_big_buffers_to_the_os()
    return _current


def current_runtime() -> MigrationRuntime:
    if _current is None:
        raise RuntimeError("migration runtime is not open (worker_process_init did not run)")
    return _current


def close_runtime() -> None:
    global _current
    if _current is not None:
        _current.pool.close()
        _current = None


def return_big_buffers_to_the_os(threshold: int = 1024 * 1024) -> None:
    """Serve allocations >= 1 MiB (part buffers) from mmap so freeing them returns the memory.

    glibc otherwise raises its mmap threshold after the first large free and keeps later part
    buffers in per-thread arenas, so a transfer's RSS grows far past its byte budget.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl): nothing to tune
        ctypes.CDLL(name).mallopt(-3, threshold)  # M_MMAP_THRESHOLD (fixed: no dynamic growth)
