"""System gauges computed at scrape time from Redis and PostgreSQL (served by ``mountsync serve``).

Counters in ``mountsync.shared.metrics`` are per process (a producer counts what it received); these gauges
describe the whole deployment, so one process exposes them and every replica of it shows the
same numbers: queue lengths and consumer lag from Redis, open dead letters and alerts, drops and
the last reconcile of each mount from the catalog. A scrape never fails because Redis or
PostgreSQL is down: ``mountsync_system_up{part}`` goes to 0 and that part's gauges are omitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mountsync.shared.catalog import gauges
from mountsync.shared.events import Source, wire_event_ns
from mountsync.shared.queues import ALL_QUEUES, QUEUE_CHANGES, inbox_key, queued_args
from mountsync.shared.redis_check import check_redis_durability

PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)  # kombu's non-zero steps; step 0 is the queue's own list


class SystemCollector(Collector):
    """Gauges for the whole deployment; ``connect()`` returns a psycopg connection (a context manager)."""

    def __init__(
        self,
        redis: Any,
        connect: Callable[[], Any],
        prefix: str = "",
        clock: Callable[[], float] = time.time,
        inbox_sources: Sequence[Source] = (),
    ) -> None:
        self._redis = redis
        self._inbox_sources = tuple(inbox_sources)  # given by serve (the producers' registry)
        self.connect = connect
        self._prefix = prefix
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mountsync_system_up", "1 if this part could be read at scrape time",
                               labels=["part"])  # fmt: skip
        redis_metrics = self._safely(self._redis_metrics)
        catalog_metrics = self._safely(self._catalog_metrics)
        up.add_metric(["redis"], 0 if redis_metrics is None else 1)
        up.add_metric(["postgres"], 0 if catalog_metrics is None else 1)
        yield up
        yield from redis_metrics or []
        yield from catalog_metrics or []

    @staticmethod
    def _safely(read: Callable[[], list[Metric]]) -> list[Metric] | None:
        try:
            return read()
        except Exception:  # a scrape must answer even when a backend is down
            return None

    # -- Redis ---------------------------------------------------------------------------

    def _redis_metrics(self) -> list[Metric]:
        lengths = GaugeMetricFamily(
            "mountsync_queue_length", "Messages waiting in a Redis queue (read at scrape)", labels=["queue"]
        )
        pipe = self._redis.pipeline(transaction=False)
        for queue in ALL_QUEUES:
            for key in self._queue_keys(queue):
                pipe.llen(key)
        for source in self._inbox_sources:
            pipe.xlen(inbox_key(self._prefix, source))
        pipe.hlen(f"{self._prefix}unacked")
        results = pipe.execute()
        per_queue = 1 + len(PRIORITY_STEPS)
        for i, queue in enumerate(ALL_QUEUES):
            lengths.add_metric([queue], sum(results[i * per_queue : (i + 1) * per_queue]))
        inboxes = results[len(ALL_QUEUES) * per_queue : -1]
        for source, length in zip(self._inbox_sources, inboxes, strict=True):
            lengths.add_metric([f"inbox:{source.value}"], length)  # requests accepted, not yet drained
        unacked = GaugeMetricFamily(
            "mountsync_queue_unacked", "Tasks taken by workers and not yet acknowledged (all queues)"
        )
        unacked.add_metric([], results[-1])
        out: list[Metric] = [lengths, unacked, self._lag()]
        durability = GaugeMetricFamily(
            "mountsync_redis_durability_problems",
            "Redis settings that can lose queued tasks (eviction, no persistence); see the logs",
        )
        durability.add_metric([], len(check_redis_durability(self._redis)))
        out.append(durability)
        return out

    def _queue_keys(self, queue: str) -> list[str]:
        base = f"{self._prefix}{queue}"
        return [base, *(f"{base}{PRIORITY_SEP}{step}" for step in PRIORITY_STEPS)]

    def _lag(self) -> Metric:
        lag = GaugeMetricFamily(
            "mountsync_changes_lag_seconds",
            "Age of the oldest change waiting in the changes queue (0 when it is empty)",
        )
        oldest = self._redis.lindex(f"{self._prefix}{QUEUE_CHANGES}", -1)  # kombu pops from the right
        event_ns = oldest_event_ns(oldest) if oldest else None
        lag.add_metric([], 0.0 if event_ns is None else max(0.0, self._clock() - event_ns / 1e9))
        return lag

    # -- PostgreSQL ----------------------------------------------------------------------

    def _catalog_metrics(self) -> list[Metric]:
        with self.connect() as conn:
            dead = gauges.open_dead_letters_by_source(conn)
            alerts = gauges.open_alerts_by_kind(conn)
            quarantined = gauges.quarantined_datasets(conn)
            drops = gauges.drop_counts(conn)
            reindex = gauges.last_reconciles(conn)
        return [
            _labelled("mountsync_dead_letters_open", "Dead letters not yet replayed", ["source"], dead),
            _labelled("mountsync_alignment_alerts_open", "Open alignment alerts", ["kind"], alerts),
            _single("mountsync_datasets_quarantined", "Datasets held in quarantine", quarantined),
            _drops(drops),
            *_reindex(reindex),
        ]


def oldest_event_ns(message: bytes | str) -> int | None:
    """The earliest ``event_ns`` among the changes of one queued ``apply_changes`` message."""
    try:
        times = [wire_event_ns(change) for change in queued_args(message)[0]]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return min(times) if times else None


def _labelled(name: str, doc: str, labels: list[str], rows: list[Any]) -> Metric:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for *values, count in rows:
        family.add_metric([str(v) for v in values], count)
    return family


def _single(name: str, doc: str, value: int) -> Metric:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family


def _drops(rows: list[Any]) -> Metric:
    family = CounterMetricFamily(
        "mountsync_dropped_changes",
        "Changes dropped on purpose since the catalog was created (e.g. no mount for the bucket)",
        labels=["reason", "provider", "bucket"],
    )
    for reason, provider, bucket, count in rows:
        family.add_metric([reason, provider, bucket], count)
    return family


def _reindex(rows: list[Any]) -> list[Metric]:
    differences = GaugeMetricFamily(
        "mountsync_reindex_last_differences",
        "Differences the last reconcile of a mount found (changes the events missed)",
        labels=["mount", "kind"],
    )
    finished = GaugeMetricFamily(
        "mountsync_reindex_last_finished_timestamp_seconds",
        "When the last reconcile of a mount finished",
        labels=["mount"],
    )
    failed = GaugeMetricFamily(
        "mountsync_reindex_last_failed", "1 if the last reconcile of a mount failed", labels=["mount"]
    )
    for name, state, created, updated, deleted, finished_at in rows:
        for kind, count in (("created", created), ("updated", updated), ("deleted", deleted)):
            differences.add_metric([name, kind], count)
        finished.add_metric([name], finished_at or 0.0)
        failed.add_metric([name], 1 if state == "failed" else 0)
    return [differences, finished, failed]


def system_collector(settings: Any, inbox_sources: Sequence[Source] = ()) -> SystemCollector:
    """A collector for ``settings`` with its own Redis client and a connection per scrape;
    ``inbox_sources`` are the push sources whose inbox length is reported (shared cannot ask
    the producers' registry)."""
    import psycopg
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)

    def connect() -> Any:
        return psycopg.connect(settings.database_url, autocommit=True, connect_timeout=3)

    return SystemCollector(client, connect, settings.redis_prefix, inbox_sources=inbox_sources)
