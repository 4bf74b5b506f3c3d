"""Applying a batch and everything that follows a commit, shared by the apply task and reindex."""

from __future__ import annotations

import time
from collections.abc import Sequence

import psycopg
import structlog

from shared import metrics
from shared.catalog.apply import ApplyResult, apply_changes, drain_feed
from shared.errors import ServiceUnavailable
from shared.events import ObjectChange
from shared.queues import FEED_STREAM
from workers.alignment.hooks import after_apply
from workers.context import WorkerContext

log = structlog.get_logger("mountsync.apply")


def apply_batch(ctx: WorkerContext, changes: Sequence[ObjectChange]) -> ApplyResult:
    """Apply ``changes`` through the one write path, publish the feed, run post-apply hooks."""
    started = time.perf_counter()
    try:
        with ctx.pool.connection() as conn:
            result = apply_changes(conn, changes)
        metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
        _count(result)
        with ctx.pool.connection() as conn:
            drain_feed(conn, ctx.redis, ctx.key(FEED_STREAM), ctx.settings.feed_maxlen)
    except psycopg.OperationalError as exc:  # server gone mid-batch, pool timeout: retry, never drop
        raise ServiceUnavailable(f"PostgreSQL failed while applying a batch: {exc}") from exc
    if result.applied:
        _after_apply(ctx, result)
    if result.dropped:
        log.warning("changes for unmounted buckets dropped", dropped=result.dropped)
    return result


def _count(result: ApplyResult) -> None:
    for change in result.applied:
        metrics.CHANGES_APPLIED.labels(change.mount_name, change.kind.value).inc()
    if result.stale:
        metrics.CHANGES_STALE.inc(result.stale)
    if result.dropped:
        metrics.CHANGES_DROPPED.labels("unmounted").inc(result.dropped)


def _after_apply(ctx: WorkerContext, result: ApplyResult) -> None:
    after_apply(ctx, result.applied)
