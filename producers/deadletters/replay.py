"""Replaying dead letters: each one goes back the way it first came, after the cause was fixed.

- Transport letters (named for a source of ``producers/sources.py``; MinIO's are ``S3_SQS``'s)
  run through their source's normalizer (and enricher) again and the changes are
  enqueued, exactly as the producer would have done. Delivery limits do not apply to a replay.
- ``changes-queue`` letters (a change a worker could not decode) are decoded here and enqueued.
- ``inbox:SOURCE`` letters (an inbox entry its drainer gave up on: already normalized changes)
  are decoded, enriched as ``SOURCE``'s producer would, and enqueued.
- ``task:NAME`` letters (a task dead-lettered by the poison guard) are sent again by name with
  the stored arguments, on the queue the task routes to.

A letter that is replayed is marked ``replayed_at``; one that fails again stays open with the new
reason. A transient failure (Redis down) changes nothing and is reported.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass
from typing import Any

from mountsync.producers.base import Enricher
from mountsync.producers.inbox import LETTER_PREFIX, decode_entry
from mountsync.producers.sources import NormalizeOptions, enricher_for, normalizer_for
from mountsync.shared.catalog.deadletters import DeadLetter
from mountsync.shared.errors import InvalidEvent, RetryableError
from mountsync.shared.events import ObjectChange, RawMessage, Source, load_json
from mountsync.shared.queues import celery_config, send

TASK_PREFIX = "task:"
CHANGES_QUEUE = "changes-queue"
PUSH_ENVELOPE = "push envelope:"


@dataclass(frozen=True)
class ReplayOptions:
    trust_sequencer: bool = True
    azure_accounts: tuple[str, ...] = ()
    enrich: bool = True

    @property
    def normalize(self) -> NormalizeOptions:
        return NormalizeOptions(self.trust_sequencer, self.azure_accounts)


@dataclass(frozen=True)
class ReplayResult:
    id: int
    source: str
    status: str  # replayed | failed | unavailable | skipped
    changes: int = 0
    reason: str = ""

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "status": self.status,
                "changes": self.changes, "reason": self.reason}  # fmt: skip


def raw_message(letter: DeadLetter) -> RawMessage:
    """The letter as the transport delivered it (a push envelope is unwrapped first)."""
    if letter.source == Source.GCS_PUSH and letter.reason.startswith(PUSH_ENVELOPE):
        from mountsync.producers.gcs_push import parse_envelope

        return parse_envelope(letter.payload, time.time_ns())
    attributes = {str(k): str(v) for k, v in letter.attributes.items()}
    return RawMessage(Source(letter.source), letter.message_id or f"deadletter-{letter.id}",
                      letter.payload, attributes, received_ns=time.time_ns())  # fmt: skip


def route_of(task: str, settings: Any) -> str:
    """The queue ``task`` is routed to (same rules as the Celery configuration)."""
    for pattern, route in celery_config(settings)["task_routes"].items():
        if fnmatch.fnmatchcase(task, pattern):
            return str(route["queue"])
    raise InvalidEvent(f"task {task!r} has no route to a queue; it cannot be replayed")


class Replayer:
    """Replays letters through a producer ``Runtime`` (Redis, Celery client, pool)."""

    def __init__(self, runtime: Any, options: ReplayOptions) -> None:
        self._runtime = runtime
        self._options = options
        self._enrichers: dict[str, Enricher | None] = {}

    def replay(self, letter: DeadLetter) -> ReplayResult:
        try:
            changes = self._send(letter)
        except InvalidEvent as exc:
            return self._failed(letter, str(exc))
        except RetryableError as exc:
            return ReplayResult(letter.id, letter.source, "unavailable", reason=str(exc))
        except Exception as exc:  # a normalizer bug: keep the letter, say why
            return self._failed(letter, f"replay failed: {type(exc).__name__}: {exc}")
        with self._runtime.pool.connection() as conn:
            self._runtime.deadletters.mark_replayed(conn, letter.id)
        return ReplayResult(letter.id, letter.source, "replayed", changes=changes)

    def _failed(self, letter: DeadLetter, reason: str) -> ReplayResult:
        with self._runtime.pool.connection() as conn:
            self._runtime.deadletters.keep_open(conn, letter.id, reason)
        return ReplayResult(letter.id, letter.source, "failed", reason=reason)

    def _send(self, letter: DeadLetter) -> int:
        if letter.source.startswith(TASK_PREFIX):
            return self._send_task(letter)
        if letter.source == CHANGES_QUEUE:
            return self._enqueue([ObjectChange.from_json(letter.payload)])
        if letter.source.startswith(LETTER_PREFIX):
            source = letter.source[len(LETTER_PREFIX) :]
            changes = decode_entry(RawMessage(Source(source), str(letter.message_id), letter.payload))
        else:
            source = letter.source
            changes = normalizer_for(source, self._options.normalize)(raw_message(letter))
        enrich = self._enricher(source)
        if enrich is not None and changes:
            changes = enrich(changes)
        return self._enqueue(changes)

    def _send_task(self, letter: DeadLetter) -> int:
        task = letter.source[len(TASK_PREFIX) :]
        args = load_json(letter.payload, "stored task arguments")
        if not isinstance(args, list):
            raise InvalidEvent("stored task arguments are not a JSON list")
        send(self._runtime.celery, task, *args, queue=route_of(task, self._runtime.settings))
        return len(args[0]) if task.endswith("apply_changes") and args and isinstance(args[0], list) else 0

    def _enqueue(self, changes: list[ObjectChange]) -> int:
        size = self._runtime.settings.batch_size
        for start in range(0, len(changes), size):
            self._runtime.queue.enqueue(changes[start : start + size])
        return len(changes)

    def _enricher(self, source: str) -> Enricher | None:
        if not self._options.enrich:
            return None
        if source not in self._enrichers:
            self._enrichers[source] = enricher_for(source, self._runtime.pool)
        return self._enrichers[source]
