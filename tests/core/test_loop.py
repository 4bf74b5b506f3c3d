"""run_source and the pipeline on real Redis and PostgreSQL, with an in-memory transport.

The transport is a test double (a list of messages with ack bookkeeping): it stands for SQS /
Pub/Sub / Event Grid, which have their own end-to-end tests against stand-ins. Two outages are
doubles too, to fail at an exact point of the loop: ``BrokenQueue`` (Redis refusing the enqueue)
and ``DownLetters`` (the dead-letter store down); real outages are in tests/reliability.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace

import psycopg
import pytest
import redis as redis_lib

from mountsync.producers.loop import LoopStats, run_source
from mountsync.producers.normalize.fs import normalize_fs
from mountsync.producers.pipeline import Pipeline
from mountsync.shared.catalog.db import open_pool
from mountsync.shared.deadletter import DeadLetters
from mountsync.shared.errors import ServiceUnavailable
from mountsync.shared.events import RawMessage, Source
from mountsync.shared.queues import QUEUE_CHANGES, ChangeQueue, make_client
from tests.helpers import queued_changes


class ListSource:
    name = Source.FS

    def __init__(self, messages: list[RawMessage], stop: threading.Event) -> None:
        self.pending, self.stop = list(messages), stop
        self.acked: list[str] = []
        self.rejected: list[str] = []
        self.nacked: list[str] = []
        self.closed = False

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        if not self.pending:
            self.stop.set()
            return []
        batch, self.pending = self.pending[:max_messages], self.pending[max_messages:]
        return batch

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        self.acked += [m.message_id for m in messages]
        return []

    def nack(self, messages: Sequence[RawMessage]) -> None:
        self.nacked += [m.message_id for m in messages]

    def reject(self, messages: Sequence[RawMessage]) -> None:
        self.rejected += [m.message_id for m in messages]

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def observation(i: int, **over: object) -> RawMessage:
    body = {
        "root": "/data",
        "key": f"a/{i}.jpg",
        "exists": True,
        "size": i,
        "etag": f"e{i}",
        "observed_ns": 1000 + i,
    } | over
    return RawMessage(Source.FS, f"m{i}", json.dumps(body).encode())


@pytest.fixture
def own_settings(settings):
    """Own Redis prefix: the session worker must not consume the queue these tests inspect."""
    return replace(settings, redis_prefix=f"{settings.redis_prefix}loop{uuid.uuid4().hex[:6]}:")


@pytest.fixture
def parts(own_settings, catalog):
    settings = own_settings
    pool = open_pool(settings.database_url)
    client = redis_lib.Redis.from_url(settings.redis_url)
    queue = ChangeQueue(make_client(settings), client, settings)
    yield pool, client, queue
    client.delete(f"{settings.redis_prefix}{QUEUE_CHANGES}")
    client.close()
    pool.close()


def test_acks_only_what_was_enqueued_and_dead_letters_bad_input(own_settings, parts, catalog) -> None:
    settings = own_settings
    pool, client, queue = parts
    stop = threading.Event()
    good = [observation(i) for i in range(5)]
    bad = [RawMessage(Source.FS, "bad-json", b"{not json"), observation(9, key="../escape")]
    source = ListSource(good + bad, stop)
    stats = run_source(
        source,
        Pipeline(normalize_fs, queue, DeadLetters(pool)),
        replace(settings, batch_window_s=0.01),
        stop,
        depth=queue.depth,
    )
    assert sorted(source.acked) == sorted(m.message_id for m in good)
    assert sorted(source.rejected) == ["bad-json", "m9"] and source.closed
    assert sorted(c["key"] for c in queued_changes(client, settings)) == [f"a/{i}.jpg" for i in range(5)]
    letters = catalog.execute("SELECT message_id, reason FROM dead_letters ORDER BY message_id").fetchall()
    assert [m for m, _ in letters] == ["bad-json", "m9"]
    assert "not JSON" in letters[0][1] and "inside the root" in letters[1][1]
    assert stats.acked == 5 and stats.rejected == 2


class BrokenQueue:
    def enqueue(self, changes) -> None:
        raise ServiceUnavailable("Redis is down")

    def depth(self) -> int:
        return 0


def test_enqueue_failure_nacks_and_acks_nothing(settings, parts) -> None:
    pool, _client, _queue = parts
    pipeline = Pipeline(normalize_fs, BrokenQueue(), DeadLetters(pool))  # type: ignore[arg-type]
    outcome = pipeline.process([observation(1), observation(2)])
    assert outcome.ack == [] and [m.message_id for m in outcome.nack] == ["m1", "m2"]


def test_backpressure_pauses_pulling_while_the_queue_is_deep(settings, parts) -> None:
    pool, _client, queue = parts
    stop = threading.Event()
    source = ListSource([observation(1)], stop)
    depth_calls = []

    def deep() -> int:
        depth_calls.append(1)
        if len(depth_calls) >= 5:
            stop.set()
        return 10_000

    stats = run_source(
        source,
        Pipeline(normalize_fs, queue, DeadLetters(pool)),
        replace(settings, max_queue_depth=100),
        stop,
        depth=deep,
        stats=LoopStats(),
    )
    assert stats.paused >= 4 and source.pending == [observation(1)] and source.acked == []


def test_dead_letter_store_down_means_redelivery_not_loss(settings, parts) -> None:
    _pool, _client, queue = parts

    class DownLetters:
        def record(self, *args, **kwargs) -> int:
            raise psycopg.OperationalError("database is down")

    outcome = Pipeline(normalize_fs, queue, DownLetters()).process(  # type: ignore[arg-type]
        [RawMessage(Source.FS, "bad", b"{")]
    )
    assert [m.message_id for m in outcome.nack] == ["bad"] and outcome.reject == []


def test_a_failed_receive_while_filling_a_batch_keeps_what_arrived(own_settings, parts, catalog) -> None:
    """The second receive of a batch fails: the first one's messages are still enqueued and acked."""
    settings = own_settings
    pool, client, queue = parts
    stop = threading.Event()

    class FailsSecond(ListSource):
        calls = 0

        def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
            self.calls += 1
            if self.calls == 2:
                raise ServiceUnavailable("receive failed")
            return super().receive(3 if self.calls == 1 else max_messages, wait_s)

    source = FailsSecond([observation(i) for i in range(5)], stop)
    run_source(source, Pipeline(normalize_fs, queue, DeadLetters(pool)), replace(settings, batch_window_s=5),
               stop, depth=queue.depth)  # fmt: skip
    assert sorted(source.acked) == [f"m{i}" for i in range(5)] and not source.nacked
    assert len(queued_changes(client, settings)) == 5
