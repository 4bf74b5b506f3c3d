"""What a producer process holds: a DB pool (dead letters), Redis, a Celery client, the queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from celery import Celery
from psycopg_pool import ConnectionPool

from mountsync.producers.base import Enricher, Normalizer
from mountsync.producers.pipeline import Pipeline
from mountsync.shared.catalog.db import open_pool
from mountsync.shared.catalog.deadletters import DeadLetters
from mountsync.shared.config import Settings
from mountsync.shared.errors import ServiceUnavailable
from mountsync.shared.queues import ChangeQueue, make_client


@dataclass
class Runtime:
    settings: Settings
    pool: ConnectionPool
    redis: Any
    celery: Celery
    queue: ChangeQueue
    deadletters: DeadLetters

    def pipeline(self, normalize: Normalizer, enrich: Enricher | None = None) -> Pipeline:
        return Pipeline(normalize, self.queue, self.deadletters, enrich=enrich, batch_size=self.settings.batch_size)

    def close(self) -> None:
        self.pool.close()
        self.redis.close()


def build_runtime(settings: Settings) -> Runtime:
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceUnavailable(
            f"Redis at {settings.redis_url.split('@')[-1]} is not reachable ({exc}); "
            "start it or set MOUNTSYNC_REDIS_URL"
        ) from exc
    pool = open_pool(settings.database_url, min_size=1, max_size=2, name="producer")
    celery = make_client(settings)
    return Runtime(
        settings=settings,
        pool=pool,
        redis=client,
        celery=celery,
        queue=ChangeQueue(celery, client, settings),
        deadletters=DeadLetters(pool),
    )
