"""Catalog reads behind the deployment's scrape-time gauges (``shared/system_metrics.py``).

Each function is one query; the collector turns the rows into metric families.
"""

from __future__ import annotations

from typing import Any

_OPEN_DEAD_LETTERS = "SELECT source, count(*) FROM dead_letters WHERE replayed_at IS NULL GROUP BY source"
_OPEN_ALERTS = "SELECT kind, count(*) FROM alignment_alerts WHERE status = 'open' GROUP BY kind"
_QUARANTINED = "SELECT count(*) FROM datasets WHERE quarantined"
_DROPS = "SELECT reason, provider, bucket, count FROM drops"
# The last finished reconcile per mount (the initial import of a new mount is not a reconcile).
_LAST_RECONCILES = """
SELECT DISTINCT ON (r.mount_id) m.name, r.state, r.created, r.updated, r.deleted,
       extract(epoch FROM r.finished_at)::float8
FROM reindex_runs r JOIN mounts m ON m.id = r.mount_id
WHERE r.finished_at IS NOT NULL AND r.trigger <> 'mount-add'
ORDER BY r.mount_id, r.id DESC
"""
_OPEN_ALERTS_OF_MOUNT = """
SELECT count(*) FROM alignment_alerts a JOIN mounts m ON m.id = a.mount_id
WHERE m.name = %(mount)s AND a.status = 'open' AND (%(path)s::text IS NULL OR a.path = %(path)s::text)
"""


def open_dead_letters_by_source(conn: Any) -> list[tuple[str, int]]:
    return [(str(source), int(count)) for source, count in conn.execute(_OPEN_DEAD_LETTERS).fetchall()]


def open_alerts_by_kind(conn: Any) -> list[tuple[str, int]]:
    return [(str(kind), int(count)) for kind, count in conn.execute(_OPEN_ALERTS).fetchall()]


def open_alerts_of_mount(conn: Any, mount: str, path: str | None = None) -> int:
    """Open alerts of ``mount`` (only those on the dataset at ``path`` when given)."""
    row = conn.execute(_OPEN_ALERTS_OF_MOUNT, {"mount": mount, "path": path}).fetchone()
    return int(row[0]) if row else 0


def quarantined_datasets(conn: Any) -> int:
    row = conn.execute(_QUARANTINED).fetchone()
    return int(row[0]) if row else 0


def drop_counts(conn: Any) -> list[tuple[str, str, str, int]]:
    """(reason, provider, bucket, count) of changes dropped on purpose since the catalog began."""
    return [(str(r), str(p), str(b), int(c)) for r, p, b, c in conn.execute(_DROPS).fetchall()]


def last_reconciles(conn: Any) -> list[tuple[str, str, int, int, int, float | None]]:
    """(mount, state, created, updated, deleted, finished at) of each mount's last reconcile."""
    return [tuple(row) for row in conn.execute(_LAST_RECONCILES).fetchall()]
