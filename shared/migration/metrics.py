"""Migration metrics: live counters updated by workers, and job gauges read from PostgreSQL.

The counters follow the rest of mountsync (``shared/metrics.py`` has none for migrations).
``JobsCollector`` reports per-state job counts and the progress of active jobs straight from the
database at scrape time, so ``mountsync serve``'s ``/metrics`` shows the same numbers as
``mountsync migrate status`` whichever worker did the work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

ITEMS_FINISHED = Counter("mountsync_migration_items_total", "Migration items finished, by outcome", ["state"])
BYTES_SENT = Counter("mountsync_migration_bytes_sent_total", "Bytes uploaded by migrations")
PARTS_SENT = Counter("mountsync_migration_parts_sent_total", "Multipart parts uploaded")
PARTS_REUSED = Counter("mountsync_migration_parts_resumed_total", "Parts found complete on resume (not re-sent)")
LINK_BATCHES = Counter("mountsync_migration_link_batches_total", "Link batch delivery attempts, by result", ["state"])
ORPHANS_ABORTED = Counter("mountsync_migration_orphan_uploads_aborted_total", "Orphaned resumable uploads aborted")

_STATE_SQL = "SELECT state, count(*) AS n FROM migration_jobs GROUP BY state"
_ACTIVE_SQL = """
SELECT j.job_id, count(i.*) AS total,
       count(*) FILTER (WHERE i.state IN ('done', 'skipped', 'failed', 'cancelled')) AS finished,
       COALESCE(sum(i.size), 0) AS bytes_total,
       COALESCE(sum(i.size) FILTER (WHERE i.state IN ('done', 'skipped')), 0)
         + COALESCE(sum(i.bytes_sent) FILTER (WHERE i.state IN ('pending', 'running')), 0)
         AS bytes_done
FROM migration_jobs j LEFT JOIN migration_items i ON i.job_id = j.job_id
WHERE j.state IN ('submitted', 'planning', 'running')
GROUP BY j.job_id ORDER BY j.job_id LIMIT 200
"""


class JobsCollector(Collector):
    """Scrape-time gauges from the job tables; ``connect`` gives a psycopg connection."""

    def __init__(self, connect: Any) -> None:
        self._connect = connect

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("mountsync_migration_jobs", "Migration jobs by state", labels=["state"])
        items = GaugeMetricFamily("mountsync_migration_job_items", "Items of active jobs", labels=["job_id", "kind"])
        sizes = GaugeMetricFamily("mountsync_migration_job_bytes", "Bytes of active jobs", labels=["job_id", "kind"])
        try:
            with self._connect() as conn:
                states = conn.execute(_STATE_SQL).fetchall()
                active = conn.execute(_ACTIVE_SQL).fetchall()
        except Exception:  # a scrape must not fail because the database is down
            return
        for state, n in states:
            jobs.add_metric([state], n)
        for job_id, total, finished, bytes_total, bytes_done in active:
            items.add_metric([job_id, "total"], total)
            items.add_metric([job_id, "finished"], finished)
            sizes.add_metric([job_id, "total"], bytes_total)
            sizes.add_metric([job_id, "done"], bytes_done)
        yield from (jobs, items, sizes)


def register_jobs_collector(pool: Any, registry: Any = None) -> JobsCollector:
    """Add the job gauges to ``registry`` (default: the global one ``/metrics`` serves);
    ``pool`` is a psycopg ``ConnectionPool``."""
    from prometheus_client import REGISTRY

    collector = JobsCollector(pool.connection)
    (registry or REGISTRY).register(collector)
    return collector
