"""The pure retry policy of sinks: backoff, jitter, Retry-After, the retry limit, 410."""

from __future__ import annotations

import pytest

from mountsync.workers.sinks.retry import CAP_S, after_failure, backoff_s

DAY = 86400.0


def outcome(status: int | None = 503, attempts: int = 0, failing_for_s: float = 0.0, retry_after_s=None,
            jitter: float = 0.0):  # fmt: skip
    return after_failure(status=status, attempts=attempts, failing_for_s=failing_for_s,
                         retry_after_s=retry_after_s, retry_for_s=DAY, jitter=jitter)  # fmt: skip


def test_backoff_doubles_up_to_the_cap_and_jitter_stays_in_the_upper_half() -> None:
    assert [backoff_s(n, 0.0) for n in range(5)] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert backoff_s(40, 0.999) <= CAP_S and backoff_s(40, 0.0) == CAP_S / 2
    assert all(backoff_s(3, j) >= 4.0 for j in (0.0, 0.3, 0.99))


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    assert outcome(status=429, retry_after_s=120).retry_in_s == 120
    assert outcome(status=503, attempts=6, retry_after_s=1).retry_in_s == 32


@pytest.mark.parametrize("status", [None, 500, 502, 503, 429, 400, 401, 404])
def test_other_failures_retry_until_the_limit_then_pause(status) -> None:
    assert outcome(status=status).stop is None
    late = outcome(status=status, failing_for_s=DAY)
    assert late.stop == "paused" and "limit" in late.reason


def test_410_disables_at_once() -> None:
    assert outcome(status=410).stop == "disabled"


def test_the_last_retry_lands_near_the_limit_not_a_cap_later() -> None:
    assert outcome(attempts=30, failing_for_s=DAY - 5).retry_in_s <= 6
