"""Event Grid namespace pull delivery: ``mountsync produce azure-eventgrid``.

``EventGridPullSource`` implements ``mountsync.producers.base.EventSource`` with ``EventGridConsumerClient``:

- ``receive``: a background thread long-polls the service (up to 100 CloudEvents per call; the
  service holds an empty call 10..120 s) and keeps up to ``prefetch`` events ready, so the
  loop's short batch-window waits never block on that 10 s minimum: a batch is processed and
  acknowledged as soon as its window closes, even when the subscription ran dry right after a
  full receive. Prefetched events hold their locks (renewed like any held event) and are
  released on close. The call goes through the client's own pipeline (``send_request``: same
  auth, retries, endpoint) but skips the SDK's model round trip, so events reach the
  normalizer exactly as sent and one malformed CloudEvent is dead-lettered alone rather than
  failing every receive (a poison batch).
- ``ack`` = acknowledge, only after the changes are on Redis; ``nack`` = release with a delay
  (``--release-delay``: 0, 10, 60, 600 or 3600 s); ``reject`` = reject (the subscription's
  dead-letter destination), called only after our own dead-letter record exists.
- Locks: a background thread renews the locks of received, unsettled events every
  ``--renew-every`` seconds (keep it well under the subscription's lock duration, 60 s by
  default), so a slow batch is not redelivered to another consumer mid-flight.
- Partial failures (G25): every settle call answers 200 with ``failedLockTokens``; those are
  logged and returned (ack) — they never raise. Only a call that failed as a whole raises
  ``RetryableError`` (and only when nothing could be acknowledged).
- Poison messages: the subscription's own ``maxDeliveryCount`` + dead-letter destination apply.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import structlog
import typer

from mountsync.producers.leases import LeaseKeeper
from mountsync.shared.errors import BadInput, ConfigError, CredentialsRejected, RetryableError
from mountsync.shared.events import RawMessage, Source

log = structlog.get_logger("mountsync.producer.eventgrid")

MAX_EVENTS = 100
MIN_WAIT_S, MAX_WAIT_S = 10, 120
PREFETCH = 500
RELEASE_DELAYS = (0, 10, 60, 600, 3600)
TOKENS_PER_CALL = 100
API_VERSION = "2024-06-01"  # the namespace data-plane version azure-eventgrid 4.x speaks


def check_endpoint(endpoint: str) -> str:
    """The namespace endpoint must carry its scheme: without it the SDK builds a bad URL (G24)."""
    if not endpoint.startswith(("https://", "http://")):
        raise BadInput(f"--endpoint {endpoint!r} needs its scheme: https://NAMESPACE.REGION-1.eventgrid.azure.net")
    return endpoint.rstrip("/")


def _translate(exc: Exception, what: str) -> Exception:
    from azure.core import exceptions as az

    status = getattr(exc, "status_code", None)
    if isinstance(exc, az.ClientAuthenticationError) or status in (401, 403):
        return CredentialsRejected(f"Event Grid refused the credentials for {what}: {exc}")
    if isinstance(exc, az.ResourceNotFoundError) or status == 404:
        return ConfigError(f"Event Grid {what}: topic or subscription not found ({exc})")
    return RetryableError(f"Event Grid {what} failed: {str(exc).splitlines()[0][:300]}")


class EventGridPullSource:
    """Pull delivery from one namespace topic subscription."""

    name = Source.AZURE_EVENTGRID

    def __init__(
        self, client: Any, topic: str, subscription: str, *, release_delay: int = 10,
        renew_every_s: float | None = 20.0, prefetch: int = PREFETCH,
    ) -> None:  # fmt: skip
        if release_delay not in RELEASE_DELAYS:
            raise BadInput(f"release delay must be one of {RELEASE_DELAYS}, got {release_delay}")
        if prefetch < 1:
            raise BadInput(f"prefetch must be at least 1, got {prefetch}")
        self._client = client
        self._receive_path = (
            f"/topics/{quote(topic, safe='')}/eventsubscriptions/{quote(subscription, safe='')}:receive"
        )
        self._release_delay = release_delay
        self._leases = LeaseKeeper(self._renew, renew_every_s)
        self._prefetch = Prefetcher(self._fetch, prefetch, on_late=self._release_late)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from azure.core.exceptions import AzureError

        try:
            return fn(*args, **kwargs)
        except AzureError as exc:
            raise _translate(exc, what) from exc

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        """Up to ``max_messages`` prefetched events, waiting at most ``wait_s`` for the first."""
        return self._prefetch.take(max_messages, wait_s)

    def _fetch(self, room: int) -> list[RawMessage]:
        details = self._receive_raw(max(1, min(room, MAX_EVENTS)), MIN_WAIT_S)
        messages = [m for m in map(self._message, details) if m is not None]
        self._leases.hold(messages)
        return messages

    def _release_late(self, messages: list[RawMessage]) -> None:
        """Events received after close (or left in the buffer): back to the subscription now."""
        try:
            self._settle("release", messages, release_delay=0)
        except Exception as exc:  # a closed client, a failed call: the locks expire instead
            log.warning("could not release prefetched events; they return when their locks expire",
                        events=len(messages), error=str(exc))  # fmt: skip

    def _receive_raw(self, count: int, wait: int) -> list[Any]:
        """The receive call through the client's own pipeline (auth, retries), without the SDK's
        model round trip: events stay exactly as sent (7-digit times) and one malformed CloudEvent
        is dead-lettered on its own instead of failing the whole receive."""
        from azure.core.rest import HttpRequest

        request = HttpRequest(
            "POST", self._receive_path, headers={"Accept": "application/json"},
            params={"api-version": API_VERSION, "maxEvents": count, "maxWaitTime": wait},
        )  # fmt: skip
        response = self._call("receive", self._client.send_request, request)
        self._call("receive", response.raise_for_status)
        try:
            details = response.json().get("value") or []
        except (ValueError, AttributeError) as exc:
            raise RetryableError(f"Event Grid receive answered something that is not JSON: {exc}") from exc
        return details if isinstance(details, list) else []

    def _message(self, detail: Any) -> RawMessage | None:
        props = detail.get("brokerProperties") if isinstance(detail, dict) else None
        token = props.get("lockToken") if isinstance(props, dict) else None
        if not token or not isinstance(props, dict):
            log.error("received an event without a lock token; it cannot be settled", detail=str(detail)[:300])
            return None
        event = detail.get("event")
        count = int(props.get("deliveryCount") or 1)
        message_id = event.get("id") if isinstance(event, dict) else None
        return RawMessage(
            source=self.name, message_id=str(message_id or token),
            body=json.dumps(event, ensure_ascii=False).encode(),
            attributes={"deliveryCount": str(count)}, received_ns=time.time_ns(),
            handle=token, delivery_count=count,
        )  # fmt: skip

    def _settle(self, op: str, messages: Sequence[RawMessage], **kwargs: Any) -> list[RawMessage]:
        """Run ``op`` in chunks; the messages whose tokens failed (logged, never raised).

        ``RetryableError`` only when every call failed as a whole (nothing was settled).
        """
        self._leases.drop(messages)
        by_token = {m.handle: m for m in messages}
        tokens = list(by_token)
        failed: list[RawMessage] = []
        error: RetryableError | None = None
        answered = 0
        for start in range(0, len(tokens), TOKENS_PER_CALL):
            chunk = tokens[start : start + TOKENS_PER_CALL]
            try:
                result = self._call(op, getattr(self._client, op), lock_tokens=chunk, **kwargs)
            except RetryableError as exc:
                error = exc
                failed.extend(by_token[t] for t in chunk)
                continue
            answered += 1
            failed.extend(self._failed(op, result, by_token))
        if error is not None and answered == 0:
            raise error
        return failed

    def _failed(self, op: str, result: Any, by_token: dict[str, RawMessage]) -> list[RawMessage]:
        out = []
        for item in result.failed_lock_tokens or []:
            error = item.error
            log.warning(f"{op} failed for a lock token; the event will be redelivered",
                        code=getattr(error, "code", None), message=getattr(error, "message", None),
                        message_id=by_token[item.lock_token].message_id
                        if item.lock_token in by_token else None)  # fmt: skip
            if item.lock_token in by_token:
                out.append(by_token[item.lock_token])
        return out

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        if not messages:
            return []
        return self._settle("acknowledge", messages)

    def nack(self, messages: Sequence[RawMessage]) -> None:
        if messages:
            self._settle("release", messages, release_delay=self._release_delay)

    def reject(self, messages: Sequence[RawMessage]) -> None:
        if messages:
            self._settle("reject", messages)

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        self._renew(list(messages))

    def _renew(self, messages: list[RawMessage]) -> None:
        tokens = [m.handle for m in messages]
        for start in range(0, len(tokens), TOKENS_PER_CALL):
            chunk = tokens[start : start + TOKENS_PER_CALL]
            try:
                result = self._call("renew_locks", self._client.renew_locks, lock_tokens=chunk)
            except RetryableError as exc:
                log.warning("lock renewal failed; events may be redelivered", error=str(exc))
                continue
            lost = len(result.failed_lock_tokens or [])
            if lost:
                log.warning("locks lost; those events will be redelivered", tokens=lost)

    def close(self) -> None:
        self._prefetch.close()
        self._leases.close()
        self._client.close()


class Prefetcher:
    """Calls ``fetch(room)`` in a daemon thread while fewer than ``limit`` items wait; ``take``
    hands them out. A fetch error is raised by the next ``take`` that finds nothing waiting (the
    thread backs off and tries again). ``close`` stops the thread and gives what was fetched
    but not taken, and anything a last in-flight fetch brings, to ``on_late``."""

    def __init__(self, fetch: Callable[[int], list[Any]], limit: int, *, on_late: Callable[[list[Any]], None]) -> None:
        self._fetch, self._limit, self._on_late = fetch, limit, on_late
        self._ready: deque[Any] = deque()
        self._error: Exception | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eventgrid-receive", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            with self._cond:
                while len(self._ready) >= self._limit and not self._stop.is_set():
                    self._cond.wait(0.5)
                room = self._limit - len(self._ready)
            if self._stop.is_set():
                return
            try:
                got = self._fetch(room)
            except Exception as exc:  # reported to the loop by take(); never kill the thread
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.2
            with self._cond:
                self._error = None  # fetching works again: an older failure is not news
                if not self._stop.is_set():
                    self._ready.extend(got)
                    self._cond.notify_all()
                    continue
            if got:
                self._on_late(got)

    def take(self, limit: int, wait_s: float) -> list[Any]:
        deadline = time.monotonic() + max(0.0, wait_s)
        with self._cond:
            while not self._ready and self._error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            if not self._ready:
                error, self._error = self._error, None
                assert error is not None
                raise error
            taken = [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]
            self._cond.notify_all()
        return taken

    def close(self) -> None:
        with self._cond:
            self._stop.set()
            left = list(self._ready)
            self._ready.clear()
            self._cond.notify_all()
        if left:
            self._on_late(left)
        self._thread.join(timeout=1.0)  # a long poll in flight ends with the client's close


def make_client(endpoint: str, topic: str, subscription: str, credential: Any) -> Any:
    from azure.eventgrid import EventGridConsumerClient

    return EventGridConsumerClient(
        check_endpoint(endpoint), credential, namespace_topic=topic, subscription=subscription
    )


def eventgrid_credential(environ: Any, credentials: str | None) -> Any:
    """``AzureKeyCredential`` from AZURE_EVENTGRID_KEY[_<NAME>], else DefaultAzureCredential."""
    from azure.core.credentials import AzureKeyCredential

    from mountsync.shared.storage.azure_auth import env_suffix

    if credentials:
        var = f"AZURE_EVENTGRID_KEY_{env_suffix(credentials)}"
        if not environ.get(var):
            raise ConfigError(f"credential set {credentials!r} is not defined: set {var}")
        return AzureKeyCredential(environ[var])
    if environ.get("AZURE_EVENTGRID_KEY"):
        return AzureKeyCredential(environ["AZURE_EVENTGRID_KEY"])
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:
        raise ConfigError("set AZURE_EVENTGRID_KEY or install azure-identity") from exc
    return DefaultAzureCredential()


ACCOUNT_OPTION = typer.Option(
    None, "--account", help="Storage account(s) served (repeatable); others are dead-lettered."
)


def register(produce_app: typer.Typer) -> None:
    @produce_app.command(Source.AZURE_EVENTGRID.value)
    def produce_azure_eventgrid(
        ctx: typer.Context,
        endpoint: str = typer.Option(..., "--endpoint", help="https://NAMESPACE.REGION-1.eventgrid.azure.net"),
        topic: str = typer.Option(..., "--topic", help="Namespace topic name."),
        subscription: str = typer.Option(..., "--subscription", help="Event subscription (pull)."),
        credentials: str = typer.Option("", "--credentials", help="Named key: AZURE_EVENTGRID_KEY_<NAME>."),
        account: list[str] | None = ACCOUNT_OPTION,
        release_delay: int = typer.Option(10, "--release-delay", help="Seconds before a released event returns."),
        renew_every: float = typer.Option(20.0, "--renew-every", help="Renew held locks this often (s)."),
        prefetch: int = typer.Option(PREFETCH, "--prefetch", min=1, help="Events received ahead of the loop."),
    ) -> None:
        """Pull blob events from an Event Grid namespace subscription (key: AZURE_EVENTGRID_KEY)."""
        import os

        from mountsync.producers.azure_common import DirectoryAwareSource, celery_reindex_sender
        from mountsync.producers.cli import run_producer
        from mountsync.producers.normalize.azure import make_normalizer
        from mountsync.producers.normalize.azure_enrich import AzureMounts, ContentEnricher

        check_endpoint(endpoint)
        credential = eventgrid_credential(os.environ, credentials or None)

        def build(runtime: Any) -> tuple[Any, Any]:
            client = make_client(endpoint, topic, subscription, credential)
            pull = EventGridPullSource(
                client,
                topic,
                subscription,
                release_delay=release_delay,
                renew_every_s=renew_every,
                prefetch=prefetch,
            )
            mounts = AzureMounts(runtime.pool)
            source = DirectoryAwareSource(pull, mounts, celery_reindex_sender(runtime))
            pipeline = runtime.pipeline(make_normalizer(account or None), enrich=ContentEnricher(mounts))
            return source, pipeline

        run_producer(ctx, build)
