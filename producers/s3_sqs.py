"""S3 / MinIO notifications from an SQS queue: ``mountsync produce s3-sqs --queue-url URL``.

``SqsSource`` implements ``mountsync.producers.base.EventSource`` with boto3:

- ``receive`` long-polls (``WaitTimeSeconds`` = the loop's wait rounded up to whole seconds, at
  least 1 so every SQS server is asked, at most ``--wait-seconds``), up to 10 messages a call,
  and reads ``ApproximateReceiveCount`` as the delivery count.
- Messages stay invisible for the queue's visibility timeout (or ``--visibility-timeout``). A
  background thread extends it (``ChangeMessageVisibilityBatch``) for messages still held after
  half of it, so a slow batch (Redis paused, a large enqueue) is not handed to another consumer.
- ``ack`` = ``DeleteMessageBatch``, called by the loop only after the batch is on Redis. Partial
  failures do not raise in boto3 (formats.md G32): the failed messages are returned (they come
  back and are applied again, harmlessly). ``nack`` sets visibility 0; ``reject`` deletes a
  message after its dead-letter record exists.
- A message delivered more than ``--max-deliveries`` times is dead-lettered (poison guard); an
  SQS redrive policy on the queue is the other safety net.
- Deletes that name a version are checked against the bucket (``mountsync.producers.normalize.s3_enrich``): on a
  versioned bucket the key may still be alive.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import structlog
import typer

from mountsync.producers.leases import LeaseKeeper
from mountsync.shared.errors import ConfigError, CredentialsRejected, RetryableError
from mountsync.shared.events import RawMessage, Source

log = structlog.get_logger("mountsync.producer.s3")

MAX_BATCH = 10  # SQS's limit for receive and for every *Batch call
MAX_VISIBILITY_S = 43_200
SYSTEM_ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp", "ApproximateFirstReceiveTimestamp"]
MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "ExpiredToken",
}


def translate(exc: Exception, what: str) -> Exception:
    """The project error for a boto3/botocore exception raised by an SQS call."""
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        message = exc.response.get("Error", {}).get("Message") or code
        if code in MISSING_QUEUE:
            return ConfigError(f"SQS {what}: the queue does not exist ({message})")
        if code in DENIED:
            return CredentialsRejected(f"SQS refused {what}: {code}: {message}")
        return RetryableError(f"SQS {what} failed: {code}: {message}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigError(f"no usable AWS credentials for SQS {what}: set AWS_* or --credentials")
    return RetryableError(f"SQS {what} failed: {exc}")


def _is_aws(url: str | None) -> bool:
    host = urlsplit(url or "").hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def region_of(queue_url: str) -> str | None:
    """``eu-west-1`` from ``https://sqs.eu-west-1.amazonaws.com/...`` (None for other hosts)."""
    host = urlsplit(queue_url).hostname or ""
    parts = host.split(".")
    if _is_aws(queue_url) and len(parts) >= 4:
        return parts[1] if parts[0] == "sqs" else parts[0]
    return None


def make_sqs_client(queue_url: str, *, endpoint_url: str = "", region: str = "", credentials: str = "") -> Any:
    """An SQS client for ``queue_url``: explicit endpoint, else boto3's AWS_ENDPOINT_URL
    convention, else the queue URL's own host when it is not AWS (ElasticMQ, moto)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ProfileNotFound

    try:
        session = boto3.Session(profile_name=credentials or None)
    except ProfileNotFound as exc:
        raise ConfigError(f"credential set {credentials!r} is not an AWS profile") from exc
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=40)
    chosen_region = region or region_of(queue_url) or session.region_name

    def build(endpoint: str | None) -> Any:
        return session.client(
            "sqs",
            endpoint_url=endpoint,
            region_name=chosen_region or ("us-east-1" if endpoint else None),
            config=config,
        )

    client = build(endpoint_url or None)
    if not endpoint_url and _is_aws(client.meta.endpoint_url) and not _is_aws(queue_url):
        parts = urlsplit(queue_url)
        client = build(f"{parts.scheme}://{parts.netloc}")
    return client


class SqsSource:
    """One SQS queue that S3 (directly, through SNS, or through EventBridge) writes to."""

    name = Source.S3_SQS

    def __init__(
        self,
        client: Any,
        queue_url: str,
        *,
        max_wait_s: int = 20,
        visibility_timeout: int | None = None,
        renew: bool = True,
    ) -> None:
        self._client = client
        self.queue_url = queue_url
        self._max_wait_s = max(0, min(20, max_wait_s))
        self._visibility = visibility_timeout
        timeout = visibility_timeout or self._queue_visibility()
        # Renew what is still held after half the visibility timeout.
        self._keeper = LeaseKeeper(lambda due: self.extend(due, timeout), timeout / 2) if renew else None

    def _call(self, what: str, operation: str, **params: Any) -> Any:
        try:
            return getattr(self._client, operation)(QueueUrl=self.queue_url, **params)
        except Exception as exc:
            raise translate(exc, f"{what} on {self.queue_url}") from exc

    def _queue_visibility(self) -> int:
        """The queue's visibility timeout; also proves the queue exists and is readable."""
        found = self._call("get attributes", "get_queue_attributes", AttributeNames=["VisibilityTimeout"])
        return int(found.get("Attributes", {}).get("VisibilityTimeout", 30))

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        wait = min(self._max_wait_s, max(1, math.ceil(wait_s))) if wait_s > 0 else 0
        params: dict[str, Any] = {
            "MaxNumberOfMessages": max(1, min(MAX_BATCH, max_messages)),
            "WaitTimeSeconds": wait,
            "MessageSystemAttributeNames": SYSTEM_ATTRIBUTES,
        }
        if self._visibility:
            params["VisibilityTimeout"] = self._visibility
        response = self._call("receive", "receive_message", **params)
        now = time.time_ns()
        messages = [self._message(m, now) for m in response.get("Messages", ())]
        if self._keeper and messages:
            self._keeper.hold(messages)
        return messages

    def _message(self, message: dict[str, Any], received_ns: int) -> RawMessage:
        attributes = {k: str(v) for k, v in message.get("Attributes", {}).items()}
        return RawMessage(
            source=self.name,
            message_id=message["MessageId"],
            body=message.get("Body", "").encode("utf-8"),
            attributes=attributes,
            received_ns=received_ns,
            handle=message["ReceiptHandle"],
            delivery_count=int(attributes.get("ApproximateReceiveCount", 1)),
        )

    def _batches(
        self, what: str, operation: str, messages: Sequence[RawMessage], **extra: Any
    ) -> tuple[list[RawMessage], list[Exception]]:
        """Run a *Batch call per 10 messages; returns the messages that failed and the errors."""
        failed: list[RawMessage] = []
        errors: list[Exception] = []
        for start in range(0, len(messages), MAX_BATCH):
            chunk = list(messages[start : start + MAX_BATCH])
            entries = [{"Id": str(i), "ReceiptHandle": m.handle, **extra} for i, m in enumerate(chunk)]
            try:
                response = self._call(what, operation, Entries=entries)
            except (RetryableError, ConfigError, CredentialsRejected) as exc:
                failed.extend(chunk)
                errors.append(exc)
                continue
            for failure in response.get("Failed", ()):
                failed.append(chunk[int(failure["Id"])])
                errors.append(RetryableError(f"{failure.get('Code')}: {failure.get('Message')}"))
        if failed:
            log.warning(f"SQS {what} failed for some messages", failed=len(failed),
                        total=len(messages), error=str(errors[0]))  # fmt: skip
        return failed, errors

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        if not messages:
            return []
        if self._keeper:
            self._keeper.drop(messages)
        failed, errors = self._batches("delete", "delete_message_batch", messages)
        if len(failed) == len(messages) and isinstance(errors[0], RetryableError):
            raise errors[0]
        return failed

    def reject(self, messages: Sequence[RawMessage]) -> None:
        self.ack(messages)  # called only after the dead-letter record exists

    def nack(self, messages: Sequence[RawMessage]) -> None:
        if self._keeper:
            self._keeper.drop(messages)
        if messages:
            self._batches("nack", "change_message_visibility_batch", messages, VisibilityTimeout=0)

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        if messages:
            timeout = max(0, min(MAX_VISIBILITY_S, math.ceil(seconds)))
            self._batches(
                "visibility extension", "change_message_visibility_batch", messages,
                VisibilityTimeout=timeout,
            )  # fmt: skip

    def close(self) -> None:
        if self._keeper:
            self._keeper.close()
        self._client.close()


def register(produce_app: typer.Typer) -> None:
    @produce_app.command(Source.S3_SQS.value)
    def produce_s3_sqs(
        ctx: typer.Context,
        queue_url: str = typer.Option(..., "--queue-url", help="The SQS queue S3 notifies."),
        endpoint_url: str = typer.Option(
            "", "--endpoint-url", help="SQS endpoint (else AWS_ENDPOINT_URL or the queue's host)."
        ),
        region: str = typer.Option("", "--region", help="Region (else from the queue URL)."),
        credentials: str = typer.Option("", "--credentials", help="NAME of an AWS profile."),
        wait_seconds: int = typer.Option(
            20, "--wait-seconds", min=0, max=20, help="Longest long poll per receive (0-20)."
        ),
        visibility_timeout: int = typer.Option(
            0, "--visibility-timeout", help="Seconds a received message stays hidden (0: queue's)."
        ),
        max_deliveries: int = typer.Option(
            10, "--max-deliveries", help="Dead-letter after this many deliveries (0: never)."
        ),
        trust_sequencer: bool = typer.Option(
            True,
            "--trust-sequencer/--ignore-sequencer",
            help="Order by S3's sequencer (ignore it for services that send fake ones).",
        ),
    ) -> None:
        """Consume S3/MinIO notifications from SQS (direct, SNS-wrapped or EventBridge)."""
        from mountsync.producers.cli import run_producer
        from mountsync.producers.normalize.s3 import make_normalizer
        from mountsync.producers.pipeline import with_delivery_limit
        from mountsync.producers.sources import enricher_for

        def build(runtime: Any) -> tuple[Any, Any]:
            client = make_sqs_client(queue_url, endpoint_url=endpoint_url, region=region, credentials=credentials)
            source = SqsSource(
                client, queue_url, max_wait_s=wait_seconds,
                visibility_timeout=visibility_timeout or None,
            )  # fmt: skip
            log.info("consuming", queue_url=queue_url, endpoint=client.meta.endpoint_url)
            normalize = make_normalizer(trust_sequencer=trust_sequencer)
            enrich = enricher_for(Source.S3_SQS, runtime.pool)
            return source, runtime.pipeline(with_delivery_limit(normalize, max_deliveries), enrich=enrich)

        run_producer(ctx, build)
