"""Deletes on versioned buckets that may leave the key alive, resolved by looking at the bucket.

``ObjectRemoved:Delete`` with a ``versionId`` is the permanent delete of *that version*. When it
was a noncurrent version, the live object did not change; when it was the current one, the
previous version is live again. The event cannot tell these apart from a real removal, so
``VersionedDeleteEnricher`` stats the key (through the mount's own storage options):

- the key is gone (or a delete marker is current): the delete stands;
- the key is alive: the change becomes ``created`` with what is live now (size, etag, version),
  keeping the delete's sequencer and time, so it orders exactly where the delete would have.

Delete markers (``DeleteMarkerCreated``) also carry a version id (the marker's); their stat finds
nothing and the delete stands. Deletes without a version id (unversioned buckets) are untouched.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import structlog

from mountsync.producers.mount_lookup import OptionsFor
from mountsync.shared.errors import MountsyncError, ObjectNotFound, RetryableError
from mountsync.shared.events import Kind, ObjectChange

log = structlog.get_logger("mountsync.producer.s3")


def names_a_version(change: ObjectChange) -> bool:
    return change.kind is Kind.DELETED and change.version not in (None, "", "null")


class VersionedDeleteEnricher:
    """Enricher of the SQS producer and MinIO push; ``options_for(bucket)`` is None for unmounted buckets."""

    def __init__(self, options_for: OptionsFor) -> None:
        self._options_for = options_for
        self._storages: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}

    def __call__(self, changes: list[ObjectChange]) -> list[ObjectChange]:
        return [self._resolve(c) if names_a_version(c) else c for c in changes]

    def _storage(self, bucket: str) -> Any | None:
        options = self._options_for(bucket)
        if options is None:
            return None  # no mount: the catalog drops the change anyway
        ident = (bucket, tuple(sorted((k, str(v)) for k, v in options.items())))
        if ident not in self._storages:
            from mountsync.shared.storage import open_storage

            self._storages[ident] = open_storage(f"s3://{bucket}/", options)
        return self._storages[ident]

    def _resolve(self, change: ObjectChange) -> ObjectChange:
        storage = self._storage(change.bucket)
        if storage is None:
            return change
        try:
            info = storage.stat(change.key)
        except ObjectNotFound:
            return change
        except RetryableError:
            raise
        except MountsyncError as exc:  # credentials, configuration: keep the message, say why
            raise RetryableError(f"cannot stat s3://{change.bucket}/{change.key}: {exc}") from exc
        log.info("a version was deleted but the key is alive; recording its live state",
                 bucket=change.bucket, key=change.key, deleted_version=change.version,
                 live_version=info.version)  # fmt: skip
        return dataclasses.replace(change, kind=Kind.CREATED, size=info.size, etag=info.etag, version=info.version)
