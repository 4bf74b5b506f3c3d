"""Event Grid -> Azure Storage Queue delivery: ``mountsync produce azure-queue --queue NAME``.

``StorageQueueSource`` implements ``mountsync.producers.base.EventSource`` with azure-storage-queue:

- Bodies are read raw (no SDK decode policy) and decoded by the normalizer: base64 of the JSON
  event (what Event Grid writes today) or plain JSON (older subscriptions), so the dead-letter
  store keeps exactly what was delivered.
- Storage Queues have no long poll: ``receive`` polls with a growing interval (0.1 s .. 2 s)
  until ``wait_s`` passes. Messages stay invisible for ``--visibility-timeout`` seconds; a
  background thread extends that for messages still held after half of it (slow batches).
- ``ack`` deletes each message after its changes are on Redis (there is no batch delete); a
  delete that fails returns the message (it reappears; applying twice is harmless). ``nack`` makes
  it visible again at once; ``reject`` deletes it after the dead-letter record exists.
- ``dequeue_count`` is the delivery count; a message delivered more than ``--max-deliveries``
  times is a poison message: recorded in the dead-letter store, then deleted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
import typer

from mountsync.producers.leases import LeaseKeeper
from mountsync.shared.errors import ConfigError, CredentialsRejected, RetryableError
from mountsync.shared.events import RawMessage, Source

log = structlog.get_logger("mountsync.producer.azure_queue")

MAX_PER_PAGE = 32
POLL_MIN_S, POLL_MAX_S = 0.1, 2.0


@dataclass
class Receipt:
    """Id and current pop receipt of a received message; the receipt changes on every update."""

    id: str
    pop_receipt: str
    lock: threading.Lock


def _translate(exc: Exception, what: str) -> Exception:
    from azure.core import exceptions as az

    status = getattr(exc, "status_code", None)
    if isinstance(exc, az.ClientAuthenticationError) or status in (401, 403):
        return CredentialsRejected(f"Storage Queue refused the credentials for {what}: {exc}")
    if isinstance(exc, az.ResourceNotFoundError) and "QueueNotFound" in str(getattr(exc, "error_code", "")):
        return ConfigError(f"Storage Queue {what}: the queue does not exist")
    return RetryableError(f"Storage Queue {what} failed: {str(exc).splitlines()[0][:300]}")


class StorageQueueSource:
    """One Azure Storage Queue fed by an Event Grid subscription."""

    name = Source.AZURE_QUEUE

    def __init__(self, client: Any, *, visibility_timeout: int = 300, renew: bool = True) -> None:
        self._client = client
        self._visibility = visibility_timeout
        self._interval = POLL_MIN_S
        self._leases = LeaseKeeper(self._extend_held, visibility_timeout / 2 if renew else None)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from azure.core.exceptions import AzureError

        try:
            return fn(*args, **kwargs)
        except AzureError as exc:
            raise _translate(exc, what) from exc

    def _fetch(self, count: int) -> list[Any]:
        pages = self._call(
            "receive", self._client.receive_messages, messages_per_page=min(count, MAX_PER_PAGE),
            visibility_timeout=self._visibility, max_messages=count,
        )  # fmt: skip
        return list(self._call("receive", lambda: list(pages)))

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        count = max(1, max_messages)
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            found = self._fetch(count)
            if found:
                self._interval = POLL_MIN_S
                messages = [self._message(m) for m in found]
                self._leases.hold(messages)
                return messages
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            time.sleep(min(self._interval, remaining))
            self._interval = min(POLL_MAX_S, self._interval * 2)

    def _message(self, message: Any) -> RawMessage:
        content = message.content
        body = content.encode("utf-8") if isinstance(content, str) else bytes(content or b"")
        count = int(message.dequeue_count or 1)
        return RawMessage(
            source=self.name, message_id=str(message.id), body=body,
            attributes={"dequeueCount": str(count)}, received_ns=time.time_ns(),
            handle=Receipt(message.id, message.pop_receipt, threading.Lock()), delivery_count=count,
        )  # fmt: skip

    def _delete(self, messages: Sequence[RawMessage], what: str) -> list[RawMessage]:
        self._leases.drop(messages)
        failed: list[RawMessage] = []
        errors: list[Exception] = []
        for message in messages:
            receipt: Receipt = message.handle
            with receipt.lock:
                try:
                    self._call(what, self._client.delete_message, receipt.id, receipt.pop_receipt)
                except (RetryableError, ConfigError, CredentialsRejected) as exc:
                    errors.append(exc)
                    failed.append(message)
        if failed:
            log.warning(f"{what} failed for some messages; they will be redelivered",
                        failed=len(failed), error=str(errors[0]))  # fmt: skip
        if messages and len(failed) == len(messages) and isinstance(errors[0], RetryableError):
            raise errors[0]
        return failed

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        return self._delete(messages, "delete") if messages else []

    def reject(self, messages: Sequence[RawMessage]) -> None:
        if messages:
            self._delete(messages, "delete (dead-lettered)")

    def nack(self, messages: Sequence[RawMessage]) -> None:
        self._leases.drop(messages)
        self._update(messages, 0)

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        self._update(messages, int(seconds))

    def _extend_held(self, messages: list[RawMessage]) -> None:
        self._update(messages, self._visibility)

    def _update(self, messages: Sequence[RawMessage], visibility: int) -> None:
        for message in messages:
            receipt: Receipt = message.handle
            with receipt.lock:
                try:
                    updated = self._call("update", self._client.update_message, receipt.id,
                                         receipt.pop_receipt, visibility_timeout=visibility)  # fmt: skip
                except (RetryableError, ConfigError) as exc:
                    log.warning("visibility update failed; the message reappears on its own timeout",
                                message_id=message.message_id, error=str(exc))  # fmt: skip
                    continue
                receipt.pop_receipt = updated.pop_receipt

    def close(self) -> None:
        self._leases.close()
        self._client.close()


def make_queue_client(queue: str, options: dict[str, Any], environ: Any = None) -> Any:
    """A raw-text ``QueueClient`` (no base64 decoding by the SDK) for ``queue``."""
    from azure.storage.queue import QueueClient

    from mountsync.shared.storage.azure_auth import resolve_access

    access = resolve_access(options, "queue", environ)
    if access.connection_string:
        return QueueClient.from_connection_string(
            access.connection_string, queue, message_decode_policy=None, message_encode_policy=None
        )
    return QueueClient(access.account_url, queue, credential=access.credential, message_decode_policy=None,
                       message_encode_policy=None)  # fmt: skip


ACCOUNT_OPTION = typer.Option(
    None, "--account", help="Storage account(s) served (repeatable); others are dead-lettered."
)


def register(produce_app: typer.Typer) -> None:
    @produce_app.command(Source.AZURE_QUEUE.value)
    def produce_azure_queue(
        ctx: typer.Context,
        queue: str = typer.Option(..., "--queue", help="Storage Queue the Event Grid subscription writes to."),
        account_url: str = typer.Option("", "--account-url", help="https://ACCOUNT.queue.core.windows.net"),
        credentials: str = typer.Option("", "--credentials", help="Named credential set (see docs)."),
        account: list[str] | None = ACCOUNT_OPTION,
        visibility_timeout: int = typer.Option(300, "--visibility-timeout", help="Seconds a message stays hidden."),
        max_deliveries: int = typer.Option(10, "--max-deliveries", help="Dead-letter after this many deliveries."),
    ) -> None:
        """Consume blob events from an Azure Storage Queue (credentials as for az:// mounts)."""
        from mountsync.producers.azure_common import DirectoryAwareSource, celery_reindex_sender
        from mountsync.producers.cli import run_producer
        from mountsync.producers.normalize.azure import make_normalizer
        from mountsync.producers.normalize.azure_enrich import AzureMounts, ContentEnricher
        from mountsync.producers.pipeline import with_delivery_limit

        options = {"account_url": account_url, "credentials": credentials}
        client = make_queue_client(queue, {k: v for k, v in options.items() if v})

        def build(runtime: Any) -> tuple[Any, Any]:
            mounts = AzureMounts(runtime.pool)
            inner = StorageQueueSource(client, visibility_timeout=visibility_timeout)
            source = DirectoryAwareSource(inner, mounts, celery_reindex_sender(runtime))
            normalize = with_delivery_limit(make_normalizer(account or None), max_deliveries)
            return source, runtime.pipeline(normalize, enrich=ContentEnricher(mounts))

        run_producer(ctx, build)
