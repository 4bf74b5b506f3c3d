"""The I/O step after the Azure normalizer, and the mount lookup by container it needs.

Missing content fields: a ``BlobRenamed`` event has no size or etag, a ``BlobTierChanged`` no
etag. ``ContentEnricher`` stats such blobs through the mount's own storage options (the catalog
knows the account and credentials), so the catalog row is complete at once even when the metadata
event overtakes the create. A blob already gone again keeps the bare change (the later delete event
wins by sequencer); storage that cannot be reached nacks the batch (retry).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from mountsync.shared.errors import BadInput, CredentialsRejected, ObjectNotFound, RetryableError
from mountsync.shared.events import Kind, ObjectChange, Provider

log = structlog.get_logger("mountsync.producer.azure")

MOUNTS_TTL_S = 30.0


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
