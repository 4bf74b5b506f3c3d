"""What the three Azure transports share beyond the normalizer and its enricher
(``normalize/azure_enrich.py``): reindex requests for HNS directory events.

- Directories: ``DirectoryDeleted`` / ``DirectoryRenamed`` change every blob under a prefix, which
  the event does not list. ``request_directory_reindex`` queues ``mountsync.reindex_mount`` for
  every mount that overlaps the prefix, before the message is acknowledged (a lost request means a
  redelivery, and the scheduled reindex remains the safety net).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog

from mountsync.producers.normalize.azure import directory_scopes
from mountsync.producers.normalize.azure_enrich import AzureMounts
from mountsync.shared.errors import InvalidEvent, RetryableError
from mountsync.shared.events import RawMessage

log = structlog.get_logger("mountsync.producer.azure")

REINDEX_TRIGGER = "azure-directory-event"
DIRECTORY_MARKER = b"Microsoft.Storage.Directory"


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
        if not _mentions_directory(message):
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


def _mentions_directory(message: RawMessage) -> bool:
    if isinstance(message.payload, dict):  # one event, parsed already (its body may hold others)
        kind = message.payload.get("eventType") or message.payload.get("type")
        return isinstance(kind, str) and kind.startswith(DIRECTORY_MARKER.decode())
    text = message.body.lstrip()
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
