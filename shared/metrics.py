"""Prometheus metrics, defined once. Every process exposes the ones it updates.

Counters that must survive restarts and be visible from the CLI (drops, dead letters, reindex
differences) are also kept in PostgreSQL; these metrics are the live view for Prometheus.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

EVENTS_RECEIVED = Counter("mountsync_events_received_total", "Transport messages received", ["source"])
CHANGES_ENQUEUED = Counter(
    "mountsync_changes_enqueued_total", "Normalized changes put on the changes queue", ["source"]
)
MESSAGES_ACKED = Counter("mountsync_messages_acked_total", "Transport messages acknowledged after enqueue", ["source"])
ACK_FAILURES = Counter(
    "mountsync_ack_failures_total",
    "Acks the transport refused (message will be redelivered)",
    ["source"],
)
DEAD_LETTERED = Counter("mountsync_dead_lettered_total", "Messages recorded as dead letters", ["source", "reason"])
INBOX_REFUSED = Counter(
    "mountsync_inbox_refused_total", "Push requests refused (503) because their inbox was full", ["source"]
)
ENQUEUE_FAILURES = Counter(
    "mountsync_enqueue_failures_total", "Batches that could not be enqueued (nacked)", ["source"]
)
BACKPRESSURE_PAUSES = Counter(
    "mountsync_backpressure_pauses_total",
    "Times a producer paused because the queue was deep",
    ["source"],
)
QUEUE_DEPTH = Gauge("mountsync_queue_depth", "Messages waiting in a Redis queue", ["queue"])
CHANGES_APPLIED = Counter("mountsync_changes_applied_total", "Changes that altered the catalog", ["mount", "kind"])
CHANGES_STALE = Counter("mountsync_changes_stale_total", "Changes ignored as duplicates or older than the catalog")
CHANGES_DROPPED = Counter("mountsync_changes_dropped_total", "Changes dropped on purpose", ["reason"])
APPLY_SECONDS = Histogram(
    "mountsync_apply_batch_seconds",
    "Time to apply one batch of changes",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REINDEX_DIFFERENCES = Counter(
    "mountsync_reindex_differences_total",
    "Differences a reindex found (changes the events missed)",
    ["mount", "kind"],
)
REINDEX_SECONDS = Histogram(
    "mountsync_reindex_seconds",
    "Duration of a reindex",
    ["mount"],
    buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
)


class MetricsSink(Protocol):
    """Where code that takes an injected sink reports; names are this module's metric names
    (``"MESSAGES_ACKED"``), labels in the metric's label order. Never raises."""

    def inc(self, metric: str, *labels: str, amount: float = 1) -> None: ...

    def set(self, metric: str, *labels: str, value: float) -> None: ...


class PrometheusSink:
    """The process's Prometheus metrics above (the default sink)."""

    def inc(self, metric: str, *labels: str, amount: float = 1) -> None:
        counter = globals()[metric]
        (counter.labels(*labels) if labels else counter).inc(amount)

    def set(self, metric: str, *labels: str, value: float) -> None:
        gauge = globals()[metric]
        (gauge.labels(*labels) if labels else gauge).set(value)


PROMETHEUS = PrometheusSink()
