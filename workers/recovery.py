"""Fast recovery after a whole-worker kill: a heartbeat on the tasks a worker holds unacknowledged.

Why: kombu's Redis transport keeps every delivered, unacknowledged message in the sorted set
``unacked_index`` scored with the time it was delivered, and any consumer puts back the entries
older than ``visibility_timeout`` (every ``unacked_restore_interval``). With late acks the timeout
had to outlast the longest task (2 h), or a live long task ran twice; so the tasks of a worker that
was SIGKILLed (OOM, eviction, preemption) came back only after hours.

Here the worker's main process refreshes, every ``visibility_timeout / 6`` seconds, the score of
each message it still holds (running, prefetched, or waiting for its ETA). ``ZADD XX`` only
touches entries that are still there: an acked or restored message is never re-added. A live
worker's messages therefore never look old, whatever the task's length, and the visibility
timeout can be short (60 s by default): a dead worker's messages are restored within
``visibility_timeout + unacked_restore_interval`` by any live worker. If the heartbeat ever stalls
longer than the timeout, the second run is still harmless: apply is idempotent, and migration items,
alignment checks and reindex runs hold leases of their own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog

log = structlog.get_logger("mountsync.recovery")

UNACKED_INDEX = "unacked_index"  # kombu's default ``unacked_index_key``


def heartbeat_interval(visibility_timeout_s: float) -> float:
    """Six beats per timeout: one late or failed beat never lets a live task look abandoned."""
    return max(1.0, visibility_timeout_s / 6)


def held_delivery_tags(consumer: Any) -> list[str]:
    """Delivery tags of the messages this worker holds unacknowledged (running, reserved, ETA).

    Read from the consumer channel's QoS (kombu's own bookkeeping), so nothing is missed: the
    dict may change under us (the event loop acks), hence the copy and the retry on next beat."""
    task_consumer = getattr(consumer, "task_consumer", None)
    qos = getattr(getattr(task_consumer, "channel", None), "qos", None)
    delivered = getattr(qos, "_delivered", None)
    if not delivered:
        return []
    try:
        return [str(tag) for tag in list(delivered)]
    except RuntimeError:  # changed size during the copy: the next beat catches up
        return []


def refresh(redis: Any, index_key: str, tags: Iterable[str], now: float) -> int:
    """Mark ``tags`` as delivered ``now``; only entries still in the index are touched."""
    mapping = {tag: now for tag in tags}
    if not mapping:
        return 0
    return int(redis.zadd(index_key, mapping, xx=True, ch=True))


class HeldTaskHeartbeat:
    """A daemon thread of the worker's main process; ``stop()`` ends it within one beat."""

    def __init__(self, redis: Any, index_key: str, tags: Callable[[], list[str]], interval_s: float) -> None:
        self._redis, self._key, self._tags, self._interval = redis, index_key, tags, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="held-task-heartbeat", daemon=True)

    def start(self) -> HeldTaskHeartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def beat(self) -> int:
        return refresh(self._redis, self._key, self._tags(), time.time())

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except Exception as exc:  # Redis down: kombu reconnects; the next beat tries again
                log.warning("held-task heartbeat failed", error=f"{type(exc).__name__}: {exc}")


_running: list[HeldTaskHeartbeat] = []


def start_for(consumer: Any, redis_url: str, key_prefix: str, visibility_timeout_s: float) -> HeldTaskHeartbeat:
    """Start the heartbeat for ``consumer`` (from the ``worker_ready`` signal)."""
    import redis as redis_lib

    client = redis_lib.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
    beat = HeldTaskHeartbeat(
        client, f"{key_prefix}{UNACKED_INDEX}", lambda: held_delivery_tags(consumer),
        heartbeat_interval(visibility_timeout_s),
    ).start()  # fmt: skip
    _running.append(beat)
    return beat


def stop_all() -> None:
    while _running:
        _running.pop().stop()
