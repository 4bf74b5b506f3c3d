"""One deliverer per sink at a time: a Redis lease with a short TTL, kept alive by a heartbeat.

Why a lease and not a lock held by the task: a worker killed mid-delivery holds nothing after
``TTL_S``, so the next ``deliver`` (asked for when the lease expires, or by the sweep every 30 s)
takes over within a minute instead of after Celery's visibility timeout. While the deliverer's
process lives, a heartbeat thread renews the lease every ``TTL_S / 3``, so even a long platform
call never lets a second deliverer in. The token makes renew and release compare-and-set: a
deliverer that lost its lease never releases the next one's, and stops at its next batch.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TTL_S = 30

_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class SinkLease:
    def __init__(self, redis: Any, key: str, ttl_s: int = TTL_S) -> None:
        self._redis = redis
        self._key = key
        self._ttl_ms = ttl_s * 1000
        self._token = uuid.uuid4().hex
        self.lost = False

    def acquire(self) -> bool:
        return bool(self._redis.set(self._key, self._token, nx=True, px=self._ttl_ms))

    def remaining_s(self) -> float:
        """Seconds until the current holder's lease expires (0 when nobody holds it)."""
        return max(float(self._redis.pttl(self._key)), 0.0) / 1000

    def renew(self) -> bool:
        """False when the lease was lost (expired and taken): the holder must stop delivering."""
        if not self._redis.eval(_RENEW, 1, self._key, self._token, self._ttl_ms):
            self.lost = True
        return not self.lost

    def release(self) -> None:
        self._redis.eval(_RELEASE, 1, self._key, self._token)

    @contextmanager
    def kept_alive(self) -> Iterator[SinkLease]:
        """Renew in a background thread while the body runs; release at the end."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self._ttl_ms / 3000):
                try:
                    if not self.renew():
                        return
                except Exception:  # Redis blipped: try again next beat; the TTL covers two misses
                    continue

        thread = threading.Thread(target=beat, name="sink-lease", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            self.release()
