"""Exponential backoff with full jitter, and a byte budget that bounds buffered part data."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from mountsync.shared.errors import RetryableError

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """``delay(n)`` for the n-th retry (1-based): uniform in [0, min(cap, base * 2**(n-1))]
    ("full jitter", so many workers retrying at once spread out)."""

    base_s: float = 1.0
    cap_s: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap_s, self.base_s * (2 ** max(attempt - 1, 0)))
        return self.rng.uniform(0, ceiling) if ceiling > 0 else 0.0


class GaveUp(RetryableError):
    """A retryable operation failed on every attempt; the message keeps the last reason."""


def with_retries(
    call: Callable[[], T],
    *,
    attempts: int,
    backoff: Backoff,
    what: str,
    sleep: Callable[[float], None] = time.sleep,
    retry_on: tuple[type[BaseException], ...] = (RetryableError,),
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Run ``call``; retry ``retry_on`` errors up to ``attempts`` times with backoff."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except retry_on as exc:
            if attempt >= attempts:
                raise GaveUp(f"{what}: gave up after {attempts} attempt(s): {exc}") from exc
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(backoff.delay(attempt))
    raise AssertionError("unreachable")


class ByteBudget:
    """At most ``limit`` bytes of part buffers held at once (one oversized request may run
    alone, so a part larger than the budget cannot deadlock)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._cond = threading.Condition()

    def acquire(self, size: int) -> None:
        with self._cond:
            while self.used and self.used + size > self.limit:
                self._cond.wait()
            self.used += size
            self.peak = max(self.peak, self.used)

    def release(self, size: int) -> None:
        with self._cond:
            self.used -= size
            self._cond.notify_all()
