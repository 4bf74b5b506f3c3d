"""The I/O step after normalizing, per source, and the mount lookup it needs.

Producers, the inbox drainer and replay all enrich a source's changes the same way, from here:
``s3-sqs`` resolves deletes of one version on versioned buckets (``VersionedDeleteEnricher``),
``gcs-*`` stats payload-less notifications (``StatEnricher``), ``azure-*`` stats what renames and
tier changes leave out (``ContentEnricher``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from mountsync.producers.base import Enricher
from mountsync.shared.events import Provider

OptionsFor = Callable[[str], Mapping[str, Any] | None]


def mount_options_lookup(pool: Any, provider: Provider, ttl_s: float = 30.0) -> OptionsFor:
    """Storage options of the first ``provider`` mount on a bucket (its credentials can read it),
    cached for ``ttl_s``; None for a bucket no mount covers."""
    cache: dict[str, tuple[float, Mapping[str, Any] | None]] = {}

    def options_for(bucket: str) -> Mapping[str, Any] | None:
        hit = cache.get(bucket)
        if hit and time.monotonic() - hit[0] < ttl_s:
            return hit[1]
        from mountsync.shared.catalog.mounts import Mounts

        with pool.connection() as conn:
            found = [m for m in Mounts(conn).list() if m.provider is provider and m.bucket == bucket]
        options = dict(found[0].options) if found else None
        cache[bucket] = (time.monotonic(), options)
        return options

    return options_for


def enricher_for(source: str, pool: Any) -> Enricher | None:
    """The enricher the producer of ``source`` runs (None: its notifications are complete)."""
    if source == "s3-sqs":
        from mountsync.producers.s3_versions import VersionedDeleteEnricher

        return VersionedDeleteEnricher(mount_options_lookup(pool, Provider.S3))
    if source in ("gcs-pubsub", "gcs-push"):
        from mountsync.producers.gcs_pubsub import StatEnricher

        return StatEnricher(mount_options_lookup(pool, Provider.GCS))
    if source in ("azure-eventgrid", "azure-queue"):
        from mountsync.producers.azure_common import AzureMounts, ContentEnricher

        return ContentEnricher(AzureMounts(pool))
    return None
