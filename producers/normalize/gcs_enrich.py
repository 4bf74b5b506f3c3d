"""The I/O step after the GCS normalizer: stat objects whose notification had no payload.

Shared by the Pub/Sub producer, the push endpoint and replay (through the source registry).
"""

from __future__ import annotations

from typing import Any

import structlog

from mountsync.producers.mount_lookup import OptionsFor
from mountsync.producers.normalize.gcs import dedupe_key, needs_stat
from mountsync.shared.errors import RetryableError
from mountsync.shared.events import Kind, ObjectChange

log = structlog.get_logger("mountsync.producer.gcs")


class StatEnricher:
    """Fills in changes whose notification had no payload by stating the object (``needs_stat``).

    The stat reports the object as it is now: a newer generation replaces the event's (its own
    FINALIZE is then a duplicate); an object already gone is dropped here, counted, because its
    DELETE/ARCHIVE notification carries the removal.
    """

    def __init__(self, options_for: OptionsFor | None = None) -> None:
        self._options_for = options_for or (lambda _bucket: {})
        self._storages: dict[str, Any] = {}
        self._warned = False

    def __call__(self, changes: list[ObjectChange]) -> list[ObjectChange]:
        out: list[ObjectChange] = []
        for change in changes:
            if not needs_stat(change):
                out.append(change)
                continue
            enriched = self._stat(change)
            if enriched is not None:
                out.append(enriched)
        return out

    def _storage(self, bucket: str) -> Any:
        storage = self._storages.get(bucket)
        if storage is None:
            from mountsync.shared.storage import open_storage

            storage = open_storage(f"gs://{bucket}/", self._options_for(bucket) or {})
            self._storages[bucket] = storage
        return storage

    def _stat(self, change: ObjectChange) -> ObjectChange | None:
        from mountsync.shared import metrics
        from mountsync.shared.errors import MountsyncError, ObjectNotFound

        if not self._warned:
            self._warned = True
            log.warning("GCS notifications arrive without a payload; each object is stat'ed. "
                        "Recreate the notification with `mountsync gcs notification`",
                        bucket=change.bucket)  # fmt: skip
        try:
            info = self._storage(change.bucket).stat(change.key)
        except ObjectNotFound:
            metrics.CHANGES_DROPPED.labels("gcs-object-gone-before-stat").inc()
            log.info("object gone before it could be stat'ed; its removal event follows",
                     bucket=change.bucket, key=change.key)  # fmt: skip
            return None
        except RetryableError:
            raise
        except MountsyncError as exc:  # credentials, config: keep the message, say why
            raise RetryableError(f"cannot stat gs://{change.bucket}/{change.key}: {exc}") from exc
        return _merge(change, info)


def _merge(change: ObjectChange, info: Any) -> ObjectChange:
    generation, _, metageneration = (int(p) for p in info.sequencer.split("."))
    if int(change.version or 0) > generation:
        return change  # the stat saw an older generation than the event: leave it to reindex
    newer = int(change.version or 0) < generation
    kind = Kind.CREATED if newer else change.kind
    event = {Kind.CREATED: "OBJECT_FINALIZE", Kind.METADATA: "OBJECT_METADATA_UPDATE"}[kind]
    return ObjectChange(
        provider=change.provider, bucket=change.bucket, key=change.key, kind=kind,
        event_ns=change.event_ns, source=change.source, size=info.size, etag=info.etag,
        version=info.version, sequencer=info.sequencer,
        source_id=dedupe_key(change.bucket, change.key, generation, metageneration, event),
    )  # fmt: skip
