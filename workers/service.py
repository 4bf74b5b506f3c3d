"""Applying a batch and everything that follows a commit, shared by the apply task and reindex."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import structlog

from mountsync.shared import metrics
from mountsync.shared.catalog.apply import ApplyResult, apply_changes
from mountsync.shared.catalog.change_log import drain_feed
from mountsync.shared.catalog.db import transaction
from mountsync.shared.events import ObjectChange
from mountsync.shared.queues import FEED_STREAM
from mountsync.workers.context import WorkerContext

log = structlog.get_logger("mountsync.apply")


def apply_batch(ctx: WorkerContext, changes: Sequence[ObjectChange]) -> ApplyResult:
    """Apply ``changes`` through the one write path, publish the feed, run the post-apply hooks
    the worker registered at start (``ctx.post_apply``)."""
    started = time.perf_counter()
    # PostgreSQL failing mid-batch (server gone, pool timeout) raises ServiceUnavailable: retried, never dropped.
    with transaction(ctx.pool) as conn:
        result = apply_changes(conn, changes)
    metrics.APPLY_SECONDS.observe(time.perf_counter() - started)
    _count(result)
    _publish_feed(ctx)
    if result.applied or result.alerts:
        ctx.post_apply.run(ctx, result)
    if result.dropped:
        log.warning("changes for unmounted buckets dropped", dropped=result.dropped)
    return result


def _publish_feed(ctx: WorkerContext) -> None:
    """Publish the change log to the feed stream; best effort, as the batch is committed by now.

    A failure here must not retry the batch: its redelivery would apply nothing (every change is
    stale) and so never run the post-apply hooks. The entries stay unpublished, and the next
    apply's drain or ``reconcile_all_task`` (beat, every minute) publishes them.
    """
    try:
        with ctx.pool.connection() as conn:
            drain_feed(conn, ctx.redis, ctx.key(FEED_STREAM), ctx.settings.feed_maxlen)
    except Exception as exc:
        log.warning("feed drain failed; the next drain publishes the entries",
                    error=f"{type(exc).__name__}: {exc}")  # fmt: skip


def _count(result: ApplyResult) -> None:
    # One labelled increment per (mount, kind), not per change: a label lookup costs ~1 us x 2,000.
    for (mount, kind), n in Counter((c.mount_name, c.kind.value) for c in result.applied).items():
        metrics.CHANGES_APPLIED.labels(mount, kind).inc(n)
    if result.stale:
        metrics.CHANGES_STALE.inc(result.stale)
    if result.dropped:
        metrics.CHANGES_DROPPED.labels("unmounted").inc(result.dropped)
    for mount_id, count in result.held.items():
        metrics.DELETES_HELD.inc(count)
        log.warning("mass delete held", mount_id=mount_id, held=count)
