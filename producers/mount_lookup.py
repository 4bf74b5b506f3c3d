"""The mount lookup enrichers share: which storage options can read a bucket.

Enrichers stat objects through the credentials of the mount that covers the bucket, not the
producer's own; this is the cached catalog read behind that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

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
