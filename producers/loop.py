"""``run_source``: the one receive -> normalize -> batch -> enqueue -> ack loop every producer runs."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from mountsync.producers.base import EventSource
from mountsync.producers.pipeline import Outcome, Pipeline
from mountsync.shared import metrics
from mountsync.shared.config import Settings
from mountsync.shared.errors import RetryableError
from mountsync.shared.events import RawMessage
from mountsync.shared.queues import QUEUE_CHANGES

log = structlog.get_logger("mountsync.producer")
# While the changes queue is over its limit, look again this often. The limit's worth of tasks
# drains in about a second at full speed, so pausing up to a second (as before) left the workers
# idle for much of each pause (issue 18's profile: workers ~30% busy); one LLEN per 50 ms is nothing.
BACKPRESSURE_POLL_S = 0.05


@dataclass
class Backoff:
    """Exponential backoff with full jitter; ``reset`` after a success."""

    base: float = 0.2
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        self.attempt += 1
        return self.rng.uniform(0, min(self.cap, self.base * 2**self.attempt))

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class LoopStats:
    batches: int = 0
    acked: int = 0
    rejected: int = 0
    nacked: int = 0
    paused: int = 0


def run_source(
    source: EventSource,
    pipeline: Pipeline,
    settings: Settings,
    stop: threading.Event,
    *,
    depth: Callable[[], int],
    stats: LoopStats | None = None,
) -> LoopStats:
    """Run until ``stop`` is set. Never raises for bad input or transient failures."""
    stats = stats or LoopStats()
    backoff = Backoff()
    name = source.name.value
    try:
        while not stop.is_set():
            if _paused_for_backpressure(depth, settings, name, stop, backoff, stats):
                continue
            try:
                messages = _collect(source, settings, stop)
            except RetryableError as exc:
                log.warning("receive failed; backing off", source=name, error=str(exc))
                stop.wait(backoff.next())
                continue
            if not messages:
                continue
            outcome = pipeline.process(messages)
            _settle(source, outcome, stats)
            stats.batches += 1
            if outcome.nack:
                stop.wait(backoff.next())
            else:
                backoff.reset()
    finally:
        source.close()
    return stats


def _paused_for_backpressure(
    depth: Callable[[], int],
    settings: Settings,
    name: str,
    stop: threading.Event,
    backoff: Backoff,
    stats: LoopStats,
) -> bool:
    try:
        queued = depth()
    except RetryableError as exc:
        log.warning("cannot read queue depth; pausing", source=name, error=str(exc))
        stop.wait(backoff.next())
        return True
    metrics.QUEUE_DEPTH.labels(QUEUE_CHANGES).set(queued)
    if queued <= settings.max_queue_depth:
        return False
    # The cloud queue holds the backlog while Redis drains (design rule 6).
    if stats.paused == 0 or stats.paused % 50 == 0:
        log.warning("changes queue is deep; pausing pulls", source=name, depth=queued, limit=settings.max_queue_depth)
    metrics.BACKPRESSURE_PAUSES.labels(name).inc()
    stats.paused += 1
    stop.wait(BACKPRESSURE_POLL_S)
    return True


def _collect(source: EventSource, settings: Settings, stop: threading.Event) -> list[RawMessage]:
    """Receive until a batch is full or the batch window has passed since the first message."""
    messages = source.receive(settings.batch_size, settings.batch_window_s * 2)
    if not messages:
        return []
    deadline = time.monotonic() + settings.batch_window_s
    while len(messages) < settings.batch_size and not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            more = source.receive(settings.batch_size - len(messages), remaining)
        except RetryableError as exc:  # keep what was received: it must still be settled
            log.warning("receive failed while filling a batch; sending what arrived", source=source.name.value,
                        error=str(exc))  # fmt: skip
            break
        if not more:
            break
        messages.extend(more)
    return messages


def _settle(source: EventSource, outcome: Outcome, stats: LoopStats) -> None:
    name = source.name.value
    if outcome.reject:
        _safely(source.reject, outcome.reject, "reject", name)
        stats.rejected += len(outcome.reject)
    if outcome.nack:
        _safely(source.nack, outcome.nack, "nack", name)
        stats.nacked += len(outcome.nack)
    if outcome.ack:
        try:
            failed = source.ack(outcome.ack)
        except RetryableError as exc:
            failed = outcome.ack
            log.warning(
                "ack failed; messages will be redelivered (applying twice is harmless)",
                source=name,
                error=str(exc),
            )
        if failed:
            metrics.ACK_FAILURES.labels(name).inc(len(failed))
        metrics.MESSAGES_ACKED.labels(name).inc(len(outcome.ack) - len(failed))
        stats.acked += len(outcome.ack) - len(failed)


def _safely(call: Callable[[list[RawMessage]], object], messages: list[RawMessage], what: str, name: str) -> None:
    try:
        call(messages)
    except RetryableError as exc:
        log.warning(f"{what} failed; the transport will redeliver", source=name, error=str(exc))
