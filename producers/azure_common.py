"""What the three Azure transports share beyond the normalizer: mount lookup by container,
the rename enricher and reindex requests for HNS directory events.

- Missing content fields: a ``BlobRenamed`` event has no size or etag, a ``BlobTierChanged`` no
  etag. ``ContentEnricher`` stats such blobs through the mount's own storage options (the catalog
  knows the account and credentials), so the catalog row is complete at once even when the
  metadata event overtakes the create. A blob already gone again keeps the bare change (the
  later delete event wins by sequencer); storage that cannot be reached nacks the batch (retry).
- Directories: ``DirectoryDeleted`` / ``DirectoryRenamed`` change every blob under a prefix, which
  the event does not list. ``request_directory_reindex`` queues ``mountsync.reindex_mount`` for
  every mount that overlaps the prefix, before the message is acknowledged (a lost request means a
  redelivery, and the scheduled reindex remains the safety net).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog

from mountsync.producers.normalize.azure import directory_scopes
from mountsync.shared.errors import (
    BadInput,
    CredentialsRejected,
    InvalidEvent,
    ObjectNotFound,
    RetryableError,
)
from mountsync.shared.events import Kind, ObjectChange, Provider, RawMessage

log = structlog.get_logger("mountsync.producer.azure")

MOUNTS_TTL_S = 30.0
REINDEX_TRIGGER = "azure-directory-event"
DIRECTORY_MARKER = b"Microsoft.Storage.Directory"


class AzureMounts:
    """Azure mounts by container, read from the catalog and refreshed every ``ttl_s`` seconds."""

    def __init__(self, pool: Any, ttl_s: float = MOUNTS_TTL_S) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._loaded_at = -ttl_s
        self._by_container: dict[str, list[Any]] = {}
        self._lock = threading.Lock()

    def for_container(self, container: str) -> list[Any]:
        with self._lock:
            if time.monotonic() - self._loaded_at >= self._ttl_s:
                self._by_container = self._load()
                self._loaded_at = time.monotonic()
            return list(self._by_container.get(container, []))

    def _load(self) -> dict[str, list[Any]]:
        from mountsync.shared.catalog.mounts import Mounts

        try:
            with self._pool.connection() as conn:
                mounts = Mounts(conn).list()
        except Exception as exc:  # psycopg errors: the batch is retried, nothing is lost
            raise RetryableError(f"cannot read mounts from the catalog: {exc}") from exc
        out: dict[str, list[Any]] = {}
        for mount in mounts:
            if mount.provider is Provider.AZURE:
                out.setdefault(mount.bucket, []).append(mount)
        return out


class ContentEnricher:
    """Fills size and etag of live changes that carry no etag (renames, tier changes) from a stat."""

    def __init__(self, mounts: AzureMounts, opener: Callable[[Any], Any] | None = None) -> None:
        self._mounts = mounts
        self._opener = opener or _open_mount_storage
        self._storages: dict[str, Any] = {}

    def __call__(self, changes: list[ObjectChange]) -> list[ObjectChange]:
        return [self._complete(c) if _needs_stat(c) else c for c in changes]

    def _complete(self, change: ObjectChange) -> ObjectChange:
        mount = next(
            (m for m in self._mounts.for_container(change.bucket) if change.key.startswith(m.prefix)),
            None,
        )
        if mount is None:
            return change  # unmounted: the apply step counts and drops it
        try:
            info = self._storage(mount).stat(change.key)
        except ObjectNotFound:
            return change
        except (CredentialsRejected, BadInput) as exc:
            log.warning("cannot stat the blob; its size and etag come with the next reindex",
                        mount=mount.name, key=change.key, error=str(exc))  # fmt: skip
            return change
        return dataclasses.replace(change, size=info.size, etag=info.etag, version=info.version)

    def _storage(self, mount: Any) -> Any:
        if mount.name not in self._storages:
            self._storages[mount.name] = self._opener(mount)
        return self._storages[mount.name]


def _needs_stat(change: ObjectChange) -> bool:
    return change.kind in (Kind.CREATED, Kind.METADATA) and change.etag is None


def _open_mount_storage(mount: Any) -> Any:
    from mountsync.shared.storage import open_storage

    return open_storage(mount.storage_url, mount.options)


def reindex_targets(mounts: Iterable[Any], prefix: str) -> list[tuple[str, str]]:
    """(mount name, prefix relative to the mount) for every mount a directory prefix touches."""
    directory = prefix.strip("/") + "/"
    targets = []
    for mount in mounts:
        if directory.startswith(mount.prefix):
            targets.append((mount.name, directory[len(mount.prefix) :].rstrip("/")))
        elif mount.prefix.startswith(directory):
            targets.append((mount.name, ""))
    return targets


def request_directory_reindex(
    messages: Sequence[RawMessage], mounts: AzureMounts, send_reindex: Callable[[str, str], None]
) -> list[RawMessage]:
    """Queue reindexes for directory events in ``messages``; returns those whose request failed."""
    failed: list[RawMessage] = []
    for message in messages:
        if not _mentions_directory(message.body):
            continue  # cheap pre-check before parsing the body again
        try:
            scopes = directory_scopes(message)
        except InvalidEvent:
            continue  # not ours to judge here: the pipeline dead-lettered or acked it already
        try:
            for container, prefix in scopes:
                for name, relative in reindex_targets(mounts.for_container(container), prefix):
                    send_reindex(name, relative)
                    log.info("directory event: reindex queued", mount=name, prefix=relative,
                             message_id=message.message_id)  # fmt: skip
        except RetryableError as exc:
            log.warning("cannot queue reindex for a directory event; it will be redelivered",
                        message_id=message.message_id, error=str(exc))  # fmt: skip
            failed.append(message)
    return failed


def _mentions_directory(body: bytes) -> bool:
    text = body.lstrip()
    if text[:1] not in (b"{", b"["):
        try:
            text = base64.b64decode(text)
        except (binascii.Error, ValueError):
            return False  # not an event at all: the normalizer dead-lettered it
    return DIRECTORY_MARKER in text


def celery_reindex_sender(runtime: Any) -> Callable[[str, str], None]:
    from mountsync.shared.queues import QUEUE_REINDEX, TASK_REINDEX, send

    def send_reindex(name: str, prefix: str) -> None:
        send(runtime.celery, TASK_REINDEX, name, prefix, None, REINDEX_TRIGGER, queue=QUEUE_REINDEX)

    return send_reindex


class DirectoryAwareSource:
    """Wraps an ``EventSource`` so directory events are acked only after their reindex is queued."""

    def __init__(self, inner: Any, mounts: AzureMounts, send_reindex: Callable[[str, str], None]) -> None:
        self.inner = inner
        self.name = inner.name
        self._mounts = mounts
        self._send_reindex = send_reindex

    def receive(self, max_messages: int, wait_s: float) -> list[RawMessage]:
        messages: list[RawMessage] = self.inner.receive(max_messages, wait_s)
        return messages

    def ack(self, messages: Sequence[RawMessage]) -> list[RawMessage]:
        held = request_directory_reindex(messages, self._mounts, self._send_reindex)
        if held:
            self.inner.nack(held)
        ids = {id(m) for m in held}
        failed: list[RawMessage] = self.inner.ack([m for m in messages if id(m) not in ids])
        return [*held, *failed]

    def nack(self, messages: Sequence[RawMessage]) -> None:
        self.inner.nack(messages)

    def reject(self, messages: Sequence[RawMessage]) -> None:
        self.inner.reject(messages)

    def extend(self, messages: Sequence[RawMessage], seconds: float) -> None:
        self.inner.extend(messages, seconds)

    def close(self) -> None:
        self.inner.close()
