"""Event Grid push delivery: ``POST /eventgrid`` and ``OPTIONS /eventgrid`` in ``mountsync serve``.

- Event Grid schema validation: a ``SubscriptionValidationEvent`` is answered with
  ``{"validationResponse": code}`` (HTTP 200). CloudEvents abuse protection: ``OPTIONS`` with
  ``WebHook-Request-Origin`` is answered with ``WebHook-Allowed-Origin`` (and ``-Rate: *``).
- Bodies: Event Grid schema (always an array) or CloudEvents (one object, or an array with
  ``application/cloudevents-batch+json``); every event becomes one ``RawMessage`` so one bad event
  is dead-lettered without holding back the others. An event's message holds its bytes sliced
  from the body as delivered (``split_event_bodies``) and its parsed ``payload``: the body is
  parsed once, and the dead-letter store keeps exactly what Event Grid sent.
- Auth: when ``MOUNTSYNC_EVENTGRID_SECRET`` is set, each request must carry it as the query
  parameter ``key`` (``https://host/eventgrid?key=SECRET``, Event Grid keeps the query) or the
  header ``X-Mountsync-Key`` (a delivery attribute). Otherwise 401, nothing recorded.
- Two paths. When every event of the body has a sound envelope (an object, a schema, a type the
  normalizer knows: ``plain_envelope``), the body is appended to the Event Grid inbox as
  delivered, in one Redis call, and answered 200: the events are durably on Redis. The drainer
  then normalizes them, queues reindexes for directory events and dead-letters any event whose
  content is wrong (a URL without a container, a size that is not a number), each on its own
  (``producers/inbox_events.py``). Otherwise the body is normalized here, event by event, as
  before: the valid changes go to the inbox, the rest to the dead-letter store, and the answer
  is 400 with the reasons (Event Grid does not retry a 400; its own dead-lettering, if
  configured, keeps a copy of the batch).
- 503 when the append failed or the inbox is full: Event Grid retries the whole batch, and
  applying twice is harmless.
- The inbox (``producers/inbox.py``) is drained by ``serve``'s drainer (a child process, or a
  thread with ``MOUNTSYNC_INBOX_DRAINER=thread``): it stats what renames
  and tier changes left out (``ContentEnricher``, the source registry's enricher) and sends
  the changes of many requests as one apply task. A request therefore costs one Redis call
  instead of a Celery publish, and the worker applies Event Grid's one-event requests in batches.
- ``MOUNTSYNC_EVENTGRID_ACCOUNTS`` (comma-separated) limits the storage accounts accepted.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from mountsync.producers.azure_common import DirectoryAwareSource, celery_reindex_sender, request_directory_reindex
from mountsync.producers.base import EventSource
from mountsync.producers.http.push import PushAnswer, PushRequest, answer
from mountsync.producers.inbox import Inbox
from mountsync.producers.inbox_events import EventEntries
from mountsync.producers.normalize.azure import (
    make_normalizer,
    plain_envelope,
    split_event_bodies,
    split_events,
    validation_code,
)
from mountsync.producers.normalize.azure_enrich import AzureMounts
from mountsync.producers.pipeline import Pipeline
from mountsync.shared import metrics
from mountsync.shared.errors import InvalidEvent, RetryableError
from mountsync.shared.events import RawMessage, Source

log = structlog.get_logger("mountsync.serve.eventgrid")

SECRET_SETTING = "MOUNTSYNC_EVENTGRID_SECRET"
ACCOUNTS_SETTING = "MOUNTSYNC_EVENTGRID_ACCOUNTS"
KEY_HEADER = "X-Mountsync-Key"
ATTRIBUTE_HEADERS = ("aeg-event-type", "aeg-subscription-name", "aeg-delivery-count", "Content-Type")


@dataclass
class _State:
    pipeline: Any
    mounts: AzureMounts
    send_reindex: Any
    append_events: Callable[[bytes, Mapping[str, str]], None]  # Inbox.append_events


def _authorized(request: PushRequest, settings: Any) -> bool:
    secret = settings.extra.get(SECRET_SETTING, "")
    if not secret:
        return True
    given = request.query.get("key") or request.headers.get(KEY_HEADER) or ""
    return hmac.compare_digest(given.encode(), secret.encode())


def _state(ctx: Any) -> _State:
    state: _State | None = getattr(ctx, "_azure_webhook", None)
    if state is None:
        runtime = ctx.runtime
        inbox = Inbox(runtime.redis, runtime.settings, Source.AZURE_EVENTGRID)
        pipeline = Pipeline(make_normalizer(_accounts(ctx.settings)), inbox, runtime.deadletters,
                            batch_size=runtime.settings.batch_size)  # fmt: skip
        state = _State(pipeline, AzureMounts(runtime.pool), celery_reindex_sender(runtime), inbox.append_events)
        ctx._azure_webhook = state
    ctx.start_drainer(Source.AZURE_EVENTGRID)  # a no-op while it runs; restarts a drainer that died
    return state


def _accounts(settings: Any) -> list[str]:
    return [a.strip() for a in settings.extra.get(ACCOUNTS_SETTING, "").split(",")]


def event_entries(runtime: Any, settings: Any) -> EventEntries:
    """How the Event Grid drainer reads the bodies ``handle`` queued as delivered."""

    def with_directories(inbox: EventSource) -> EventSource:
        return DirectoryAwareSource(inbox, AzureMounts(runtime.pool), celery_reindex_sender(runtime))

    return EventEntries(split_events, split_event_bodies, make_normalizer(_accounts(settings)), with_directories)


def _abuse_protection(request: PushRequest) -> PushAnswer:
    origin = request.headers.get("WebHook-Request-Origin")
    if not origin:
        return answer({"error": "OPTIONS without WebHook-Request-Origin"}, 400)
    headers = {"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*", "Allow": "POST, OPTIONS"}
    return PushAnswer(200, None, headers)


def _attributes(request: PushRequest) -> dict[str, str]:
    """The transport headers kept with the events (one lookup each: ``Headers`` scans a list)."""
    return {name: value for name in ATTRIBUTE_HEADERS if (value := request.headers.get(name)) is not None}


def _messages(request: PushRequest, body: bytes, events: list[tuple[dict[str, Any], bytes]] | None) -> list[RawMessage]:
    """One message per event; a body that is not events at all stays one (dead-lettered) message.

    A body of one event is that event's message as it is (the normalizer reads arrays too); the
    events of a batch carry their own bytes as delivered, so each can be dead-lettered on its own.
    Every event goes with its parsed ``payload``: the normalizer does not parse it again.
    """
    attributes = _attributes(request)
    try:
        retries = int(request.headers.get("aeg-delivery-count") or 0)
    except ValueError:
        retries = 0
    now = time.time_ns()
    if events is None:
        return [RawMessage(Source.AZURE_EVENTGRID, f"webhook-{now}", body, attributes, now, delivery_count=retries + 1)]
    if len(events) == 1:
        event = events[0][0]
        return [RawMessage(Source.AZURE_EVENTGRID, str(event.get("id") or f"webhook-{now}"), body, attributes, now,
                           delivery_count=retries + 1, payload=event)]  # fmt: skip
    return [
        RawMessage(Source.AZURE_EVENTGRID, str(event.get("id") or f"webhook-{now}-{i}"), text, attributes, now,
                   delivery_count=retries + 1, payload=event)
        for i, (event, text) in enumerate(events)
    ]  # fmt: skip


def _validation(events: list[dict[str, Any]]) -> PushAnswer | None:
    try:
        code = validation_code(events)
    except InvalidEvent:
        return None  # malformed: the pipeline dead-letters it
    if code is None:
        return None
    log.info("Event Grid subscription validated")
    return answer({"validationResponse": code})


def handle(request: PushRequest, ctx: Any) -> PushAnswer:
    """``POST``/``OPTIONS`` ``/eventgrid``."""
    if not _authorized(request, ctx.settings):
        log.warning("Event Grid webhook: request without the right key refused",
                    remote=request.remote)  # fmt: skip
        return answer({"error": "unauthorized"}, 401)
    if request.method == "OPTIONS":
        return _abuse_protection(request)
    body = request.body
    try:
        events: list[dict[str, Any]] | None = split_events(body)
    except InvalidEvent:
        events = None  # not events at all: the pipeline dead-letters the body with the reason
    validated = _validation(events) if events is not None else None
    if validated is not None:
        return validated
    if request.headers.get("aeg-event-type") == "SubscriptionDeletion":
        return answer({"status": "subscription deleted"})
    state = _state(ctx)
    if events is not None and all(plain_envelope(event) for event in events):
        return _append(state, request, body, len(events))
    try:
        pairs: list[tuple[dict[str, Any], bytes]] | None = split_event_bodies(body)
    except InvalidEvent:
        pairs = None
    return _deliver(state, _messages(request, body, pairs))


def _append(state: _State, request: PushRequest, body: bytes, events: int) -> PushAnswer:
    """Queue the body as delivered; the drainer normalizes its events."""
    attributes = _attributes(request)
    try:
        state.append_events(body, attributes)
    except (RetryableError, OSError) as exc:
        metrics.ENQUEUE_FAILURES.labels(Source.AZURE_EVENTGRID.value).inc()
        log.error("cannot queue an Event Grid delivery; Event Grid will retry it", events=events, error=str(exc))
        return answer({"error": "could not queue the events; retry later", "queued": 0}, 503)
    return answer({"queued": events})


def _deliver(state: _State, messages: list[RawMessage]) -> PushAnswer:
    outcome = state.pipeline.process(messages)
    if outcome.nack:
        return answer({"error": "could not queue the events; retry later", "queued": 0}, 503)
    held = request_directory_reindex(outcome.ack, state.mounts, state.send_reindex)
    if held:
        return answer({"error": "could not queue a reindex for a directory event; retry later"}, 503)
    if outcome.reject:
        return answer({"queued": outcome.changes, "dead_lettered": len(outcome.reject),
                      "reasons": outcome.reasons[:10]}, 400)  # fmt: skip
    return answer({"queued": outcome.changes})
