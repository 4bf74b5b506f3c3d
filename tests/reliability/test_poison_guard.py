"""The poison guard counts redeliveries of one attempt, not retries through an outage."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import psycopg
import pytest
import redis as redis_lib

from mountsync.shared.catalog.db import open_pool
from mountsync.shared.clock import SystemClock
from mountsync.shared.config import Settings
from mountsync.shared.queues import make_client
from mountsync.workers.context import WorkerContext
from mountsync.workers.deliveries import finished, too_many_deliveries


@pytest.fixture
def ctx(settings: Settings, catalog: psycopg.Connection) -> Iterator[WorkerContext]:
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}guard:", max_deliveries=5)
    pool = open_pool(own.database_url, min_size=1, max_size=1, name="guard")
    context = WorkerContext(own, pool, redis_lib.Redis.from_url(own.redis_url), make_client(own), SystemClock())
    yield context
    context.close()


def task(task_id: str, retries: int) -> SimpleNamespace:
    return SimpleNamespace(name="mountsync.apply_changes", request=SimpleNamespace(id=task_id, retries=retries))


def test_retries_through_a_long_outage_are_never_dead_lettered(ctx, catalog) -> None:
    task_id = uuid.uuid4().hex
    for attempt in range(20):  # e.g. PostgreSQL down for minutes: self.retry() keeps the task id
        assert not too_many_deliveries(ctx, task(task_id, attempt), ["batch"])
    finished(ctx, task(task_id, 19))
    assert catalog.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0


def test_an_attempt_redelivered_past_the_limit_is_dead_lettered(ctx, catalog) -> None:
    task_id = uuid.uuid4().hex
    verdicts = [too_many_deliveries(ctx, task(task_id, 0), ["batch"]) for _ in range(6)]
    assert verdicts == [False] * 5 + [True]
    [(source, reason)] = catalog.execute("SELECT source, reason FROM dead_letters").fetchall()
    assert source == "task:mountsync.apply_changes" and "delivered 6 times" in reason
