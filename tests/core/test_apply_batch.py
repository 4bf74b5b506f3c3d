"""``apply_batch``: one transaction per batch, then a best-effort feed drain and the post-apply hooks."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import psycopg
import pytest
import redis as redis_lib

from mountsync.shared.catalog.apply import ApplyResult, drain_feed
from mountsync.shared.catalog.db import open_pool
from mountsync.shared.clock import SystemClock
from mountsync.shared.config import Settings
from mountsync.shared.errors import ServiceUnavailable
from mountsync.shared.events import Kind, ObjectChange, Provider, Source
from mountsync.shared.queues import FEED_STREAM
from mountsync.shared.testing import RecordingApp
from mountsync.workers import service
from mountsync.workers.alignment.hooks import TASK_CHECK, after_apply, announce_opened_alerts
from mountsync.workers.context import WorkerContext
from mountsync.workers.post_apply import PostApplyHooks


@pytest.fixture
def ctx(settings: Settings, catalog: psycopg.Connection) -> Iterator[WorkerContext]:
    own = settings.with_(redis_prefix=f"{settings.redis_prefix}batch{uuid.uuid4().hex[:6]}:")
    pool = open_pool(own.database_url, min_size=1, max_size=2, name="apply-batch")
    client = redis_lib.Redis.from_url(own.redis_url)
    # As the worker registers them at start (mountsync.workers.app.post_apply_hooks).
    context = WorkerContext(own, pool, client, RecordingApp(), SystemClock(), PostApplyHooks(after_apply))
    yield context
    for key in client.scan_iter(match=f"{own.redis_prefix}*", count=1000):
        client.delete(key)
    context.close()


@pytest.fixture
def mount_id(add_mount: Callable[..., Any]) -> int:
    return int(add_mount("m", "s3://bkt/").id)


def created(key: str) -> ObjectChange:
    return ObjectChange(Provider.S3, "bkt", key, Kind.CREATED, 1, Source.S3_SQS, size=1, etag="e", sequencer="1")


def feed(ctx: WorkerContext) -> list[bytes]:
    return [entry[b"key"] for _, entry in ctx.redis.xrange(ctx.key(FEED_STREAM))]


def live_keys(catalog: psycopg.Connection) -> list[str]:
    return [r[0] for r in catalog.execute("SELECT key FROM objects WHERE NOT deleted ORDER BY key")]


def test_a_batch_is_committed_published_and_hooked(ctx: WorkerContext, catalog: psycopg.Connection,
                                                   mount_id: int) -> None:  # fmt: skip
    result = service.apply_batch(ctx, [created("seq/1.png"), created("seq/2.png")])
    assert len(result.applied) == 2
    assert live_keys(catalog) == ["seq/1.png", "seq/2.png"]
    assert feed(ctx) == [b"seq/1.png", b"seq/2.png"]  # published after the commit (log rows visible)
    assert ctx.app.calls() == [(TASK_CHECK, [mount_id, "seq"])]


@pytest.mark.parametrize(
    "failure",
    [psycopg.OperationalError("server closed the connection"), redis_lib.ConnectionError("Redis went away")],
)
def test_a_failed_feed_drain_neither_retries_the_batch_nor_skips_the_hooks(
    ctx: WorkerContext, catalog: psycopg.Connection, mount_id: int, monkeypatch: pytest.MonkeyPatch,
    failure: Exception,
) -> None:  # fmt: skip
    def broken(*args: Any) -> int:
        raise failure

    monkeypatch.setattr(service, "drain_feed", broken)
    result = service.apply_batch(ctx, [created("seq/1.png")])
    assert len(result.applied) == 1
    assert live_keys(catalog) == ["seq/1.png"]
    assert ctx.app.calls() == [(TASK_CHECK, [mount_id, "seq"])]
    assert feed(ctx) == []
    # The entry stays unpublished in the change log; the next drain (next apply, reconcile_all_task) publishes it.
    with ctx.pool.connection() as conn:
        assert drain_feed(conn, ctx.redis, ctx.key(FEED_STREAM), 1000) == 1
    assert feed(ctx) == [b"seq/1.png"]


def test_with_the_stream_off_the_log_keeps_every_change_and_turning_it_on_skips_the_backlog(
    ctx: WorkerContext, catalog: psycopg.Connection, mount_id: int
) -> None:
    off = replace(ctx, settings=ctx.settings.with_(feed_maxlen=0))  # MOUNTSYNC_FEED_MAXLEN=0
    service.apply_batch(off, [created("seq/1.png"), created("seq/2.png")])
    assert feed(ctx) == []
    logged = [row[0] for row in catalog.execute("SELECT key FROM change_log ORDER BY cursor")]
    assert logged == ["seq/1.png", "seq/2.png"]  # the durable feed (/api/v1/changes, sinks) has them
    service.apply_batch(ctx, [created("seq/3.png")])
    assert feed(ctx) == [b"seq/3.png"]


def test_a_failed_apply_is_retried_without_hooks(ctx: WorkerContext, catalog: psycopg.Connection, mount_id: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    def broken(*args: Any) -> Any:
        raise psycopg.OperationalError("server closed the connection")

    monkeypatch.setattr(service, "apply_changes", broken)
    with pytest.raises(ServiceUnavailable):
        service.apply_batch(ctx, [created("seq/1.png")])
    assert ctx.app.calls() == []


def test_the_worker_registers_alignment_alerts_and_the_sink_nudge_as_post_apply_hooks() -> None:
    from mountsync.workers.app import post_apply_hooks
    from mountsync.workers.sinks.tasks import nudge_sinks

    assert list(post_apply_hooks()) == [after_apply, announce_opened_alerts, nudge_sinks]


def test_without_registered_hooks_a_batch_is_only_committed_and_published(
    ctx: WorkerContext, catalog: psycopg.Connection, mount_id: int
) -> None:
    ctx.post_apply = PostApplyHooks()
    service.apply_batch(ctx, [created("seq/1.png")])
    assert live_keys(catalog) == ["seq/1.png"]
    assert feed(ctx) == [b"seq/1.png"]
    assert ctx.app.calls() == []


def test_a_failing_hook_does_not_keep_the_next_from_seeing_the_batch(
    ctx: WorkerContext, catalog: psycopg.Connection, mount_id: int
) -> None:
    seen: list[list[str]] = []

    def broken_sink(_ctx: Any, result: ApplyResult) -> None:
        raise redis_lib.ConnectionError("sink down")

    def recording_sink(_ctx: Any, result: ApplyResult) -> None:
        seen.append([change.key for change in result.applied])

    ctx.post_apply = PostApplyHooks(broken_sink, after_apply, recording_sink)
    with pytest.raises(redis_lib.ConnectionError, match="sink down"):
        service.apply_batch(ctx, [created("seq/1.png")])
    assert live_keys(catalog) == ["seq/1.png"]  # committed before any hook ran
    assert ctx.app.calls() == [(TASK_CHECK, [mount_id, "seq"])]
    assert seen == [["seq/1.png"]]


def test_a_wipe_held_by_the_guard_announces_its_alert_to_the_sinks_and_the_webhook(
    ctx: WorkerContext, catalog: psycopg.Connection, mount_id: int
) -> None:
    from mountsync.workers.alignment.hooks import TASK_NOTIFY
    from mountsync.workers.sinks.tasks import nudge_sinks

    ctx.settings = ctx.settings.with_(extra={"MOUNTSYNC_ALERT_WEBHOOK": "http://127.0.0.1:9/alerts"})
    ctx.post_apply = PostApplyHooks(after_apply, announce_opened_alerts, nudge_sinks)
    service.apply_batch(ctx, [created(f"cam/{i:03d}.jpg") for i in range(100)])
    first_event = int(catalog.execute("SELECT coalesce(max(id), 0) FROM sink_events").fetchone()[0])
    ctx.app.sent.clear()
    wipe = [replace(created(f"cam/{i:03d}.jpg"), kind=Kind.DELETED, size=None, etag=None, sequencer="2")
            for i in range(80)]  # fmt: skip
    result = service.apply_batch(ctx, wipe)
    assert not result.applied and result.held == {mount_id: 80}
    [alert_id] = result.alerts
    events = catalog.execute("SELECT topic, payload FROM sink_events WHERE id > %s", (first_event,)).fetchall()
    assert [(topic, payload["id"], payload["kind"]) for topic, payload in events] == [
        ("alerts", alert_id, "mass-delete")
    ]
    assert ctx.app.calls() == [(TASK_NOTIFY, [alert_id])]  # no folder check: nothing was applied
