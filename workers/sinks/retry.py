"""When to try a failed delivery again, and when to stop: a pure policy (no clock, no I/O).

Exponential backoff with full jitter in the upper half (so many sinks failing together spread
out), capped, and never sooner than the receiver's Retry-After. Past ``retry_for_s`` since the
first failure the sink is paused and an alert raised; a 410 Gone disables it at once (the
receiver said the subscription is over, per Standard Webhooks).
"""

from __future__ import annotations

from dataclasses import dataclass

BASE_S = 1.0
CAP_S = 600.0


@dataclass(frozen=True)
class Outcome:
    """``retry_in_s`` for another attempt, or ``stop`` with the state to put the sink in."""

    retry_in_s: float = 0.0
    stop: str | None = None  # 'paused' or 'disabled'
    reason: str = ""


def backoff_s(attempt: int, jitter: float, cap_s: float = CAP_S) -> float:
    """Delay before attempt ``attempt + 1``; ``jitter`` in [0, 1) picks a point in the upper half."""
    ceiling = min(cap_s, BASE_S * 2.0 ** min(attempt, 30))
    return float(ceiling * (0.5 + 0.5 * jitter))


def after_failure(
    *,
    status: int | None,
    attempts: int,
    failing_for_s: float,
    retry_after_s: float | None,
    retry_for_s: float,
    jitter: float,
) -> Outcome:
    """What to do after a failed attempt (``status`` None: no answer; ``attempts`` before this one)."""
    if status == 410:
        return Outcome(stop="disabled", reason="the receiver answered 410 Gone")
    if failing_for_s >= retry_for_s:
        return Outcome(stop="paused", reason=f"deliveries failed for {failing_for_s:.0f} s (limit {retry_for_s:.0f} s)")
    delay = backoff_s(attempts, jitter)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    # Never sleep past the deadline by more than one backoff: the last attempt lands at the limit.
    return Outcome(retry_in_s=min(delay, max(retry_for_s - failing_for_s, 0.0) + 1.0))
