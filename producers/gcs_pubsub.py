"""GCS notifications through a Pub/Sub subscription (streaming pull): ``mountsync produce gcs-pubsub``.

The SDK's streaming pull delivers messages to a callback on its own threads; the callback only
queues them, and ``receive`` hands them to the shared loop, which acks after the changes are on
Redis. Flow control bounds what is outstanding (received, not yet acked), so a slow Redis or a
paused loop holds the backlog in Pub/Sub, not in memory; the SDK keeps extending leases of
outstanding messages. With exactly-once delivery on, acks wait for the server's confirmation
(``ack_with_response``) and an ack that fails is reported back (the message will come again).

Shutdown (SIGTERM): the loop finishes and acks the batch in hand, then ``close`` cancels the
stream (the SDK nacks what it had not dispatched), waits for its threads and, once the server has
had a moment to see the stream go, hands back (modack 0) what was received but not settled.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import structlog
import typer

from mountsync.shared.errors import BadInput, ConfigError, CredentialsRejected, RetryableError
from mountsync.shared.events import RawMessage, Source

log = structlog.get_logger("mountsync.producer.gcs")

SUBSCRIPTION_RE = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")
ACK_TIMEOUT_S = 60.0
SHUTDOWN_TIMEOUT_S = 30.0
# The server learns that a cancelled stream is gone a moment after the client does; messages handed
# back before then are redelivered into the dead stream and wait out its ack deadline (60 s by
# default). On a warm emulator 0.05 s after the SDK's shutdown was too soon once in five, 0.2 s
# never; a freshly started one misrouted even after 0.5 s. So this narrows the window, no more:
# the worst case stays the stream's ack deadline, never the subscription's.
STREAM_END_GRACE_S = 0.5


def subscription_path(text: str) -> str:
    if not SUBSCRIPTION_RE.match(text):
        raise BadInput(f"{text!r} is not a subscription name; write projects/PROJECT/subscriptions/NAME")
    return text


def make_subscriber(emulator_host: str | None = None) -> Any:
    """A SubscriberClient; with ``emulator_host`` bound to it (else PUBSUB_EMULATOR_HOST/ADC)."""
    from google.cloud import pubsub_v1

    if not emulator_host:
        return pubsub_v1.SubscriberClient()
    import grpc
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    transport = SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator_host))
    return pubsub_v1.SubscriberClient(transport=transport)


def _stream_error(exc: BaseException, subscription: str) -> Exception:
    from google.api_core import exceptions as api

    if isinstance(exc, api.NotFound):
        return ConfigError(f"Pub/Sub subscription {subscription} does not exist")
    if isinstance(exc, (api.PermissionDenied, api.Unauthenticated)):
        return CredentialsRejected(f"Pub/Sub refused access to {subscription}: {exc}")
    return RetryableError(f"Pub/Sub stream for {subscription} failed: {exc}")


class PubSubSource:
    """``EventSource`` over ``SubscriberClient.subscribe`` with flow control."""

    name = Source.GCS_PUBSUB

    def __init__(
        self,
        subscription: str,
        *,
        subscriber: Any = None,
        max_messages: int = 1000,
        max_bytes: int = 100 * 1024 * 1024,
        exactly_once: bool | None = None,
        max_lease_extension_s: int = 0,
        ack_timeout_s: float = ACK_TIMEOUT_S,
    ) -> None:
        self.subscription = subscription_path(subscription)
        self._subscriber = subscriber if subscriber is not None else make_subscriber()
        # max_lease_extension_s caps each lease extension (and the stream's ack deadline): how
        # long a crashed consumer's messages stay leased. 0 keeps the SDK default (60 s).
        self._flow = (max_messages, max_bytes, max_lease_extension_s)
        self._ack_timeout_s = ack_timeout_s
        self._queue: queue.Queue[Any] = queue.Queue()
        # Handed to the loop, not yet settled: nacked at close so nothing waits out a lease.
        self._unsettled: dict[int, Any] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.exactly_once = self._detect_exactly_once() if exactly_once is None else exactly_once
        self._future = self._subscribe()

    def _detect_exactly_once(self) -> bool:
        from google.api_core import exceptions as api

        try:
            found = self._subscriber.get_subscription(subscription=self.subscription)
        except api.NotFound as exc:
            raise ConfigError(f"Pub/Sub subscription {self.subscription} does not exist") from exc
        except api.GoogleAPICallError as exc:
            # Consumers often lack pubsub.subscriptions.get; confirmed acks are always safe.
            log.warning("cannot read the subscription; acks will wait for confirmation",
                        subscription=self.subscription, error=str(exc))  # fmt: skip
            return True
        return bool(found.enable_exactly_once_delivery)

    def _subscribe(self) -> Any:
        from google.cloud import pubsub_v1

        max_messages, max_bytes, max_extension = self._flow
        flow = pubsub_v1.types.FlowControl(
            max_messages=max_messages, max_bytes=max_bytes,
            max_duration_per_lease_extension=max_extension,
        )  # fmt: skip
        return self._subscriber.subscribe(
            self.subscription, self._on_message, flow_control=flow,
            await_callbacks_on_shutdown=True,
        )  # fmt: skip

    def _on_message(self, message: Any) -> None:
        self._queue.put(message)  # held until the loop settles it, or handed back at close

    def _check_stream(self) -> None:
        if not self._future.done() or self._closed:
            return
        try:
            exc = self._future.exception(timeout=0)
        except Exception as cancelled:  # CancelledError
            exc = cancelled
        error = _stream_error(exc, self.subscription) if exc else RetryableError("stream ended")
        if isinstance(error, RetryableError):
            log.warning("Pub/Sub stream ended; reopening", error=str(error))
            self._future = self._subscribe()
        raise error

    # -- EventSource --------------------------------------------------------------------------
    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        self._check_stream()
        try:
            first = self._queue.get(timeout=max(wait_s, 0.01))
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < max_messages:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        now = time.time_ns()
        with self._lock:
            self._unsettled.update((id(message), message) for message in batch)
        return [self._raw(message, now) for message in batch]

    def _settled(self, messages: Sequence[RawMessage]) -> None:
        with self._lock:
            for raw in messages:
                self._unsettled.pop(id(raw.handle), None)

    def _raw(self, message: Any, received_ns: int) -> RawMessage:
        return RawMessage(
            source=Source.GCS_PUBSUB, message_id=str(message.message_id), body=bytes(message.data),
            attributes=dict(message.attributes), received_ns=received_ns, handle=message,
            delivery_count=message.delivery_attempt or 1,
        )  # fmt: skip

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        self._settled(messages)
        if not self.exactly_once:
            for raw in messages:
                raw.handle.ack()  # best effort; a lost ack is a redelivery, applied idempotently
            return []
        pending = [(raw, raw.handle.ack_with_response()) for raw in messages]
        failed: list[RawMessage] = []
        for raw, future in pending:
            try:
                future.result(timeout=self._ack_timeout_s)
            except (FutureTimeout, Exception) as exc:
                code = getattr(exc, "error_code", type(exc).__name__)
                log.warning("ack not confirmed; message may be redelivered",
                            message_id=raw.message_id, error=str(code))  # fmt: skip
                failed.append(raw)
        return failed

    def nack(self, messages: Sequence[RawMessage]) -> None:
        self._settled(messages)
        for raw in messages:
            raw.handle.nack()

    def reject(self, messages: Sequence[RawMessage]) -> None:
        self.ack(messages)  # called only after the message is recorded as a dead letter

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        return None  # the SDK's leaser extends outstanding messages itself

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._future.cancel()  # stop pulling; the SDK nacks what it had not dispatched
        try:
            self._future.result(timeout=SHUTDOWN_TIMEOUT_S)
        except Exception as exc:  # CancelledError is the normal outcome
            if type(exc).__name__ != "CancelledError":
                log.warning("Pub/Sub stream ended with an error at shutdown", error=str(exc))
        if self._holds_messages():
            time.sleep(STREAM_END_GRACE_S)
        self._return_unsettled()
        self._subscriber.close()

    def _holds_messages(self) -> bool:
        with self._lock:
            return bool(self._unsettled) or not self._queue.empty()

    def _return_unsettled(self) -> None:
        """Hand back what we hold but did not settle (modack 0), once the stream is closed.

        Doing it before the stream is closed lets the server redeliver the messages into this
        very stream while it shuts down, where they would sit until their lease expires.
        """
        with self._lock:
            held, self._unsettled = list(self._unsettled.values()), {}
        while True:
            try:
                held.append(self._queue.get_nowait())
            except queue.Empty:
                break
        ack_ids = [message.ack_id for message in held]
        for start in range(0, len(ack_ids), 1000):
            try:
                self._subscriber.modify_ack_deadline(
                    request={"subscription": self.subscription,
                             "ack_ids": ack_ids[start : start + 1000], "ack_deadline_seconds": 0}
                )  # fmt: skip
            except Exception as exc:
                log.warning("could not hand messages back; they return when their lease ends",
                            count=len(ack_ids[start : start + 1000]), error=str(exc))  # fmt: skip


def register(produce_app: typer.Typer) -> None:
    @produce_app.command(Source.GCS_PUBSUB.value)
    def produce_gcs_pubsub(
        ctx: typer.Context,
        subscription: str = typer.Option(..., "--subscription", help="projects/PROJECT/subscriptions/NAME"),
        max_outstanding: int = typer.Option(
            0, "--max-outstanding", help="Flow control: messages held unacked (default 2x batch)."
        ),
        max_outstanding_mb: int = typer.Option(100, "--max-outstanding-mb"),
        exactly_once: bool | None = typer.Option(
            None,
            "--exactly-once/--no-exactly-once",
            help="Wait for ack confirmation (default: read from the subscription).",
        ),
        max_lease_extension: int = typer.Option(
            0,
            "--max-lease-extension",
            help="Seconds (10-600) a lease is extended at a time; bounds how long a crashed "
            "consumer's messages wait. 0: the SDK default.",
        ),
        emulator_host: str = typer.Option(
            "", "--emulator-host", help="Pub/Sub emulator host:port (else PUBSUB_EMULATOR_HOST)."
        ),
    ) -> None:
        """Consume GCS notifications from a Pub/Sub subscription (streaming pull)."""
        from mountsync.producers.cli import run_producer
        from mountsync.producers.normalize.gcs import normalize_gcs
        from mountsync.producers.sources import enricher_for

        path = subscription_path(subscription)

        def build(runtime: Any) -> tuple[Any, Any]:
            settings = runtime.settings
            source = PubSubSource(
                path, subscriber=make_subscriber(emulator_host or None),
                max_messages=max_outstanding or max(1000, 2 * settings.batch_size),
                max_bytes=max_outstanding_mb * 1024 * 1024, exactly_once=exactly_once,
                max_lease_extension_s=max_lease_extension,
            )  # fmt: skip
            log.info("subscribed", subscription=path, exactly_once=source.exactly_once)
            enrich = enricher_for(Source.GCS_PUBSUB, runtime.pool)
            return source, runtime.pipeline(normalize_gcs, enrich=enrich)

        run_producer(ctx, build)
