"""The inbox: a Redis stream between a push endpoint and the ``changes`` queue.

A push endpoint (``POST /eventgrid``) appends a request to the inbox in one Redis command and
answers 2xx: what it accepted is durably on Redis, which is where rule 1 draws the line. An
entry holds either the request's body as delivered, whose events the drainer normalizes
(``inbox_events.py``), or the changes the endpoint normalized itself (``Inbox.enqueue``).
Publishing a Celery task per request instead costs about 1.7 ms (two kombu messages: the task
and Flower's task-sent event), and it makes the worker pay a whole task for each request, which
under Event Grid's default delivery is one event.

A drainer (a thread of ``mountsync serve``, running ``run_source`` on ``InboxSource``) reads
entries through a consumer group, enriches the changes of many requests together, sends them as
apply tasks of up to ``batch_size`` changes, and only then acknowledges and deletes the entries.

- **Crash:** an entry read but not acknowledged stays in the group's pending list. A drainer
  reads its own pending entries first when it starts and after a failed batch, and takes over
  entries another drainer left idle for ``claim_idle_s`` (``XAUTOCLAIM``). Applying twice is
  harmless, so at-least-once is enough.
- **Bounded:** the append is refused (the endpoint answers 503 and Event Grid retries later)
  while the inbox holds ``inbox_max_depth`` entries. The check and the append are one Lua call.
- **Backpressure:** the drainer pauses while the ``changes`` queue is too deep (``run_source``);
  the inbox then fills, and the 503s leave the backlog with the cloud (rule 6).
- **Poison:** an entry of changes delivered ``DELIVERY_LIMIT`` times, or one that cannot be
  decoded, is dead-lettered as ``inbox:<source>`` with its changes; an event of an entry of
  events, as ``<source>`` with its bytes. ``mountsync deadletters replay`` sends either again.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import redis as redis_lib
import structlog

from mountsync.producers.base import EventSource
from mountsync.producers.inbox_events import (
    EntryPipeline,
    EntryTally,
    EventEntries,
    Split,
    event_messages,
    events_entry,
    is_events_entry,
)
from mountsync.producers.pipeline import Pipeline, with_delivery_limit
from mountsync.shared import metrics
from mountsync.shared.config import Settings
from mountsync.shared.errors import InvalidEvent, ServiceUnavailable
from mountsync.shared.events import ObjectChange, RawMessage, Source
from mountsync.shared.lua import LuaScript
from mountsync.shared.queues import inbox_key

log = structlog.get_logger("mountsync.inbox")

GROUP = "drain"
FIELD = b"changes"
DELIVERY_LIMIT = 20  # with the loop's backoff (capped at 30 s) about four minutes of failures
READ_PACE_S = 0.02  # after a read that did not fill the batch, let entries gather this long
CLAIM_IDLE_S = 60.0  # entries another drainer read and left this long are taken over (it died)
CLAIM_CHECK_S = 5.0  # how often to look for such entries: a takeover comes CLAIM_IDLE_S + this late at most
LETTER_PREFIX = "inbox:"

# Refuse instead of growing without bound; one round trip for the check and the append.
_APPEND = LuaScript("""
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then
  return false
end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
""")


def letter_source(source: Source) -> str:
    """The dead-letter ``source`` of an inbox entry of ``source`` (replay knows it)."""
    return f"{LETTER_PREFIX}{source.value}"


def _redis_error(what: str, exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(f"cannot {what} the inbox on Redis: {exc}")


class Inbox:
    """The append side: the ``queue`` of the endpoint's pipeline (``enqueue`` = one ``XADD``)."""

    def __init__(self, client: redis_lib.Redis, settings: Settings, source: Source) -> None:
        self.key = inbox_key(settings.redis_prefix, source)
        self.source = source
        self.max_depth = settings.inbox_max_depth
        self._client = client

    def enqueue(self, changes: Sequence[ObjectChange]) -> None:
        if not changes:
            return
        self._add({FIELD: orjson.dumps([c.to_row() for c in changes])})  # a tenth of json.dumps's CPU

    def append_events(self, body: bytes, attributes: Mapping[str, str]) -> None:
        """Queue a delivered body of events as it is; the drainer normalizes (``inbox_events``)."""
        self._add(events_entry(body, attributes))

    def _add(self, fields: Mapping[bytes, bytes]) -> None:
        args: list[Any] = [self.max_depth]
        for name, value in fields.items():
            args += (name, value)
        try:
            added = _APPEND(self._client, [self.key], args)
        except redis_lib.RedisError as exc:
            raise _redis_error("append to", exc) from exc
        if not added:
            metrics.INBOX_REFUSED.labels(self.source.value).inc()
            raise ServiceUnavailable(
                f"inbox {self.key} holds {self.max_depth} entries (MOUNTSYNC_INBOX_MAX_DEPTH); "
                "the drainer is behind, retry later"
            )


def decode_entry(raw: RawMessage) -> list[ObjectChange]:
    """The changes one inbox entry holds (written by ``Inbox.enqueue``)."""
    try:
        items = orjson.loads(raw.body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"inbox entry is not JSON: {exc}") from exc
    if not isinstance(items, list):
        raise InvalidEvent("inbox entry is not a JSON list of changes")
    return [ObjectChange.from_wire(item) for item in items]


def consumer_name(suffix: str = "") -> str:
    """Stable across restarts of the same server (its own pending entries come back at once)."""
    return f"{socket.gethostname()}:{suffix or os.getpid()}"


class InboxSource:
    """``EventSource`` over the inbox stream: one ``RawMessage`` per entry, settled per entry."""

    def __init__(
        self,
        client: redis_lib.Redis,
        settings: Settings,
        source: Source,
        *,
        consumer: str,
        claim_idle_s: float = CLAIM_IDLE_S,
        split_events: Split | None = None,
    ) -> None:
        self.name = source
        self.key = inbox_key(settings.redis_prefix, source)
        self.consumer = consumer
        self._client = client
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._pending_from: str | bytes | None = "0"  # first: what this consumer held when it last stopped
        self._retry: list[RawMessage] = []  # nacked: sent again without a new delivery (no poison count)
        self._claim_from: str | bytes = "0-0"
        self._next_claim = 0.0
        self._group_ready = False
        self._short_read_at = 0.0
        self._split = split_events
        self._ready: list[RawMessage] = []  # events of entries read but not yet handed out
        self._tally = EntryTally()
        # Messages per entry in the last read (an entry of events holds many); unknown at first,
        # so a source of events entries starts with one entry.
        self._fanout: int | None = None if split_events is not None else 1

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            self._client.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis_lib.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        try:
            if self._retry:
                retry, self._retry = self._retry[:max_messages], self._retry[max_messages:]
                return retry
            if not self._ready:
                self._ready = self._read(max_messages, wait_s)
            ready, self._ready = self._ready[:max_messages], self._ready[max_messages:]
            return ready
        except redis_lib.RedisError as exc:
            self._group_ready = False  # the stream may have been deleted (FLUSHALL): create it again
            raise _redis_error("read", exc) from exc

    def _read(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        """Messages of the next entries: this consumer's pending ones, abandoned ones, new ones.
        Entries of many events are read a few at a time, so about ``max_messages`` are held."""
        count = 1 if self._fanout is None else max(1, max_messages // self._fanout)
        self._ensure_group()
        entries = self._own_pending(count) or self._claim(count)
        if entries:
            return self._messages(entries, redelivered=True)
        self._pace(wait_s)
        reply: Any = self._client.xreadgroup(GROUP, self.consumer, {self.key: ">"}, count=count,
                                             block=max(1, int(wait_s * 1000)))  # fmt: skip
        entries = list(reply[0][1]) if reply else []
        self._short_read_at = time.monotonic() if 0 < len(entries) < count else 0.0
        return self._messages(entries, redelivered=False)

    def _pace(self, wait_s: float) -> None:
        """After a short read, let entries gather a moment (not one Redis read per request)."""
        if self._short_read_at:
            pause = min(wait_s, self._short_read_at + READ_PACE_S - time.monotonic())
            if pause > 0:
                time.sleep(pause)

    def _own_pending(self, count: int) -> list[tuple[bytes, Any]]:
        """Entries this consumer read before and did not settle, oldest first, each once per pass."""
        if self._pending_from is None:
            return []
        reply: Any = self._client.xreadgroup(GROUP, self.consumer, {self.key: self._pending_from}, count=count)
        entries = list(reply[0][1]) if reply else []
        self._pending_from = entries[-1][0] if len(entries) == count else None
        return entries

    def _claim(self, count: int) -> list[tuple[bytes, Any]]:
        """Entries other drainers read and left idle for ``claim_idle_s`` (they died)."""
        if time.monotonic() < self._next_claim:
            return []
        reply: Any = self._client.xautoclaim(self.key, GROUP, self.consumer, self._claim_idle_ms, self._claim_from,
                                        count=count)  # fmt: skip
        self._claim_from = reply[0]
        if self._claim_from in (b"0-0", "0-0"):
            self._next_claim = time.monotonic() + min(CLAIM_CHECK_S, self._claim_idle_ms / 2000)
        if len(reply) > 2 and reply[2]:  # deleted while pending (settled by an earlier run): drop
            self._client.xack(self.key, GROUP, *reply[2])
        claimed = list(reply[1])
        if claimed:
            log.warning("took over inbox entries another drainer left", inbox=self.key, entries=len(claimed))
        return claimed

    def _messages(self, entries: list[tuple[bytes, Any]], *, redelivered: bool) -> list[RawMessage]:
        gone = [entry_id for entry_id, fields in entries if not fields]
        if gone:  # deleted after being read (acked by an earlier run): settle and skip
            self._client.xack(self.key, GROUP, *gone)
        live = [(entry_id, fields) for entry_id, fields in entries if fields]
        counts = self._delivery_counts([entry_id for entry_id, _ in live]) if redelivered and live else {}
        now = time.time_ns()
        messages: list[RawMessage] = []
        for entry_id, fields in live:
            delivery = counts.get(entry_id, 1)
            if is_events_entry(fields):
                events = event_messages(self.name, self.key, entry_id, fields, delivery, self._split)
                self._tally.opened(entry_id, len(events))
                messages += events
            else:
                messages.append(RawMessage(self.name, entry_id.decode(), fields.get(FIELD, b""), {"inbox": self.key},
                                           now, handle=entry_id, delivery_count=delivery))  # fmt: skip
        if live:
            self._fanout = max(1, len(messages) // len(live))
        return messages

    def _delivery_counts(self, ids: list[bytes]) -> dict[bytes, int]:
        rows: Any = self._client.xpending_range(self.key, GROUP, min=ids[0], max=ids[-1], count=len(ids) * 2,
                                           consumername=self.consumer)  # fmt: skip
        return {row["message_id"]: int(row["times_delivered"]) for row in rows}

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        self._settle(messages)
        return []

    def reject(self, messages: Sequence[RawMessage]) -> None:
        self._settle(messages)  # dead-lettered with the reason and the changes

    def _settle(self, messages: Sequence[RawMessage]) -> None:
        ids = self._tally.settled(messages)  # an entry of events: once every event is settled
        if not ids:
            return
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.xack(self.key, GROUP, *ids)
                pipe.xdel(self.key, *ids)
                pipe.execute()
        except redis_lib.RedisError as exc:
            raise _redis_error("acknowledge entries of", exc) from exc

    def nack(self, messages: Sequence[RawMessage]) -> None:
        """Retried after the loop's backoff. A transient failure (Redis, PostgreSQL, a stat) is not a
        delivery: only a crash or a takeover raises the count the poison limit looks at."""
        self._retry.extend(messages)

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        if messages:  # reset the idle time so no other drainer takes them over
            ids = list(dict.fromkeys(m.handle for m in messages))
            self._client.xclaim(self.key, GROUP, self.consumer, 0, ids, justid=True)

    def close(self) -> None:
        """Entries read and not acknowledged stay pending; the next run reads them again first."""
        self._retry.clear()
        self._ready.clear()
        self._tally.clear()
        self._pending_from = "0"


class Drainer:
    """``run_source`` over an ``InboxSource`` in a daemon thread, until ``stop``.

    ``events`` (from the source registry) reads entries of raw events: they are normalized here
    and dead-lettered as the source itself; entries of changes dead-letter as ``inbox:<source>``.
    """

    def __init__(self, runtime: Any, source: Source, *, enrich: Any = None, consumer: str = "",
                 events: EventEntries | None = None) -> None:  # fmt: skip
        settings = runtime.settings
        split = events.split if events is not None else None
        inbox = InboxSource(runtime.redis, settings, source, consumer=consumer or consumer_name(), split_events=split)
        self.inbox = inbox
        self.source: EventSource = inbox if events is None or events.wrap_source is None else events.wrap_source(inbox)
        changes = Pipeline(with_delivery_limit(decode_entry, DELIVERY_LIMIT), runtime.queue, runtime.deadletters,
                           enrich=enrich, batch_size=settings.batch_size, name=letter_source(source))  # fmt: skip
        raw = None
        if events is not None:
            raw = Pipeline(with_delivery_limit(events.normalize, DELIVERY_LIMIT), runtime.queue, runtime.deadletters,
                           enrich=enrich, batch_size=settings.batch_size, letter_body=events.letter_body)  # fmt: skip
        self.pipeline = EntryPipeline(changes, raw)
        self._runtime = runtime
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Drainer:
        self._thread = threading.Thread(target=self.run, name=f"drain-{self.inbox.key}", daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Drain in this thread until ``stop`` (a thread of ``start``, or a child process's main)."""
        from mountsync.producers.loop import run_source

        log.info("draining inbox", inbox=self.inbox.key, consumer=self.inbox.consumer)
        while not self._stop.is_set():
            try:
                run_source(self.source, self.pipeline, self._runtime.settings, self._stop,
                           depth=self._runtime.queue.depth)  # fmt: skip
            except Exception:  # a bug must not stop draining for good: entries stay pending meanwhile
                log.exception("inbox drainer failed; starting again in 5 s", inbox=self.inbox.key)
                self._stop.wait(5)

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
