"""A worker SIGKILLed mid-batch loses nothing: late ack + reject-on-worker-lost + idempotent apply."""

from __future__ import annotations

import os
import signal
import time
import uuid
from dataclasses import replace

import psutil
import pytest
import redis as redis_lib

from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from mountsync.shared.queues import QUEUE_CHANGES, TASK_APPLY, ChangeQueue, make_client, send
from tests.conftest import WorkerProcess, env_for
from tests.helpers import live_count, wait_for

BATCHES, PER_BATCH = 120, 500


def enqueue_burst(settings: Settings, bucket: str) -> set[str]:
    client = redis_lib.Redis.from_url(settings.redis_url)
    queue = ChangeQueue(make_client(settings), client, settings)
    keys: set[str] = set()
    for b in range(BATCHES):
        batch = [
            ObjectChange(
                Provider.S3,
                bucket,
                f"f{b % 10}/{b:04d}_{i:04d}.jpg",
                Kind.CREATED,
                1_000 + b,
                Source.S3_SQS,
                size=i,
                etag=f"e{b}.{i}",
            )
            for i in range(PER_BATCH)
        ]
        queue.enqueue(batch)
        keys.update(c.key for c in batch)
    client.close()
    return keys


def wait_for_whole_feed(settings: Settings, keys: set[str]) -> None:
    """Every key reaches the change feed. Entries a killed worker held locked in the outbox are
    published by the next drain, so one more (empty) batch is sent: at least once, never lost."""
    client = redis_lib.Redis.from_url(settings.redis_url)
    stream = f"{settings.redis_prefix}mountsync:feed"
    try:
        send(make_client(settings), TASK_APPLY, [], queue=QUEUE_CHANGES)
        wait_for(
            lambda: {f[b"key"].decode() for _, f in client.xrange(stream)} == keys,
            timeout=60,
            what="every change in the feed",
        )
        # At least once, and bounded: only the drain a killed worker was in (at most 5,000 outbox
        # rows, shared/catalog/apply.py) can be published twice.
        assert client.xlen(stream) - len(keys) <= 5000, f"{client.xlen(stream) - len(keys)} repeated feed entries"
    finally:
        client.close()


@pytest.fixture
def own_settings(settings: Settings) -> Settings:
    """Same database, separate Redis prefix: no other worker consumes these queues."""
    return replace(
        settings,
        redis_prefix=f"{settings.redis_prefix}kill{uuid.uuid4().hex[:6]}:",
        feed_maxlen=10 * BATCHES * PER_BATCH,
    )


def pool_children(proc: WorkerProcess) -> list[psutil.Process]:
    assert proc.proc is not None
    return psutil.Process(proc.proc.pid).children(recursive=True)


@pytest.mark.faults
def test_sigkill_of_a_pool_child_mid_batch_loses_nothing(own_settings, add_mount, tmp_path) -> None:
    add_mount("killed", "s3://kill-bucket/")
    keys = enqueue_burst(own_settings, "kill-bucket")
    env = env_for(own_settings, MOUNTSYNC_FEED_MAXLEN=str(own_settings.feed_maxlen))
    worker = WorkerProcess(env, tmp_path / "w.log", "changes", 2).start()
    try:
        wait_for(
            lambda: live_count(own_settings.database_url, "killed") >= 5 * PER_BATCH,
            timeout=60,
            what="first batches applied",
        )
        victims = pool_children(worker)
        assert victims, "prefork worker has no children"
        for child in victims:
            os.kill(child.pid, signal.SIGKILL)
        wait_for(
            lambda: live_count(own_settings.database_url, "killed") == len(keys),
            timeout=120,
            what=f"all {len(keys)} changes applied after the kill",
        )
        assert "WorkerLostError" in worker.log_tail(200_000)  # the failure was visible
        wait_for_whole_feed(own_settings, keys)
    finally:
        worker.stop()


@pytest.mark.faults
def test_sigkill_of_the_whole_worker_is_redelivered_within_two_minutes(own_settings, add_mount, tmp_path) -> None:
    """Default settings (no shortened visibility timeout): the batch the dead worker held comes
    back to the next worker within 2 minutes (deploy/RELIABILITY.md has the measured time)."""
    add_mount("killed2", "s3://kill-bucket-2/")
    keys = enqueue_burst(own_settings, "kill-bucket-2")
    env = env_for(own_settings, MOUNTSYNC_FEED_MAXLEN=str(own_settings.feed_maxlen))
    env.pop("MOUNTSYNC_VISIBILITY_TIMEOUT", None)
    first = WorkerProcess(env, tmp_path / "w1.log", "changes", 1).start()
    wait_for(
        lambda: live_count(own_settings.database_url, "killed2") >= 3 * PER_BATCH,
        timeout=60,
        what="first batches applied",
    )
    client = redis_lib.Redis.from_url(own_settings.redis_url)
    held = f"{own_settings.redis_prefix}unacked"
    wait_for(lambda: client.hlen(held) > 0, timeout=30, what="a batch held by the worker", interval=0.01)
    first.kill()  # main process and children, no chance to requeue anything
    killed_at = time.monotonic()
    dead_tags = set(client.hkeys(held))
    assert dead_tags, "the killed worker held no batch"
    second = WorkerProcess(env, tmp_path / "w2.log", "changes", 2).start()
    try:
        wait_for(lambda: not dead_tags & set(client.hkeys(held)), timeout=120,
                 what="the dead worker's batches given to a live worker")  # fmt: skip
        recovered_s = time.monotonic() - killed_at
        print(f"apply_changes recovered {recovered_s:.0f} s after the whole-worker SIGKILL")
        assert recovered_s < 120
        wait_for(
            lambda: live_count(own_settings.database_url, "killed2") == len(keys),
            timeout=120,
            what=f"all {len(keys)} changes applied after restart",
        )
        wait_for_whole_feed(own_settings, keys)
    finally:
        second.stop()
        client.close()
