"""Apply tasks as they wait in Redis: ChangeQueue keeps the body as it is (no base64), while
workers and the lag metric still read messages whose sender base64-encoded the body (kombu's
default, which older builds and other services use)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import redis as redis_lib

from mountsync.shared.config import Settings
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from mountsync.shared.queues import ChangeQueue, make_client, queued_args
from mountsync.shared.system_metrics import oldest_event_ns
from tests.conftest import WorkerProcess
from tests.helpers import wait_for


def change(key: str, event_ns: int, bucket: str = "msg-bucket") -> ObjectChange:
    return ObjectChange(Provider.S3, bucket, key, Kind.CREATED, event_ns, Source.S3_SQS, size=7, etag="e1")


def queue_with(settings: Settings, client: redis_lib.Redis, body_encoding: str | None) -> ChangeQueue:
    app = make_client(settings)
    if body_encoding is not None:  # as a sender on kombu's defaults does
        app.conf.broker_transport_options = {**app.conf.broker_transport_options, "body_encoding": body_encoding}
    return ChangeQueue(app, client, settings)


def test_queued_messages_read_alike_whichever_body_encoding(settings: Settings, redis_client: redis_lib.Redis) -> None:
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}msg{uuid.uuid4().hex[:6]}:")  # no worker here
    batch = [change("a/1.jpg", 3_000), change("a/2.jpg", 1_000), change("a/3.jpg", 2_000)]
    try:
        queue_with(own, redis_client, None).enqueue(batch)
        queue_with(own, redis_client, "base64").enqueue(batch)
        ours, base64_sent = redis_client.lrange(f"{own.redis_prefix}changes", 0, -1)[::-1]
        assert b'"body_encoding": "utf-8"' in ours and b'"body_encoding": "base64"' in base64_sent
        assert len(ours) < len(base64_sent)
        for raw in (ours, base64_sent):
            assert queued_args(raw) == [[c.to_row() for c in batch]]
            assert oldest_event_ns(raw) == 1_000
        assert oldest_event_ns(b'{"body": "not a task"}') is None
    finally:
        for key in redis_client.scan_iter(match=f"{own.redis_prefix}*", count=1000):
            redis_client.delete(key)


def test_a_worker_applies_tasks_whose_sender_base64_encoded_the_body(
    settings: Settings,
    redis_client: redis_lib.Redis,
    add_mount: Callable[..., Any],
    catalog_state: Callable[[str], dict[str, dict[str, Any]]],
    worker: WorkerProcess,
) -> None:
    add_mount("msgmount", "s3://msg-bucket/")
    queue_with(settings, redis_client, "base64").enqueue([change("old/1.jpg", 1), change("old/2.jpg", 2)])
    queue_with(settings, redis_client, None).enqueue([change("new/1.jpg", 3)])
    state = wait_for(lambda: (s := catalog_state("msgmount")) and len(s) == 3 and s, timeout=60,
                     what="both senders' changes applied")  # fmt: skip
    assert set(state) == {"old/1.jpg", "old/2.jpg", "new/1.jpg"}
