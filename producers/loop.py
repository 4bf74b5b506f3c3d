"""``run_source``: the one receive -> normalize -> batch -> enqueue -> ack loop every producer runs.

Time and metrics are injected (a ``Clock``, a ``MetricsSink``): tests drive batch windows,
backoff and backpressure with ``mountsync.shared.testing.ManualClock`` and read what was
reported from ``RecordingMetrics``, without sleeping.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from mountsync.producers.base import EventSource
from mountsync.producers.pipeline import Outcome
from mountsync.shared.clock import SYSTEM_CLOCK, Clock
from mountsync.shared.config import Settings
from mountsync.shared.errors import RetryableError
from mountsync.shared.events import RawMessage
from mountsync.shared.metrics import PROMETHEUS, MetricsSink
from mountsync.shared.queues import QUEUE_CHANGES

log = structlog.get_logger("mountsync.producer")
# While the changes queue is over its limit, look again this often. The limit's worth of tasks
# drains in about a second at full speed, so pausing up to a second (as before) left the workers
# idle for much of each pause (issue 18's profile: workers ~30% busy); one LLEN per 50 ms is nothing.
BACKPRESSURE_POLL_S = 0.05


class MessageProcessor(Protocol):
    """What the loop hands received messages to: a ``Pipeline``, or the inbox drainer's ``EntryPipeline``."""

    def process(self, messages: Sequence[RawMessage]) -> Outcome: ...


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


@dataclass
class _Loop:
    """One running loop's collaborators (so the steps below take one argument, not seven)."""

    source: EventSource
    settings: Settings
    stop: threading.Event
    clock: Clock
    metrics: MetricsSink
    stats: LoopStats
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def name(self) -> str:
        return self.source.name.value

    def back_off(self) -> None:
        self.clock.wait(self.stop, self.backoff.next())


def run_source(
    source: EventSource,
    pipeline: MessageProcessor,
    settings: Settings,
    stop: threading.Event,
    *,
    depth: Callable[[], int],
    stats: LoopStats | None = None,
    clock: Clock = SYSTEM_CLOCK,
    metrics: MetricsSink = PROMETHEUS,
) -> LoopStats:
    """Run until ``stop`` is set. Never raises for bad input or transient failures."""
    loop = _Loop(source, settings, stop, clock, metrics, stats or LoopStats())
    try:
        while not stop.is_set():
            if _paused_for_backpressure(loop, depth):
                continue
            try:
                messages = _collect(loop)
            except RetryableError as exc:
                log.warning("receive failed; backing off", source=loop.name, error=str(exc))
                loop.back_off()
                continue
            if not messages:
                continue
            outcome = pipeline.process(messages)
            _settle(loop, outcome)
            loop.stats.batches += 1
            if outcome.nack:
                loop.back_off()
            else:
                loop.backoff.reset()
    finally:
        source.close()
    return loop.stats


def _paused_for_backpressure(loop: _Loop, depth: Callable[[], int]) -> bool:
    try:
        queued = depth()
    except RetryableError as exc:
        log.warning("cannot read queue depth; pausing", source=loop.name, error=str(exc))
        loop.back_off()
        return True
    loop.metrics.set("QUEUE_DEPTH", QUEUE_CHANGES, value=queued)
    limit = loop.settings.max_queue_depth
    if queued <= limit:
        return False
    # The cloud queue holds the backlog while Redis drains (design rule 6).
    paused = loop.stats.paused
    if paused == 0 or paused % 50 == 0:
        log.warning("changes queue is deep; pausing pulls", source=loop.name, depth=queued, limit=limit)
    loop.metrics.inc("BACKPRESSURE_PAUSES", loop.name)
    loop.stats.paused += 1
    loop.clock.wait(loop.stop, BACKPRESSURE_POLL_S)
    return True


def _collect(loop: _Loop) -> list[RawMessage]:
    """Receive until a batch is full or the batch window has passed since the first message."""
    source, size, window = loop.source, loop.settings.batch_size, loop.settings.batch_window_s
    messages = source.receive(size, window * 2)
    if not messages:
        return []
    deadline = loop.clock.monotonic() + window
    while len(messages) < size and not loop.stop.is_set():
        remaining = deadline - loop.clock.monotonic()
        if remaining <= 0:
            break
        try:
            more = source.receive(size - len(messages), remaining)
        except RetryableError as exc:  # keep what was received: it must still be settled
            log.warning("receive failed while filling a batch; sending what arrived", source=loop.name,
                        error=str(exc))  # fmt: skip
            break
        if not more:
            break
        messages.extend(more)
    return messages


def _settle(loop: _Loop, outcome: Outcome) -> None:
    source, name, stats = loop.source, loop.name, loop.stats
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
            loop.metrics.inc("ACK_FAILURES", name, amount=len(failed))
        loop.metrics.inc("MESSAGES_ACKED", name, amount=len(outcome.ack) - len(failed))
        stats.acked += len(outcome.ack) - len(failed)


def _safely(call: Callable[[list[RawMessage]], object], messages: list[RawMessage], what: str, name: str) -> None:
    try:
        call(messages)
    except RetryableError as exc:
        log.warning(f"{what} failed; the transport will redeliver", source=name, error=str(exc))
