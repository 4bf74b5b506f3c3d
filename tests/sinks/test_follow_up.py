"""What a ``deliver`` run asks for next: the nudge and the retry at lease expiry, on real Redis."""

from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
import redis as redis_lib

from mountsync.shared.config import Settings
from mountsync.shared.queues import TASK_SINK_DELIVER
from mountsync.shared.testing import ManualClock, RecordingApp
from mountsync.workers.context import WorkerContext
from mountsync.workers.sinks.delivery import RunReport
from mountsync.workers.sinks.tasks import follow_up, request_delivery, scheduled_key
from tests.helpers import wait_for

SINK = 7


@pytest.fixture
def ctx(settings: Settings, redis_client: redis_lib.Redis) -> WorkerContext:
    own = replace(settings, redis_prefix=f"{settings.redis_prefix}follow{uuid.uuid4().hex[:6]}:")
    return WorkerContext(settings=own, pool=None, redis=redis_client, app=RecordingApp(), clock=ManualClock())  # type: ignore[arg-type]


def delivers(ctx: WorkerContext) -> list[float]:
    """The countdown of every ``deliver`` sent, in order."""
    app: RecordingApp = ctx.app  # type: ignore[assignment]
    return [task.options.get("countdown", 0.0) for task in app.sent if task.name == TASK_SINK_DELIVER]


def test_a_run_that_found_the_lease_taken_asks_once_for_its_expiry(ctx: WorkerContext) -> None:
    follow_up(ctx, SINK, RunReport(busy=True, retry_in_s=28.5))
    follow_up(ctx, SINK, RunReport(busy=True, retry_in_s=27.0))

    assert delivers(ctx) == [29.5]
    assert 28_000 < ctx.redis.pttl(scheduled_key(ctx, SINK)) <= 29_500  # gone as that run falls due


def test_the_holders_end_of_run_request_goes_out_at_once_beside_a_pending_lease_retry(ctx: WorkerContext) -> None:
    # Once both shared one mark: the lease retry swallowed the holder's request and what came
    # during its run waited ~30 s (measured: 4,000 Label Studio tasks 30 s late in the benchmark).
    follow_up(ctx, SINK, RunReport(busy=True, retry_in_s=29.0))
    assert request_delivery(ctx, SINK)
    assert not request_delivery(ctx, SINK), "a second nudge while one is pending is one too many"

    assert delivers(ctx) == [30.0, 0.0]


def test_a_run_that_stopped_with_work_left_asks_for_the_next_at_once(ctx: WorkerContext) -> None:
    follow_up(ctx, SINK, RunReport(sink="s", delivered=1000, more=True))

    assert delivers(ctx) == [0.0]


def test_a_scheduled_run_can_schedule_the_next_one(ctx: WorkerContext) -> None:
    # A failing receiver's run asks for its retry from inside the run the last retry scheduled.
    assert request_delivery(ctx, SINK, countdown=0.05)
    wait_for(lambda: not ctx.redis.exists(scheduled_key(ctx, SINK)), timeout=5, what="the mark to expire")
    assert request_delivery(ctx, SINK, countdown=2.0)

    assert delivers(ctx) == [0.05, 2.0]
