"""Inbox entries of raw events: a push endpoint queues the body as delivered, the drainer normalizes.

The Event Grid webhook's receiver checks each event's envelope (an object, a schema, a known
type), appends the body in one ``XADD`` (``Inbox.append_events``) and answers 200: the events
are then durably on Redis, which is where rule 1 draws the line. Normalizing them (URL,
container, account, size, etag, sequencer) is the drainer's work, off the request path, so a
burst is accepted at the rate Redis takes appends rather than the rate Python normalizes.

- **One message per event.** ``InboxSource`` hands the drainer every event of an entry as a
  message of its own: its parsed ``payload``, its index, and the entry's body. One bad event is
  dead-lettered (as the transport's source, so ``deadletters replay`` normalizes it again) with
  its own bytes, sliced from the body as delivered (``letter_body``), and its neighbours are
  queued. Slicing costs three times the parse, so only dead letters pay for it.
- **Settled per entry.** An entry is acknowledged and deleted only once each of its events was
  queued or dead-lettered (``EntryTally``); an event that failed (nacked) keeps its entry pending
  until it is retried and settles. A crash leaves the entry pending, and the next drainer queues
  all its events again, which is harmless: applying twice changes nothing.
- **Old entries.** Entries of changes (``Inbox.enqueue``) drain as before; ``EntryPipeline``
  sends each message to the pipeline of its kind.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mountsync.producers.base import EventSource, Normalizer
from mountsync.producers.pipeline import Outcome, Pipeline
from mountsync.shared.errors import InvalidEvent
from mountsync.shared.events import RawMessage, Source

EVENTS_FIELD = b"events"
ATTRIBUTES_FIELD = b"attributes"
ENTRY_KIND = "inbox-entry"  # a message attribute: "events" for the events of an events entry
EVENTS = "events"
EVENT_INDEX = "event-index"  # a message attribute: which event of the entry's body it is
Split = Callable[[bytes], list[dict[str, Any]]]
SplitBytes = Callable[[bytes], list[tuple[dict[str, Any], bytes]]]


@dataclass(frozen=True)
class EventEntries:
    """How a source's drainer reads entries of raw events: split a body into its events, split
    it into each event's bytes as delivered (for dead letters), normalize one event, and wrap
    the inbox source (directory reindexes)."""

    split: Split
    split_bytes: SplitBytes
    normalize: Normalizer
    wrap_source: Callable[[EventSource], EventSource] | None = None

    def letter_body(self, message: RawMessage) -> bytes:
        """The bytes of the one event ``message`` stands for, as the sender wrote them."""
        index = message.attributes.get(EVENT_INDEX)
        if index is None:
            return message.body
        try:
            return self.split_bytes(message.body)[int(index)][1]
        except (InvalidEvent, IndexError, ValueError):
            return message.body


def events_entry(body: bytes, attributes: Mapping[str, str]) -> dict[bytes, bytes]:
    """The fields of an entry holding ``body`` as delivered, with its transport attributes."""
    return {EVENTS_FIELD: body, ATTRIBUTES_FIELD: orjson.dumps(dict(attributes))}


def is_events_entry(fields: Mapping[bytes, Any]) -> bool:
    return EVENTS_FIELD in fields


def event_messages(
    source: Source, key: str, entry_id: bytes, fields: Mapping[bytes, Any], delivery_count: int, split: Split | None
) -> list[RawMessage]:
    """One message per event of an events entry; the whole body as one message (which the
    normalizer then dead-letters with its reason) when it cannot be split into events."""
    body: bytes = fields.get(EVENTS_FIELD, b"")
    attributes = {**_attributes(fields), "inbox": key, ENTRY_KIND: EVENTS}
    entry = entry_id.decode()
    now = time.time_ns()
    try:
        events = split(body) if split is not None else None
    except InvalidEvent:
        events = None
    if not events:
        return [RawMessage(source, entry, body, attributes, now, handle=entry_id, delivery_count=delivery_count)]
    if len(events) == 1:
        return [RawMessage(source, str(events[0].get("id") or entry), body, attributes, now, handle=entry_id,
                           delivery_count=delivery_count, payload=events[0])]  # fmt: skip
    return [
        RawMessage(source, str(event.get("id") or f"{entry}-{i}"), body, {**attributes, EVENT_INDEX: str(i)}, now,
                   handle=entry_id, delivery_count=delivery_count, payload=event)
        for i, event in enumerate(events)
    ]  # fmt: skip


def _attributes(fields: Mapping[bytes, Any]) -> dict[str, str]:
    try:
        stored = orjson.loads(fields.get(ATTRIBUTES_FIELD) or b"{}")
    except orjson.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}


class EntryTally:
    """How many messages of each entry are still unsettled; an entry settles when none are."""

    def __init__(self) -> None:
        self._open: dict[bytes, int] = {}

    def opened(self, entry_id: bytes, messages: int) -> None:
        self._open[entry_id] = messages

    def settled(self, messages: Sequence[RawMessage]) -> list[bytes]:
        """The entries of ``messages`` that have no unsettled message left, once each."""
        done: list[bytes] = []
        for message in messages:
            entry = message.handle
            left = self._open.get(entry, 1) - 1
            if left > 0:
                self._open[entry] = left
                continue
            self._open.pop(entry, None)
            if entry not in done:
                done.append(entry)
        return done

    def clear(self) -> None:
        self._open.clear()


class EntryPipeline:
    """The drainer's pipeline: events of events entries to ``events``, the rest to ``changes``."""

    def __init__(self, changes: Pipeline, events: Pipeline | None) -> None:
        self._changes = changes
        self._events = events

    def process(self, messages: Sequence[RawMessage]) -> Outcome:
        events = [m for m in messages if m.attributes.get(ENTRY_KIND) == EVENTS]
        if not events or self._events is None:
            return self._changes.process(messages)
        outcome = self._events.process(events)
        if len(events) < len(messages):
            rest = self._changes.process([m for m in messages if m.attributes.get(ENTRY_KIND) != EVENTS])
            outcome.ack += rest.ack
            outcome.reject += rest.reject
            outcome.nack += rest.nack
            outcome.changes += rest.changes
            outcome.reasons += rest.reasons
        return outcome
