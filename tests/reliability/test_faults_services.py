"""Fault cases on the servers mountsync depends on: PostgreSQL restarted mid-batch and Redis
restarted mid-stream (AOF on), each with real worker and producer processes. Nothing may be lost
or applied twice, and the outage must be visible in logs.

Both use servers of their own (tests/reliability/servers.py); the machine's are never touched.
"""

from __future__ import annotations

import io
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from mountsync.shared.catalog import db as catalog_db
from mountsync.shared.catalog.mounts import Mounts
from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from mountsync.shared.queues import FEED_STREAM, ChangeQueue, make_client
from tests.conftest import WorkerProcess, env_for
from tests.helpers import live_count, wait_for
from tests.reliability.servers import OwnPostgres, OwnRedis
from tests.s3.notify import Producer, bucket_state, create_queue, queue_empty, route
from tests.standins.s3 import MotoEndpoints

pytestmark = pytest.mark.faults
BATCHES, PER_BATCH = 120, 500
PG_CONVERGE_S = float(os.environ.get("MOUNTSYNC_FAULT_PG_CONVERGE_S", "90"))


@pytest.fixture(scope="module")
def own_pg() -> Iterator[OwnPostgres]:
    server = OwnPostgres().init().start()
    yield server
    server.close()


@pytest.fixture
def own_redis() -> Iterator[OwnRedis]:
    server = OwnRedis(appendfsync="always").start()
    yield server
    server.close()


def safe_live_count(database_url: str, mount: str) -> int:
    try:
        return live_count(database_url, mount)
    except psycopg.OperationalError:
        return -1  # the server is down right now


def feed_keys(settings: Settings) -> list[str]:
    with redis_lib.Redis.from_url(settings.redis_url) as client:
        entries = client.xrange(f"{settings.redis_prefix}{FEED_STREAM}")
    return [fields[b"key"].decode() for _, fields in entries]


def enqueue_burst(settings: Settings, bucket: str) -> set[str]:
    with redis_lib.Redis.from_url(settings.redis_url) as client:
        queue = ChangeQueue(make_client(settings), client, settings)
        keys: set[str] = set()
        for b in range(BATCHES):
            batch = [ObjectChange(Provider.S3, bucket, f"f{b % 10}/{b:04d}_{i:04d}.bin", Kind.CREATED,
                                  1_000 + b, Source.S3_SQS, size=i, etag=f"e{b}.{i}")
                     for i in range(PER_BATCH)]  # fmt: skip
            queue.enqueue(batch)
            keys.update(c.key for c in batch)
    return keys


def test_postgres_restarted_mid_batch_loses_and_duplicates_nothing(
    own_pg: OwnPostgres, settings: Settings, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    url = own_pg.url(f"fault_{tag}")
    catalog_db.upgrade(url)
    own = settings.with_(database_url=url, redis_prefix=f"{settings.redis_prefix}pg{tag}:",
                         feed_maxlen=10 * BATCHES * PER_BATCH)  # fmt: skip
    with psycopg.connect(url, autocommit=True) as conn:
        Mounts(conn).add("pgfault", "s3://pg-fault/")
    keys = enqueue_burst(own, "pg-fault")
    env = env_for(own, MOUNTSYNC_FEED_MAXLEN=str(own.feed_maxlen))
    worker = WorkerProcess(env, tmp_path / "worker.log", "changes", 2).start()
    try:
        wait_for(lambda: live_count(url, "pgfault") >= 4 * PER_BATCH, timeout=60, what="first batches",
                 interval=0.01)  # fmt: skip
        own_pg.restart("immediate", down_s=3.0)  # a crash: open transactions are gone
        applied_at_restart = live_count(url, "pgfault")
        assert applied_at_restart < len(keys), "the burst finished before the restart; make it bigger"
        try:
            wait_for(lambda: safe_live_count(url, "pgfault") == len(keys), timeout=PG_CONVERGE_S,
                     what=f"all {len(keys)} changes after the restart")  # fmt: skip
        except AssertionError as exc:
            failed = [line for line in worker.log_tail(2_000_000).splitlines() if "error" in line.lower()]
            raise AssertionError(f"{exc}; applied {live_count(url, 'pgfault')}; errors: {failed[-5:]}") from None
        wait_for(lambda: set(feed_keys(own)) == keys, timeout=30, what="every change in the feed")
        log = worker.log_tail(2_000_000)
    finally:
        worker.stop()
    assert live_count(url, "pgfault") == len(keys)  # one row per key: applied exactly once
    fed = feed_keys(own)
    # The feed is at least once: a crash between XADD and the outbox commit re-publishes that drain.
    assert len(fed) - len(keys) <= 2 * 5000, f"{len(fed) - len(keys)} duplicate feed entries"
    assert "retry" in log.lower() and ("PostgreSQL" in log or "OperationalError" in log), log[-3000:]
    assert "Unrecoverable error" not in log and "WorkerLostError" not in log, log[-3000:]  # retried, not lost


def test_redis_restarted_mid_stream_with_aof_loses_nothing(
    own_redis: OwnRedis, moto: MotoEndpoints, settings: Settings, add_mount: Any, catalog_state: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    """S3 -> SQS -> producer -> (own Redis, killed and restarted) -> worker -> catalog."""
    own = settings.with_(redis_url=own_redis.url, redis_prefix="")
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="redis-fault")
    queue_url, queue_arn = create_queue(moto, "redis-fault-events", visibility_s=5)
    route(moto, "direct", "redis-fault", queue_arn)
    add_mount("redisfault", "s3://redis-fault/", endpoint_url=moto.endpoint_url)
    env = env_for(own, MOUNTSYNC_VISIBILITY_TIMEOUT="8", MOUNTSYNC_TASK_TIME_LIMIT="5",
                  **{k: v for k, v in moto.env().items() if k != "AWS_ENDPOINT_URL"})  # fmt: skip
    worker = Supervised(WorkerProcess(env, tmp_path / "worker.log", "changes", 2).start())
    producer = Producer(env, tmp_path / "producer.log", queue_url, "--endpoint-url", moto.endpoint_url).start()
    total, written = 300, threading.Event()

    def write_stream() -> None:
        for i in range(total):
            s3.put_object(Bucket="redis-fault", Key=f"s/{i:04d}.bin", Body=io.BytesIO(b"x" * (i % 7)))
        written.set()

    writer = threading.Thread(target=write_stream, daemon=True)
    try:
        writer.start()
        wait_for(lambda: len(catalog_state("redisfault")) >= 20, timeout=60, what="the stream to flow")
        own_redis.kill()  # mid-stream, no shutdown save
        wait_for(lambda: "enqueue failed" in producer.log() or "queue depth" in producer.log(),
                 timeout=30, what="the producer to notice Redis is gone")  # fmt: skip
        own_redis.start()  # same port, same dir: the AOF is replayed
        assert written.wait(120)
        expected = bucket_state(moto, "redis-fault")
        wait_for(
            lambda: (
                {k: {"size": v["size"], "etag": v["etag"]} for k, v in catalog_state("redisfault").items()} == expected
            ),
            timeout=90,
            what="catalog == bucket after the restart",
        )
        wait_for(lambda: queue_empty(moto, queue_url), timeout=60, what="every SQS message deleted")
        wait_for(lambda: set(feed_keys(own)) == set(expected), timeout=30, what="every change in the feed")
    finally:
        producer.stop()
        worker.stop()
    assert "Traceback" not in producer.log(), producer.log()[-3000:]
    fed = feed_keys(own)
    assert len(fed) - len(set(fed)) <= 500, "changes applied again after the restart"
    # kombu 5.7 can die restoring unacked messages when the broker drops ("Unrecoverable error:
    # AttributeError ... 'hostname'"); the supervisor (Kubernetes, systemd) starts a new worker.
    if worker.restarts:
        assert "Unrecoverable error" in worker.inner.log_tail(2_000_000)


class Supervised:
    """Restarts a worker that exits, as Kubernetes' restartPolicy or systemd's Restart= would."""

    def __init__(self, inner: WorkerProcess) -> None:
        self.inner, self.restarts = inner, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            if self.inner.proc is not None and self.inner.proc.poll() is not None:
                self.restarts += 1
                self.inner.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=70)
        self.inner.stop()
