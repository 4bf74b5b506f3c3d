"""normalize -> enrich -> enqueue, deciding for each raw message whether to ack, reject or nack.

Shared by the pull loop (``run_source``) and the push endpoints (``serve``): a message is acked
only when every change it produced is on Redis; invalid input is dead-lettered, then rejected;
anything transient is nacked so the transport redelivers it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from mountsync.producers.base import ChangeSink, Enricher, Normalizer
from mountsync.shared import metrics
from mountsync.shared.catalog.deadletters import DeadLetters
from mountsync.shared.errors import InvalidEvent, RetryableError
from mountsync.shared.events import ObjectChange, RawMessage

log = structlog.get_logger("mountsync.producer")


@dataclass
class Outcome:
    ack: list[RawMessage] = field(default_factory=list)
    reject: list[RawMessage] = field(default_factory=list)
    nack: list[RawMessage] = field(default_factory=list)
    changes: int = 0
    reasons: list[str] = field(default_factory=list)


class Pipeline:
    def __init__(
        self,
        normalize: Normalizer,
        queue: ChangeSink,
        deadletters: DeadLetters,
        *,
        enrich: Enricher | None = None,
        batch_size: int = 500,
        name: str | None = None,
        letter_body: Callable[[RawMessage], bytes] | None = None,
    ) -> None:
        """``name`` labels metrics and dead letters (default: each message's source);
        ``letter_body`` gives what a dead letter keeps of a message (default: its body)."""
        self._normalize = normalize
        self._letter_body = letter_body
        self._name = name
        self._queue = queue
        self._deadletters = deadletters
        self._enrich = enrich
        self._batch_size = batch_size

    def process(self, messages: Sequence[RawMessage]) -> Outcome:
        outcome = Outcome()
        carriers: list[RawMessage] = []
        changes: list[ObjectChange] = []
        received: Counter[str] = Counter()
        for message in messages:
            received[self._name or message.source.value] += 1
            produced = self._normalize_one(message, outcome)
            if produced is None:
                continue
            if produced:
                carriers.append(message)
                changes.extend(produced)
            else:
                outcome.ack.append(message)  # test / validation events: nothing to queue
        for source, n in received.items():  # one labelled increment per batch, not per message
            metrics.EVENTS_RECEIVED.labels(source).inc(n)
        if changes:
            self._enqueue(carriers, changes, outcome)
        return outcome

    def _normalize_one(self, message: RawMessage, outcome: Outcome) -> list[ObjectChange] | None:
        try:
            return self._normalize(message)
        except InvalidEvent as exc:
            reason = str(exc)
        except Exception as exc:  # a normalizer bug must not crash the consumer or lose the message
            reason = f"normalizer failed: {type(exc).__name__}: {exc}"
            log.exception("normalizer raised", source=message.source.value, message_id=message.message_id)
        self._dead_letter(message, reason, outcome)
        return None

    def _dead_letter(self, message: RawMessage, reason: str, outcome: Outcome) -> None:
        source = self._name or message.source.value
        try:
            self._deadletters.record(
                source,
                message.message_id,
                reason,
                self._letter_body(message) if self._letter_body else message.body,
                dict(message.attributes),
            )
        except Exception as exc:  # could not record: keep the message for redelivery
            log.error(
                "dead-letter store unavailable; message will be redelivered",
                message_id=message.message_id,
                error=str(exc),
            )
            outcome.nack.append(message)
            return
        metrics.DEAD_LETTERED.labels(source, reason.split(":")[0][:60]).inc()
        log.warning("dead-lettered", source=source, message_id=message.message_id, reason=reason)
        outcome.reject.append(message)
        outcome.reasons.append(reason)

    def _enqueue(self, carriers: list[RawMessage], changes: list[ObjectChange], outcome: Outcome) -> None:
        source = self._name or carriers[0].source.value
        try:
            if self._enrich is not None:
                changes = self._enrich(changes)
            for start in range(0, len(changes), self._batch_size):
                self._queue.enqueue(changes[start : start + self._batch_size])
        except (RetryableError, OSError) as exc:
            metrics.ENQUEUE_FAILURES.labels(source).inc()
            log.error(
                "enqueue failed; messages will be redelivered",
                source=source,
                messages=len(carriers),
                error=str(exc),
            )
            outcome.nack.extend(carriers)
            return
        metrics.CHANGES_ENQUEUED.labels(source).inc(len(changes))
        outcome.ack.extend(carriers)
        outcome.changes += len(changes)
        log.info("enqueued", source=source, changes=len(changes), source_ids=[m.message_id for m in carriers[:20]])


def with_delivery_limit(normalize: Normalizer, limit: int) -> Normalizer:
    """Dead-letter a message delivered more than ``limit`` times (a poison message; 0 = no limit)."""

    def guarded(raw: RawMessage) -> list[ObjectChange]:
        if limit > 0 and raw.delivery_count > limit:
            raise InvalidEvent(f"poison message: delivered {raw.delivery_count} times (limit {limit})")
        return normalize(raw)

    return guarded
