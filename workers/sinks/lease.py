"""One deliverer per sink at a time: a Redis lease with a TTL, renewed per batch.

Why a lease and not a lock held by the task: a worker killed mid-delivery holds nothing after
``TTL_S``, so the next ``deliver`` (a nudge, or the sweep every 30 s) takes over within a minute
or two instead of waiting for Celery's visibility timeout. The token makes renew and release
compare-and-set, so a deliverer that outlived its lease never releases the next one's.
"""

from __future__ import annotations

import uuid
from typing import Any

TTL_S = 60

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class SinkLease:
    def __init__(self, redis: Any, key: str, ttl_s: int = TTL_S) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = ttl_s * 1000
        self._token = uuid.uuid4().hex

    def acquire(self) -> bool:
        return bool(self._redis.set(self._key, self._token, nx=True, px=self._ttl_ms))

    def renew(self) -> bool:
        """False when the lease was lost (expired and taken): the caller must stop delivering."""
        return bool(self._redis.eval(_RENEW, 1, self._key, self._token, self._ttl_ms))

    def release(self) -> None:
        self._redis.eval(_RELEASE, 1, self._key, self._token)
