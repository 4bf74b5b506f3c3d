"""run_source and the pipeline on real Redis and PostgreSQL, with an in-memory transport.

The transport is the shipped fake ``MemorySource`` (a list of messages with ack bookkeeping): it
stands for SQS / Pub/Sub / Event Grid, which have their own end-to-end tests against stand-ins.
Time is a ``ManualClock`` where the loop would wait, and metrics go to ``RecordingMetrics``. Two outages are
doubles too, to fail at an exact point of the loop: ``BrokenQueue`` (Redis refusing the enqueue)
and ``DownLetters`` (the dead-letter store down); real outages are in tests/reliability.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace

import psycopg
import pytest
import redis as redis_lib

from mountsync.producers.loop import LoopStats, run_source
from mountsync.producers.normalize.fs import normalize_fs
from mountsync.producers.pipeline import Pipeline
from mountsync.shared.catalog.db import open_pool
from mountsync.shared.catalog.deadletters import DeadLetters
from mountsync.shared.errors import ServiceUnavailable
from mountsync.shared.events import RawMessage, Source
from mountsync.shared.queues import QUEUE_CHANGES, ChangeQueue, make_client
from mountsync.shared.testing import ManualClock, MemorySource, RecordingMetrics
from tests.helpers import queued_changes


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
    source = MemorySource(good + bad, stop=stop)
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
    source = MemorySource([observation(1)], stop=stop)
    clock, recorded = ManualClock(), RecordingMetrics()
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
        clock=clock,
        metrics=recorded,
    )
    assert stats.paused >= 4 and source.pending == [observation(1)] and source.acked == []
    assert recorded.value("BACKPRESSURE_PAUSES", "fs") == stats.paused
    assert recorded.value("QUEUE_DEPTH", QUEUE_CHANGES) == 10_000
    assert len(clock.waits) == stats.paused and all(0 < w <= 1.0 for w in clock.waits)  # paused, not sleeping


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

    class FailsSecond(MemorySource):
        calls = 0

        def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
            self.calls += 1
            if self.calls == 2:
                raise ServiceUnavailable("receive failed")
            return super().receive(3 if self.calls == 1 else max_messages, wait_s)

    source = FailsSecond([observation(i) for i in range(5)], stop=stop)
    run_source(source, Pipeline(normalize_fs, queue, DeadLetters(pool)), replace(settings, batch_window_s=5),
               stop, depth=queue.depth)  # fmt: skip
    assert sorted(source.acked) == [f"m{i}" for i in range(5)] and not source.nacked
    assert len(queued_changes(client, settings)) == 5


def test_a_batch_waits_no_longer_than_its_window_after_the_first_message(own_settings, parts) -> None:
    """The window is measured on the injected clock: a source slower than the window ends the batch."""
    pool, _client, queue = parts
    stop, clock, recorded = threading.Event(), ManualClock(), RecordingMetrics()

    class Slow(MemorySource):
        def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
            clock.advance(0.6)  # each receive takes 0.6 s of a 1 s window
            return super().receive(1, wait_s)

    source = Slow([observation(i) for i in range(5)], stop=stop)
    stats = run_source(source, Pipeline(normalize_fs, queue, DeadLetters(pool)),
                       replace(own_settings, batch_window_s=1.0, batch_size=100), stop, depth=queue.depth,
                       clock=clock, metrics=recorded)  # fmt: skip
    # m0 m1 m2, then m3 m4: the receive that starts after the window has passed is not made.
    assert stats.batches == 2
    assert sorted(source.acked) == [f"m{i}" for i in range(5)]
    assert recorded.value("MESSAGES_ACKED", "fs") == 5
